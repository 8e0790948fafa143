"""The trained-concept vocabulary travels with the model: the trainer records it in every model file it
writes, the far-from-trained warning reads the loaded model's own vocabulary (umbrellas included), a
damaged or tampered record is refused clearly, and exporting an older run's best model records the
vocabulary its train_config.json names."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from plugin_bridge.cli import main as cli_main
from plugin_bridge.errors import ConfigError
from plugin_bridge.models.registry import (DEFAULT_WEIGHTS, LABELS_JSON, TRAINING_DIR, VOCABULARY_FILE_KEY,
                                           VOCABULARY_KEY, load_safetensors_model, model_vocabulary,
                                           query_warnings, save_safetensors_model)
from plugin_bridge.models.resunet import ResUNet
from plugin_bridge.testing import HashEncoder
from plugin_bridge.training.train import TrainConfig, export_best, train

from test_training import TINY, _make_corpus

LABELS_V2 = os.path.join(TRAINING_DIR, "labels_v2.json")
needs_weights = pytest.mark.skipif(not os.path.exists(DEFAULT_WEIGHTS), reason="no embedded weights in this checkout")


def _meta(path) -> dict:
    with safe_open(str(path), framework="np") as f:
        return dict(f.metadata() or {})


def _with_meta(src, dest, **changes) -> str:
    """A copy of the model ``src`` with its metadata changed (None removes a key)."""
    meta = _meta(src)
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    save_file(load_file(str(src)), str(dest), metadata=meta)
    return str(dest)


def _table(path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_every_model_file_the_trainer_writes_records_its_vocabulary(tmp_path):
    corpus = tmp_path / "corpus"
    lj = _make_corpus(str(corpus))
    v2 = str(corpus / "labels_v2.json")  # the run's own vocabulary file, not one of models/training/
    os.replace(lj, v2)
    run = tmp_path / "run"
    cfg = TrainConfig(corpus=str(corpus), run=str(run), labels_json=v2, batch=4, seconds=1.0, max_steps=4,
                      val_every=2, val_examples=6, log_every=2, warmup=2, planned_steps=20)
    train(cfg, TINY, encoder=HashEncoder(384), log=lambda s: None)
    files = [run / "best.safetensors"] + sorted((run / "snapshots").iterdir())
    assert len(files) == 3
    for p in files:
        meta = _meta(p)
        assert meta[VOCABULARY_FILE_KEY] == "labels_v2.json"
        assert json.loads(meta[VOCABULARY_KEY]) == _table(v2)
        assert model_vocabulary(load_safetensors_model(str(p), lazy=True)) == _table(v2)


@needs_weights
def test_the_warning_follows_the_loaded_models_vocabulary_umbrellas_included(tmp_path):
    # a file without the record (as the v1 model was shipped) means labels.json
    v1 = load_safetensors_model(_with_meta(DEFAULT_WEIGHTS, tmp_path / "v1.safetensors", vocabulary=None,
                                           vocabulary_file=None), lazy=True)
    assert VOCABULARY_KEY not in v1.metadata and model_vocabulary(v1) == _table(LABELS_JSON)
    shipped = load_safetensors_model(DEFAULT_WEIGHTS, lazy=True)  # v2: it carries the labels_v2 table
    assert model_vocabulary(shipped) == _table(LABELS_V2)
    v2 = load_safetensors_model(_with_meta(DEFAULT_WEIGHTS, tmp_path / "v2.safetensors",
                                           vocabulary=json.dumps(_table(LABELS_V2)),
                                           vocabulary_file="labels_v2.json"), lazy=True)
    umbrellas = ["sfx", "ambience", "effects", "noise"]
    w1 = query_warnings(v1, umbrellas + ["speech"])
    assert [w.split("'")[1] for w in w1] == ["sfx", "ambience", "effects"] and all("far from" in w for w in w1)
    assert query_warnings(v2, umbrellas + ["speech", "the band"]) == []
    # a concept neither vocabulary has still warns, and an unsupported one is still named
    assert len(query_warnings(v2, ["a jet engine spooling up on the runway"])) == 1
    dog = query_warnings(v2, ["dog barking"])
    assert len(dog) == 1 and "'dog barking', which the model was not trained on" in dog[0]


@pytest.mark.parametrize("value", ["../../etc/passwd", "nope.json", "labels_v2.json", '{"labels": 3}',
                                   '{"labels": {"x": {"synonyms": "not a list"}}}', "[]"])
def test_a_tampered_vocabulary_record_is_refused_clearly(tmp_path, value):
    path = str(tmp_path / "m.safetensors")
    save_safetensors_model(ResUNet(TINY), path, vocabulary=value)
    model = load_safetensors_model(path)  # the weights still load and separate
    model._encoder = HashEncoder(384)
    warns = query_warnings(model, ["piano"])
    assert len(warns) == 1
    assert f"{path}: metadata 'vocabulary'" in warns[0] and "not checked" in warns[0]
    run = tmp_path / "run"
    os.makedirs(run)
    shutil.copyfile(path, run / "best.safetensors")
    with pytest.raises(Exception, match="metadata 'vocabulary'"):
        export_best(str(run), str(tmp_path / "out.safetensors"))
    assert not os.path.exists(tmp_path / "out.safetensors")


def test_export_of_a_run_whose_best_lacks_the_record_takes_train_config_json(tmp_path, capsys):
    run = tmp_path / "run"
    os.makedirs(run)
    save_safetensors_model(ResUNet(TINY), str(run / "best.safetensors"), step=900)
    # the path of the machine that trained it: found by name in models/training/
    (run / "train_config.json").write_text(json.dumps({"train": {
        "labels_json": "/elsewhere/models/training/labels_v2.json"}}))
    out = tmp_path / "default.safetensors"
    assert cli_main(["train", "--run", str(run), "--export", str(out)]) == 0
    assert "vocabulary labels_v2.json" in capsys.readouterr().out
    meta = _meta(out)
    assert json.loads(meta[VOCABULARY_KEY]) == _table(LABELS_V2) and meta["step"] == "900"
    assert model_vocabulary(load_safetensors_model(str(out))) == _table(LABELS_V2)
    # a recorded file that is not here and not a models/training/ file: an error, not labels.json
    (run / "train_config.json").write_text(json.dumps({"train": {"labels_json": "/elsewhere/corpus/labels.json"}}))
    with pytest.raises(ConfigError, match="not on this machine; pass --labels-json"):
        export_best(str(run), str(tmp_path / "b.safetensors"))
    # an explicit --labels-json is recorded instead
    assert cli_main(["train", "--run", str(run), "--export", str(out), "--labels-json", LABELS_JSON]) == 0
    assert json.loads(_meta(out)[VOCABULARY_KEY]) == _table(LABELS_JSON)
    # a best that records its vocabulary is copied as it is; another --labels-json is refused
    shutil.copyfile(out, run / "best.safetensors")
    with pytest.raises(ConfigError, match="records another vocabulary"):
        export_best(str(run), str(tmp_path / "c.safetensors"), LABELS_V2)
