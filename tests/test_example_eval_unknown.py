"""example_eval's unknown-label comparison (issue 15 item 3) on a tiny synthetic corpus: mixture rules,
the refusal of labels the model was trained on, and one end-to-end run through the CLI entry point."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from plugin_bridge.training import example_eval
from plugin_bridge.training.mixer import Corpus

RATE = 16000
#: label -> (family, group, sine frequency of its clips); hum and engine share a confusable group, music and
#: piano are conflicting families: neither pair may meet in one mixture
LABELS = {"hum": ("environmental", "machines", 120.0), "engine": ("environmental", "machines", 2000.0),
          "music": ("music", "music", 440.0), "piano": ("instruments", "keys", 1000.0),
          "hiss": ("environmental", "noise", 3000.0), "speech": ("speech", "speech", 700.0)}


def _make_corpus(root: str, n_dev: int = 3, n_train: int = 4) -> str:
    man, labels = [], {}
    for lab, (fam, group, f0) in LABELS.items():
        labels[lab] = {"family": fam, "group": group, "synonyms": [lab], "captions": [f"a {lab} sound"]}
        os.makedirs(os.path.join(root, "clips", lab), exist_ok=True)
        for i in range(n_dev + n_train):
            t = np.arange(int((1.5 + 0.25 * i) * RATE)) / RATE
            x = 0.3 * np.sin(2 * np.pi * f0 * (1 + 0.002 * i) * t)
            rel = f"clips/{lab}/{lab}{i}.flac"
            sf.write(os.path.join(root, rel), x.astype(np.float32), RATE, subtype="PCM_16")
            man.append({"id": f"{lab}{i}", "path": rel, "family": fam, "label": lab,
                        "split": "dev" if i < n_dev else "train", "group": f"{lab}{i}", "package": "synthetic",
                        "version": "0", "source_path": "", "licence": "CC0", "duration": len(t) / RATE,
                        "sha256": "", "sample_rate": RATE})
    with open(os.path.join(root, "manifest.jsonl"), "w") as f:
        f.write("\n".join(json.dumps(m) for m in man) + "\n")
    path = os.path.join(root, "labels.json")
    with open(path, "w") as f:
        json.dump({"version": 2, "labels": labels, "unsupported": []}, f)
    return path


def _band_rms(x: np.ndarray, f0: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size))) / x.size
    f = np.fft.rfftfreq(x.size, 1 / RATE)
    return float(np.sqrt(np.sum(spec[np.abs(f - f0) < 60] ** 2)))


def test_label_mixtures_follow_the_training_mixers_rules(tmp_path):
    lj = _make_corpus(str(tmp_path))
    dev = Corpus.load(str(tmp_path), "dev", lj)
    for target, banned in (("hum", "engine"), ("music", "piano")):
        ms = example_eval.label_mixtures(dev, target, 30, np.random.default_rng(1), seconds=1.0)
        assert len(ms) == 30
        allowed = [l for l in LABELS if l not in (target, banned)]
        for mix, tgt, ref in ms:
            assert mix.shape == tgt.shape == (RATE,) and mix.dtype == np.float32
            assert np.max(np.abs(mix)) <= 0.99 + 1e-6
            noise = mix - tgt
            level = max(_band_rms(noise, LABELS[l][2]) for l in allowed)
            assert level > 0, "every mixture has an interferer"
            # a same-group (hum/engine) or conflicting-family (music/piano) interferer never appears
            assert _band_rms(noise, LABELS[banned][2]) < 1e-2 * level
            # the reference is a whole dev clip of the target label
            assert ref.ndim == 1 and ref.size >= 1.5 * RATE and _band_rms(ref, LABELS[target][2]) > 0.05
        # deterministic in the generator's seed
        again = example_eval.label_mixtures(dev, target, 30, np.random.default_rng(1), seconds=1.0)
        assert all(np.array_equal(a[0], b[0]) for a, b in zip(ms, again))


def test_labels_the_model_was_trained_on_are_refused(tmp_path):
    lj = _make_corpus(str(tmp_path))
    with pytest.raises(ValueError, match="speech: the shipped model was trained on these labels"):
        example_eval.run_unknown(str(tmp_path), lj, ["hum", "speech"])


def test_unknown_label_run_end_to_end_and_deterministic(tmp_path):
    root = tmp_path / "corpus"
    lj = _make_corpus(str(root))
    out = tmp_path / "out.json"
    argv = ["--corpus", str(root), "--n", "0", "--labels-json", lj, "--unknown-labels", "hum,hiss",
            "--mixtures", "2", "--learn-clips", "3", "--learn-steps", "2",
            # hum and hiss are unknown to a model trained on the v1 labels (the shipped v2 model knows them)
            "--trained-labels-json", example_eval.LABELS_JSON]
    with pytest.raises(ValueError, match="need at least 2 dev and 5 train clips"):
        example_eval.main(argv + ["--learn-clips", "5"])
    assert example_eval.main(argv + ["--json", str(out)]) == 0
    res = json.loads(out.read_text())["unknown"]
    with open(example_eval.LABELS_JSON, encoding="utf-8") as f:
        trained = json.load(f)["labels"]
    for lab in ("hum", "hiss"):
        r = res["labels"][lab]
        assert r["source"] == "real" and r["nearest_trained_label"] in trained
        assert r["n_mixtures"] == 2 and r["learn_clips"] == 3 and r["learn_steps"] == 2
        for k in ("text_name", "text_nearest", "example", "examples_mean", "learned"):
            assert len(r["per_mixture"][k]) == 2 and np.isfinite(r[f"sdri_{k}"])
            assert r[f"sdri_{k}"] == pytest.approx(np.median(r["per_mixture"][k]), abs=0.011)
    assert set(res["learned_minus_text_nearest_per_label"]) == {"hum", "hiss"}
    # the same seed gives the same numbers
    torch.set_num_threads(1)
    again = example_eval.run_unknown(str(root), lj, ["hum"], n_mix=2, n_clips=3, steps=2, log=None,
                                     trained_labels_json=example_eval.LABELS_JSON)
    assert again["labels"]["hum"]["per_mixture"] == res["labels"]["hum"]["per_mixture"]
