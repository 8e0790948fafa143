"""The v2 training recipe: thresholded SNR loss, full FiLM, EMA, umbrella queries, family conflicts,
balanced dev sets and the best-gain floor."""
import csv
import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from plugin_bridge.models.resunet import ResUNet
from plugin_bridge.training.benchmark import best_gain, make_dev_set, summarise
from plugin_bridge.metrics import sdr
from plugin_bridge.training.mixer import Corpus, Mixer, MixerConfig
from plugin_bridge.models.losses import snr_loss
from plugin_bridge.training.train import EMA, TrainConfig, train
from plugin_bridge.testing import HashEncoder

from test_training import RATE, TINY, _make_corpus


def test_snr_loss_is_minus_the_snr_up_to_its_cap():
    rng = np.random.default_rng(0)
    s = torch.from_numpy(rng.standard_normal((1, 1, 8000)).astype(np.float32))
    n = torch.from_numpy(rng.standard_normal((1, 1, 8000)).astype(np.float32))
    for snr_db in (-5.0, 0.0, 10.0):
        est = s + n * 10 ** (-snr_db / 20) * s.norm() / n.norm()
        got = snr_loss(est, s, s + n).item()
        assert abs(got - (-snr_db)) < 0.05, (snr_db, got)
    # a perfect estimate stops at the 30 dB cap instead of running to -inf
    assert abs(snr_loss(s, s, s + n).item() + 30.0) < 1e-3
    # it is scale-free: the same error at any level gives the same loss
    est = s + 0.3 * n
    assert abs(snr_loss(est, s, s + n).item() - snr_loss(0.01 * est, 0.01 * s, 0.01 * (s + n)).item()) < 1e-4


def test_snr_loss_absent_target_scores_the_leak_against_the_mixture():
    rng = np.random.default_rng(1)
    mix = torch.from_numpy(rng.standard_normal((2, 1, 8000)).astype(np.float32))
    silent = torch.zeros_like(mix)
    full_leak = snr_loss(mix, silent, mix).item()      # returned the whole mixture: ~0 dB
    small_leak = snr_loss(0.1 * mix, silent, mix).item()  # -20 dB of leak
    nothing = snr_loss(silent, silent, mix).item()      # returned silence: the -20 dB cap
    assert abs(full_leak - 10 * np.log10(1.01)) < 0.05
    assert abs(small_leak - 10 * np.log10(0.02)) < 0.05
    assert abs(nothing + 20.0) < 1e-3
    assert nothing < small_leak < full_leak
    # the gradient pushes the leaked output down
    est = (0.5 * mix).requires_grad_(True)
    snr_loss(est, silent, mix).backward()
    assert float((est.grad * est.detach()).sum()) > 0


def test_full_film_starts_as_the_beta_only_function_and_then_learns_a_scale():
    torch.manual_seed(0)
    beta = ResUNet(TINY).eval()
    full = ResUNet(dataclasses.replace(TINY, film_gamma=True)).eval()
    missing = full.load_state_dict(beta.state_dict(), strict=False).missing_keys
    assert missing and all("->gamma" in k for k in missing)
    x, c = torch.randn(2, 1, 4000), torch.randn(2, 384)
    with torch.no_grad():
        assert torch.equal(beta(x, c), full(x, c))
    # the gamma projections are real parameters: a non-zero gamma changes the output
    with torch.no_grad():
        getattr(full.film, "encoder_block1->conv_block1->gamma1").bias.fill_(0.5)
        assert not torch.allclose(beta(x, c), full(x, c))
    # a beta-only config keeps the JSON it had before the field existed (old checkpoints still match)
    assert "film_gamma" not in TINY.to_json()
    assert json.loads(dataclasses.replace(TINY, film_gamma=True).to_json())["film_gamma"] is True


def test_ema_follows_the_weights_with_its_decay():
    torch.manual_seed(0)
    net = ResUNet(TINY)
    ema = EMA(net, 0.9)
    p0 = net.base.pre_conv.weight.detach().clone()
    with torch.no_grad():
        net.base.pre_conv.weight.add_(1.0)
    ema.update(net)
    assert torch.allclose(ema.model.base.pre_conv.weight, p0 + 0.1, atol=1e-6)
    for _ in range(200):
        ema.update(net)
    assert torch.allclose(ema.model.base.pre_conv.weight, net.base.pre_conv.weight, atol=1e-6)


def _add_umbrellas(lj, **umbrellas):
    doc = json.load(open(lj))
    doc["umbrellas"] = umbrellas
    json.dump(doc, open(lj, "w"))


def test_umbrella_target_sums_member_sources_and_interferers_come_from_outside(tmp_path):
    lj = _make_corpus(str(tmp_path))
    _add_umbrellas(lj, tonal_things={"members": ["tone", "hum"], "synonyms": ["tonal stuff"], "captions": []},
                   everything_instr={"members_family": "instruments", "synonyms": [], "captions": []},
                   too_small={"members": ["tone"], "synonyms": [], "captions": []})
    corpus = Corpus.load(str(tmp_path), "train", lj)
    assert set(corpus.umbrellas) == {"tonal_things", "everything_instr"}  # one member is no umbrella
    assert corpus.umbrellas["everything_instr"]["members"] == ["hum", "tone"]
    mixer = Mixer(corpus, MixerConfig(seconds=1.0, absent_fraction=0.0, augment=False, umbrella_fraction=1.0), seed=2)
    for _ in range(30):
        e = mixer.example()
        assert e.umbrella and e.label in corpus.umbrellas
        members = set(corpus.umbrellas[e.label]["members"])
        inside = [l for l in e.labels_in_mix if l in members]
        outside = [l for l in e.labels_in_mix if l not in members]
        assert 1 <= len(inside) and outside, e.labels_in_mix
        assert e.query in {e.label.replace("_", " "), *corpus.umbrellas[e.label]["synonyms"]}
        assert np.any(e.target) and not np.allclose(e.target, e.mixture)


def test_music_never_meets_instruments_in_one_mixture(tmp_path):
    lj = _make_corpus(str(tmp_path))
    doc = json.load(open(lj))
    doc["labels"]["noise"]["family"] = "music"  # stand-in for a full-mix "music" label
    json.dump(doc, open(lj, "w"))
    man = [json.loads(l) for l in open(tmp_path / "manifest.jsonl")]
    for m in man:
        if m["label"] == "noise":
            m["family"] = "music"
    open(tmp_path / "manifest.jsonl", "w").write("\n".join(json.dumps(m) for m in man) + "\n")
    corpus = Corpus.load(str(tmp_path), "train", lj)
    mixer = Mixer(corpus, MixerConfig(seconds=0.5, absent_fraction=0.0, augment=False, n_interferers=(1, 2)), seed=4)
    seen = set()
    for _ in range(80):
        e = mixer.example()
        fams = {corpus.labels[l]["family"] for l in e.labels_in_mix}
        assert not ({"music", "instruments"} <= fams), e.labels_in_mix
        seen.add(corpus.labels[e.label]["family"])
    assert seen == {"music", "instruments", "speech"}


def test_dev_set_is_balanced_per_family_with_three_source_and_umbrella_mixtures(tmp_path):
    lj = _make_corpus(str(tmp_path / "c"), n_per_label=4)
    _add_umbrellas(lj, tonal_things={"members": ["tone", "hum"], "synonyms": ["tonal stuff"], "captions": []})
    # the dev split needs two labels of one umbrella: make every clip 0 of each label dev (already) -> ok
    out = make_dev_set(str(tmp_path / "c"), str(tmp_path / "dev"), per_family=4, three_source=3, per_umbrella=2,
                       seconds=0.5, labels_json=lj)
    rows = list(csv.DictReader(open(os.path.join(out, "manifest.csv"))))
    kinds = [r["kind"] for r in rows]
    assert kinds.count("2-source") == 12 and kinds.count("3-source") == 3 and kinds.count("umbrella") == 2
    fams = [r["family"] for r in rows if r["kind"] == "2-source"]
    assert {f: fams.count(f) for f in set(fams)} == {"instruments": 4, "environmental": 4, "speech": 4}
    assert all(r["sources"] == "3" for r in rows if r["kind"] == "3-source")
    assert all(-5.0 <= float(r["snr_db"]) <= 5.0 for r in rows)
    assert all(r["family"] == "umbrella" and r["label"] == "tonal_things" for r in rows if r["kind"] == "umbrella")


def test_best_gain_floor_is_the_best_any_constant_gain_can_do():
    rng = np.random.default_rng(3)
    s = rng.standard_normal(4000)
    x = s + rng.standard_normal(4000)
    floor = sdr(s, best_gain(x, s))
    for a in np.linspace(0.1, 1.5, 29):
        assert sdr(s, a * x) <= floor + 1e-9
    assert floor > sdr(s, x) + 2.5  # about +3 dB at 0 dB input SNR
    rows = [{"label": "a", "family": "f", "sdri": 1.0, "sdri_gain": 2.0, "below_gain": True},
            {"label": "a", "family": "f", "sdri": 5.0, "sdri_gain": 2.0, "below_gain": False},
            {"label": "b", "family": "f", "sdri": 0.5, "sdri_gain": 3.0, "below_gain": True}]
    summ = summarise(rows)
    assert summ["overall"]["below_gain_share"] == pytest.approx(2 / 3)
    assert summ["overall"]["labels_below_gain_floor"] == ["b"]


def test_training_with_snr_loss_ema_and_full_film_runs_resumes_and_keeps_the_ema(tmp_path):
    lj = _make_corpus(str(tmp_path / "corpus"))
    run = str(tmp_path / "run")
    cfg = TrainConfig(corpus=str(tmp_path / "corpus"), run=run, labels_json=lj, batch=4, seconds=1.0,
                      max_steps=4, val_every=2, val_examples=4, log_every=2, warmup=2, planned_steps=10,
                      loss="snr", ema=0.9)
    mcfg = dataclasses.replace(TINY, film_gamma=True)
    train(cfg, mcfg, encoder=HashEncoder(384), log=lambda s: None)
    kinds = [json.loads(l).get("kind") for l in open(os.path.join(run, "log.jsonl"))]
    assert kinds.count("val") == 2 and kinds.count("val-ema") == 2
    assert os.path.exists(os.path.join(run, "snapshots", "step000004-ema.safetensors"))
    st = torch.load(os.path.join(run, "state.pt"), weights_only=True)
    assert st["ema_decay"] == 0.9 and "ema" in st
    ema_w = st["ema"]["base.pre_conv.weight"].clone()
    cfg2 = dataclasses.replace(cfg, max_steps=6)
    train(cfg2, mcfg, encoder=HashEncoder(384), log=lambda s: None)
    st2 = torch.load(os.path.join(run, "state.pt"), weights_only=True)
    assert st2["step"] == 6
    # resumed from the saved average (not restarted from the raw weights): it moved only a little
    assert not torch.equal(st2["ema"]["base.pre_conv.weight"], ema_w)


def test_resume_bundle_round_trips_the_training_state(tmp_path):
    from plugin_bridge.training.train import restore_resume, save_resume

    lj = _make_corpus(str(tmp_path / "corpus"))
    run = str(tmp_path / "run")
    cfg = TrainConfig(corpus=str(tmp_path / "corpus"), run=run, labels_json=lj, batch=4, seconds=1.0,
                      max_steps=3, val_every=3, val_examples=4, log_every=1, warmup=2, planned_steps=10, ema=0.9)
    train(cfg, TINY, encoder=HashEncoder(384), log=lambda s: None)
    save_resume(run, str(tmp_path / "bundle"))
    # what a fresh machine gets: only the bundle
    run2 = str(tmp_path / "fresh")
    assert restore_resume(str(tmp_path / "bundle"), run2) == 3
    a = torch.load(os.path.join(run, "state.pt"), weights_only=True)
    b = torch.load(os.path.join(run2, "state.pt"), weights_only=True)
    assert set(a["model"]) == set(b["model"]) and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for i, ps in a["optim"]["state"].items():
        for k, v in ps.items():
            w = b["optim"]["state"][int(i)][k]
            assert torch.allclose(torch.as_tensor(v).float(), w, rtol=1e-2, atol=1e-12), k
    assert a["mixer_rng"] == b["mixer_rng"] and a["step"] == b["step"] and a["best"] == b["best"]
    assert os.path.exists(os.path.join(run2, "log.jsonl"))
    # and training goes on from it, one step further, on the same optimiser
    train(dataclasses.replace(cfg, run=run2, max_steps=4), TINY, encoder=HashEncoder(384), log=lambda s: None)
    assert torch.load(os.path.join(run2, "state.pt"), weights_only=True)["step"] == 4
    with pytest.raises(RuntimeError, match="not a resume bundle"):
        restore_resume(str(tmp_path / "nothing"), str(tmp_path / "x"))


def test_full_film_model_saves_loads_and_runs_the_same_on_onnx_and_torch(tmp_path):
    from plugin_bridge.engine.backends import OnnxBackend, TorchBackend
    from plugin_bridge.engine.separator import Query, Separator
    from plugin_bridge.models.registry import DEFAULT_CONFIG, load_safetensors_model, save_safetensors_model

    torch.manual_seed(5)
    net = ResUNet(dataclasses.replace(DEFAULT_CONFIG, film_gamma=True)).eval()
    with torch.no_grad():
        for n, p in net.film.named_parameters():
            if "gamma" in n:
                p.normal_(0, 0.05)  # a trained-looking, non-zero gamma
    path = str(tmp_path / "full_film.safetensors")
    save_safetensors_model(net, path)
    m = load_safetensors_model(path)
    assert m.cfg.film_gamma
    m._encoder = HashEncoder(384)
    x = np.random.default_rng(0).standard_normal((1, 48000)).astype(np.float32) * 0.1
    st, _ = Separator(m, backend=TorchBackend(m.net, "cpu", threads=1)).separate_array(x, 48000, [Query("hum")])
    so, _ = Separator(m, backend=OnnxBackend(m.net, "cpu", threads=1, cache_root=str(tmp_path))).separate_array(
        x, 48000, [Query("hum")])
    assert float(np.max(np.abs(st - so))) <= 1e-4
    assert 0.001 < float(np.sqrt(np.mean(st ** 2))) < float(np.sqrt(np.mean(x ** 2)))


def test_direct_scorer_agrees_with_the_engine_on_model_rate_mixtures(tmp_path):
    from plugin_bridge.engine.separator import Separator
    from plugin_bridge.training.benchmark import score_set, score_set_direct
    from plugin_bridge.testing import fast_model

    lj = _make_corpus(str(tmp_path / "c"), n_per_label=4)
    make_dev_set(str(tmp_path / "c"), str(tmp_path / "dev"), per_family=3, three_source=2, per_umbrella=0,
                 seconds=1.0, labels_json=lj)
    m = fast_model(seed=3)
    direct = score_set_direct(str(tmp_path / "dev"), m, batch=4)
    engine = score_set(str(tmp_path / "dev"), Separator(m, backend="torch", device="cpu"))
    assert len(direct) == len(engine) == 11
    for d, e in zip(direct, engine):
        assert d["label"] == e["label"] and abs(d["sdr_mix"] - e["sdr_mix"]) < 1e-6
        assert abs(d["sdri"] - e["sdri"]) < 0.05, (d["sdri"], e["sdri"])
        assert abs(d["sdri_gain"] - e["sdri_gain"]) < 1e-9
    assert len(score_set_direct(str(tmp_path / "dev"), m, subset=5)) == 5
