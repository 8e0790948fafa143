"""Training plumbing: the mixer obeys its rules and a few steps on a tiny config reduce the loss."""
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from plugin_bridge.metrics import rms, sdr
from plugin_bridge.models.resunet import ResUNet, ResUNetConfig, forward_padded
from plugin_bridge.training.mixer import Corpus, Mixer, MixerConfig
from plugin_bridge.training.train import TrainConfig, lr_at, train
from plugin_bridge.testing import HashEncoder

RATE = 16000
TINY = ResUNetConfig(name="tiny", sample_rate=16000, n_fft=256, hop=128, condition_size=384,
                     encoder_channels=(4, 8), encoder_pools=((2, 2), (2, 2)), bottleneck_channels=8,
                     input_transform="log1p")


def _make_corpus(root, n_per_label=6):
    """Three labels in three families plus one in a shared group: tones, noise bursts, clicks."""
    rng = np.random.default_rng(0)
    labels = {
        "tone": {"family": "instruments", "group": "tonal", "synonyms": ["sine"], "captions": ["a pure tone"]},
        "hum": {"family": "instruments", "group": "tonal", "synonyms": [], "captions": ["a low hum"]},
        "noise": {"family": "environmental", "group": "noise", "synonyms": ["hiss"], "captions": ["white noise"]},
        "clicks": {"family": "speech", "group": "clicks", "synonyms": [], "captions": ["clicking"]},
    }
    man = []
    t = np.arange(int(RATE * 2.0)) / RATE
    for lab in labels:
        os.makedirs(os.path.join(root, "clips", lab), exist_ok=True)
        for i in range(n_per_label):
            if lab == "tone":
                x = 0.3 * np.sin(2 * np.pi * rng.uniform(300, 2000) * t)
            elif lab == "hum":
                x = 0.3 * np.sin(2 * np.pi * rng.uniform(50, 120) * t)
            elif lab == "noise":
                x = 0.1 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 0.5 * t) > 0)
            else:
                x = np.zeros(t.size)
                x[rng.integers(0, t.size, 20)] = 0.8
            rel = f"clips/{lab}/{lab}{i}.flac"
            sf.write(os.path.join(root, rel), x.astype(np.float32), RATE, subtype="PCM_16")
            man.append({"id": f"{lab}{i}", "path": rel, "family": labels[lab]["family"], "label": lab,
                        "split": "dev" if i == 0 else "train", "group": f"{lab}{i}", "package": "synthetic",
                        "version": "0", "source_path": "", "licence": "CC0", "duration": 2.0, "sha256": "",
                        "sample_rate": RATE})
    with open(os.path.join(root, "manifest.jsonl"), "w") as f:
        f.write("\n".join(json.dumps(m) for m in man) + "\n")
    with open(os.path.join(root, "labels.json"), "w") as f:
        json.dump({"version": 1, "labels": labels, "unsupported": []}, f)
    return os.path.join(root, "labels.json")


def test_mixer_rules(tmp_path):
    lj = _make_corpus(str(tmp_path))
    corpus = Corpus.load(str(tmp_path), "train", lj)
    mixer = Mixer(corpus, MixerConfig(seconds=1.0, absent_fraction=0.3, augment=True), seed=3)
    n_absent = 0
    for _ in range(60):
        e = mixer.example()
        assert e.mixture.shape == e.target.shape == (RATE,)
        assert np.max(np.abs(e.mixture)) <= 0.99 + 1e-6
        groups = [corpus.labels[l]["group"] for l in e.labels_in_mix]
        assert len(groups) == len(set(groups)), "two sources of one confusable group in a mixture"
        if e.label not in e.labels_in_mix:
            n_absent += 1
            assert not np.any(e.target), "a query for an absent label must have a silent target"
        else:
            # the target's level relative to the interference follows the drawn SNR
            noise = e.mixture - e.target
            if rms(noise) > 0 and rms(e.target) > 0 and not mixer.cfg.augment:
                assert abs(20 * np.log10(rms(e.target) / rms(noise)) - e.snr_db) < 1.0
        assert -10.0 <= e.snr_db <= 10.0
    assert 5 <= n_absent <= 35


def test_mixer_snr_exact_without_augmentation(tmp_path):
    lj = _make_corpus(str(tmp_path))
    corpus = Corpus.load(str(tmp_path), "train", lj)
    mixer = Mixer(corpus, MixerConfig(seconds=1.0, absent_fraction=0.0, augment=False, n_interferers=(1, 1)), seed=5)
    for _ in range(20):
        e = mixer.example()
        noise = e.mixture - e.target
        if rms(e.target) > 0 and rms(noise) > 0:
            assert abs(20 * np.log10(rms(e.target) / rms(noise)) - e.snr_db) < 0.05


def test_reserved_package_in_manifest_is_refused(tmp_path):
    lj = _make_corpus(str(tmp_path))
    p = tmp_path / "manifest.jsonl"
    lines = p.read_text().splitlines()
    e = json.loads(lines[1])
    e["package"] = "supertuxkart-data"
    lines[1] = json.dumps(e)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="reserved"):
        Corpus.load(str(tmp_path), "train", lj, reserved_packages=("supertuxkart-data",))


def test_few_steps_reduce_loss_on_fixed_batch(tmp_path):
    lj = _make_corpus(str(tmp_path))
    corpus = Corpus.load(str(tmp_path), "train", lj)
    mixer = Mixer(corpus, MixerConfig(seconds=1.0, absent_fraction=0.0, augment=False), seed=1)
    exs = mixer.batch(8)
    torch.manual_seed(0)
    net = ResUNet(TINY)
    enc = HashEncoder(384)
    mix = torch.from_numpy(np.stack([e.mixture for e in exs]))[:, None]
    tgt = torch.from_numpy(np.stack([e.target for e in exs]))[:, None]
    cond = torch.from_numpy(enc.encode([e.query for e in exs]))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = (forward_padded(net, mix, cond) - tgt).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_channels_last_training_step_is_the_same_arithmetic_and_saves_the_same_file(tmp_path):
    """The trainer runs on CPU in NHWC (faster oneDNN kernels): a checkpoint written from it holds the same
    tensors as one from NCHW, and its loss and gradients are the exact (float64) ones to float32 rounding."""
    import copy

    from safetensors.torch import load_file

    from plugin_bridge.models.registry import save_safetensors_model

    lj = _make_corpus(str(tmp_path))
    exs = Mixer(Corpus.load(str(tmp_path), "train", lj), MixerConfig(seconds=1.0, absent_fraction=0.0,
                                                                      augment=False), seed=3).batch(4)
    mix = torch.from_numpy(np.stack([e.mixture for e in exs]))[:, None]
    tgt = torch.from_numpy(np.stack([e.target for e in exs]))[:, None]
    cond = torch.from_numpy(HashEncoder(384).encode([e.query for e in exs]))
    torch.manual_seed(0)
    nchw = ResUNet(TINY)
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    ref = copy.deepcopy(nchw).double()  # the exact arithmetic both float32 layouts approximate
    assert nhwc.base.encoder_block1.conv_block1.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    save_safetensors_model(nchw, str(tmp_path / "a.safetensors"))
    save_safetensors_model(nhwc, str(tmp_path / "b.safetensors"))
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses, grads = [], []
    for net, dt in ((nchw, torch.float32), (nhwc, torch.float32), (ref, torch.float64)):
        loss = (forward_padded(net, mix.to(dt), cond.to(dt)) - tgt.to(dt)).abs().mean()
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.double().flatten() for p in net.parameters() if p.grad is not None]))
    assert losses[1] == pytest.approx(losses[2], rel=1e-5) and losses[0] == pytest.approx(losses[2], rel=1e-5)
    # float32 sums in another order: the whole gradient within a few 1e-4 of float64 (NCHW: 3e-4, NHWC: 6e-4)
    err = [float((g - grads[2]).norm() / grads[2].norm()) for g in grads[:2]]
    assert err[1] < 2e-3 and err[0] < 2e-3, err


def test_train_loop_checkpoints_and_resumes(tmp_path):
    lj = _make_corpus(str(tmp_path / "corpus"))
    run = str(tmp_path / "run")
    cfg = TrainConfig(corpus=str(tmp_path / "corpus"), run=run, labels_json=lj, batch=4, seconds=1.0,
                      max_steps=6, val_every=3, val_examples=6, log_every=2, warmup=2, planned_steps=20)
    res = train(cfg, TINY, encoder=HashEncoder(384), log=lambda s: None)
    assert res["step"] == 6
    assert os.path.exists(os.path.join(run, "state.pt")) and os.path.exists(os.path.join(run, "best.safetensors"))
    log = [json.loads(l) for l in open(os.path.join(run, "log.jsonl"))]
    vals = [r for r in log if r.get("kind") == "val"]
    assert [r["step"] for r in vals] == [3, 6]
    # every validated model is kept; the best is the one with the highest mean of family medians
    from safetensors import safe_open

    assert sorted(os.listdir(os.path.join(run, "snapshots"))) == ["step000003.safetensors", "step000006.safetensors"]
    for v in vals:
        assert v["select"] == pytest.approx(float(np.mean(list(v["family_median_sdri"].values()))))
    top = max(vals, key=lambda v: v["select"])
    with safe_open(os.path.join(run, "best.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert int(meta["step"]) == top["step"] and float(meta["dev_select"]) == pytest.approx(top["select"], abs=1e-3)
    cfg.max_steps = 8
    res = train(cfg, TINY, encoder=HashEncoder(384), log=lambda s: None)
    assert res["step"] == 8  # resumed at 6, not restarted
    st = torch.load(os.path.join(run, "state.pt"), weights_only=True)
    assert st["step"] == 8
    assert st["best"] == pytest.approx(top["select"])  # the resumed run kept its best score

    # A run checkpointed under the old rule (best = overall median) is rescored from its log on resume.
    st["selection"] = "median_sdri"
    st["best"] = 99.0
    torch.save(st, os.path.join(run, "state.pt"))
    from plugin_bridge.training.train import _rescore_best

    assert _rescore_best(run) == pytest.approx(top["select"])

    # Checkpoint averaging: the mean of the last two snapshots, validated, kept only if it scores higher.
    from safetensors.torch import load_file

    from plugin_bridge.training.train import average_into_best, average_snapshots

    snaps = [load_file(os.path.join(run, "snapshots", f"step00000{k}.safetensors")) for k in (3, 6)]
    net, steps = average_snapshots(run, 2)
    assert steps == [3, 6]
    for k, v in net.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, (snaps[0][k] + snaps[1][k]) / 2, atol=1e-6), k
    ev = average_into_best(cfg, 2, encoder=HashEncoder(384), log=lambda s: None)
    rec = [json.loads(l) for l in open(os.path.join(run, "log.jsonl"))][-1]
    assert rec["kind"] == "val-average" and rec["averaged_steps"] == [3, 6] and rec["kept"] == ev["kept"]
    assert ev["kept"] == (ev["select"] > top["select"])
    with safe_open(os.path.join(run, "best.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert (meta.get("averaged_steps") == "3,6") == ev["kept"]
    assert _rescore_best(run) == pytest.approx(max(ev["select"], top["select"]))
    with pytest.raises(ValueError, match="at least 2"):
        average_snapshots(str(tmp_path / "no-run"), 3)


def test_lr_schedule_warms_up_and_decays():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-5, warmup=10, planned_steps=110)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(110, cfg) == pytest.approx(1e-5)
    assert lr_at(60, cfg) < lr_at(30, cfg)


def test_loss_weighs_quiet_and_loud_examples_alike():
    from plugin_bridge.models.losses import level_normalised_l1

    rng = np.random.default_rng(0)
    mix = torch.from_numpy(rng.standard_normal((1, 1, 1000)).astype(np.float32))
    tgt = mix * 0.5
    est = mix * 0.4
    loud = level_normalised_l1(est, tgt, mix)
    quiet = level_normalised_l1(est * 1e-3, tgt * 1e-3, mix * 1e-3)
    assert float(loud) == pytest.approx(float(quiet), rel=1e-4)
    assert float(level_normalised_l1(tgt, tgt, mix)) == 0.0


def _card_module():
    """scripts/make_model_card.py as a module (it is a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_model_card", os.path.join(os.path.dirname(__file__), "..", "scripts", "make_model_card.py"))
    card = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(card)
    return card


def test_model_card_status_is_judged_from_the_measured_numbers():
    """The card's status line is computed from the benchmark and speed files, so it can never claim a
    target the numbers do not show."""
    card = _card_module()

    def bench(overall, ratio, fams):
        return {"summary": {"overall": {"sdri_median": overall, "oracle_ratio": ratio},
                            "families": {k: {"sdri_median": v} for k, v in fams.items()}}}

    short = card.status_line(bench(6.1, 0.42, {"speech": 9.0, "instruments": 3.4}), {"x_realtime_onnx": 47.0})
    assert short.startswith("**Status: interim checkpoint.**")
    met, missed = short.split("NOT met:")
    assert "47.0x real time" in met and "median dev SDRi 6.10 dB" in missed
    assert "lowest family instruments 3.40 dB" in missed and "42 %" in missed
    done = card.status_line(bench(9.4, 0.65, {"speech": 9.0, "instruments": 6.2}), {"x_realtime_onnx": 41.0})
    assert done.startswith("**Status: all targets met.**") and "NOT met" not in done
    edge = card.status_line(bench(9.4, 0.65, {"speech": 9.0, "instruments": 6.2}), {"x_realtime_onnx": 39.9})
    assert "NOT met: 39.9x real time" in edge
    # v2 targets: paraphrases, the best-gain floor and every label above it
    b = bench(9.4, 0.65, {"speech": 9.0, "instruments": 6.2})
    b["summary"]["overall"].update(sdri_para_median=8.8, below_gain_share=0.12, labels_below_gain_floor=["piano"])
    met, missed = card.status_line(b, {"x_realtime_onnx": 41.0}).split("NOT met:")
    assert "paraphrased queries 8.80 dB" in missed and "12 % of dev mixtures below" in missed
    assert "1 labels with a median at or below the best-gain floor (piano)" in missed
    b["summary"]["overall"].update(sdri_para_median=9.1, below_gain_share=0.08, labels_below_gain_floor=[])
    assert card.status_line(b, {"x_realtime_onnx": 41.0}).startswith("**Status: all targets met.**")


def test_model_card_speed_and_schedule_come_from_the_measured_files():
    card = _card_module()
    b48 = {"minutes": 2, "rate": 48000, "threads": 2, "machine": {"cpu": "AMD EPYC", "logical_cpus": 2}, "backends": {
        "onnx": {"runs": 3, "first_file_x": [44.0, 46.0, 51.0], "first_file_x_median": 46.0,
                 "second_file_x_median": 50.0, "x_realtime": 46.0},
        "torch": {"runs": 3, "first_file_x": [30.0, 33.0, 35.0], "first_file_x_median": 33.0,
                  "second_file_x_median": 36.0, "x_realtime": 33.0}}}
    b44 = {"minutes": 2, "rate": 44100, "threads": 2, "backends": {
        "onnx": {"runs": 3, "first_file_x": [37.0, 39.5, 42.0], "first_file_x_median": 39.5,
                 "second_file_x_median": 43.0, "x_realtime": 39.5}}}
    judged, lines = card.speed_from_bench([b48, b44])
    assert judged == {"x_realtime_onnx": 39.5}  # the slowest rate's cold median is what is judged
    assert "48 kHz" in lines[0] and "first file 46.0x" in lines[0] and "range 44.0-51.0x" in lines[0]
    assert "PyTorch eager: first file 33.0x" in lines[0] and "44.1 kHz" in lines[1]
    assert "on AMD EPYC (2 logical CPUs)" in lines[0] and "machine not recorded" in lines[1]
    assert "NOT met: 39.5x" in card.status_line(None, judged)
    judged, _ = card.speed_from_bench([b48])  # the judged figure names the machine it was measured on
    assert judged == {"x_realtime_onnx": 46.0, "x_realtime_machine": "AMD EPYC"}
    assert "46.0x real time end to end on 2 cores of one machine (AMD EPYC; the first file after start-up, see Speed)" in card.status_line(None, judged)
    log = [{"step": 10, "lr": 1e-3}, {"step": 20, "lr": 5e-5}, {"step": 30, "lr": 6e-4}, {"step": 40, "lr": 5e-4},
           {"step": 250, "kind": "val", "median_sdri": 1.0}]
    assert card.schedule_restarts(log) == [30]


def test_cooldown_brings_the_rate_to_zero_and_resumes_on_its_curve(tmp_path):
    cfg = TrainConfig(lr=1e-3, min_lr=1e-5, warmup=10, planned_steps=110, anneal_from=200, anneal_steps=100)
    assert lr_at(150, cfg) == pytest.approx(1e-5)  # the plain schedule before the cool-down
    assert lr_at(200, cfg) == pytest.approx(1e-5)
    assert lr_at(250, cfg) == pytest.approx(0.5e-5)
    assert lr_at(300, cfg) == pytest.approx(0.0, abs=1e-12)

    lj = _make_corpus(str(tmp_path / "corpus"))
    run = str(tmp_path / "run")
    base = dict(corpus=str(tmp_path / "corpus"), run=run, labels_json=lj, batch=4, seconds=1.0, val_every=100,
                val_examples=6, log_every=1, warmup=2, planned_steps=20)
    train(TrainConfig(max_steps=3, **base), TINY, encoder=HashEncoder(384), log=lambda s: None)
    # cool-down of 4 steps from step 3, interrupted after 2 ...
    res = train(TrainConfig(max_steps=5, anneal_steps=4, **base), TINY, encoder=HashEncoder(384), log=lambda s: None)
    assert res["step"] == 5
    # ... and resumed: it keeps the curve that started at step 3 and stops at step 7, validated there
    res = train(TrainConfig(anneal_steps=4, **base), TINY, encoder=HashEncoder(384), log=lambda s: None)
    assert res["step"] == 7
    log = [json.loads(l) for l in open(os.path.join(run, "log.jsonl"))]
    lrs = {r["step"]: r["lr"] for r in log if "loss" in r}
    ref = TrainConfig(anneal_from=3, anneal_steps=4, **base)
    for k in range(4, 8):
        assert lrs[k] == pytest.approx(lr_at(k, ref))
    assert lrs[7] == pytest.approx(0.0, abs=1e-12) and lrs[5] < lrs[4]
    assert [r["step"] for r in log if r.get("kind") == "val"] == [7]
    assert os.path.exists(os.path.join(run, "snapshots", "step000007.safetensors"))


def test_family_weights_set_the_share_of_targets(tmp_path):
    lj = _make_corpus(str(tmp_path))
    corpus = Corpus.load(str(tmp_path), "train", lj)
    weights = {"instruments": 0.6, "environmental": 0.3, "speech": 0.1}
    mixer = Mixer(corpus, MixerConfig(seconds=0.5, absent_fraction=0.0, augment=False, family_weights=weights), seed=11)
    n = 1500
    fams = [corpus.labels[mixer.example().label]["family"] for _ in range(n)]
    for f, w in weights.items():
        share = fams.count(f) / n
        assert abs(share - w) < 0.04, (f, share)  # binomial sd <= 0.013 at n=1500
    # unweighted: equal shares per family
    mixer = Mixer(corpus, MixerConfig(seconds=0.5, absent_fraction=0.0, augment=False), seed=11)
    fams = [corpus.labels[mixer.example().label]["family"] for _ in range(n)]
    assert all(abs(fams.count(f) / n - 1 / 3) < 0.04 for f in weights)
    # a zero weight means that family is never a target
    mixer = Mixer(corpus, MixerConfig(seconds=0.5, absent_fraction=0.0, augment=False,
                                      family_weights={"instruments": 1.0, "speech": 0.0}), seed=2)
    assert {corpus.labels[mixer.example().label]["family"] for _ in range(200)} == {"instruments"}


def test_family_weights_option_is_parsed_and_bad_values_are_refused():
    from plugin_bridge.errors import ConfigError
    from plugin_bridge.training.cli import parse_family_weights

    assert parse_family_weights(None) is None
    assert parse_family_weights("instruments=0.5, speech=0.2,environmental=0.3") == {
        "instruments": 0.5, "speech": 0.2, "environmental": 0.3}
    assert parse_family_weights("music=0.2,speech=0.8") == {"music": 0.2, "speech": 0.8}   # corpus v2 family
    for bad in ("effects=1", "instruments", "instruments=x", "speech=-1", "speech=nan", "speech=0,instruments=0"):
        with pytest.raises(ConfigError, match="--family-weights"):
            parse_family_weights(bad)


def test_cooldown_from_init_weights_rewarms_then_follows_the_full_curve():
    # --init at step 5000 + --anneal 1000: the fresh optimiser is re-warmed over 100 steps, and the
    # cool-down curve starts from the schedule's value at step 5000 (not from the 0.1x re-warm start)
    cfg = TrainConfig(lr=1e-3, min_lr=5e-5, warmup=300, planned_steps=7000, warmup_from=5000,
                      anneal_from=5000, anneal_steps=1000)
    import math
    base = cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * 4700 / 6700))
    assert lr_at(5000, cfg) == pytest.approx(0.1 * base)
    assert lr_at(5100, cfg) == pytest.approx(base * 0.5 * (1 + math.cos(math.pi * 0.1)))
    assert lr_at(5500, cfg) == pytest.approx(base * 0.5)
    assert lr_at(6000, cfg) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(5050, cfg) > lr_at(5000, cfg)


def test_model_card_is_what_its_committed_measurements_give(tmp_path):
    """MODEL_CARD.md is regenerated from models/weights/card/ (benchmark, speed, training log...) on any
    machine, and the committed card is exactly that: no figure in it was typed by hand or left stale."""
    import subprocess
    import sys

    root = os.path.join(os.path.dirname(__file__), "..")
    out = tmp_path / "card.md"
    r = subprocess.run([sys.executable, os.path.join(root, "scripts", "make_model_card.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    committed = open(os.path.join(root, "models", "weights", "MODEL_CARD.md"), encoding="utf-8").read()
    assert out.read_text(encoding="utf-8") == committed


def test_v2_model_card_lists_every_label_with_its_data_method_and_median(tmp_path):
    """A v2 vocabulary gets a card row per label (family, data, packages, procedural or not, phrasings, dev
    median), the synthesis method of each procedural label, the umbrellas with their members, and the card
    comes out the same when regenerated from the inputs it saved (--save-inputs), without the corpus."""
    import subprocess
    import sys

    from plugin_bridge.corpus.procedural import methods
    from plugin_bridge.models.registry import save_safetensors_model

    root = os.path.join(os.path.dirname(__file__), "..")
    card = _card_module()
    weights = str(tmp_path / "w.safetensors")
    save_safetensors_model(ResUNet(TINY), weights, step=900, train_hours="1.5", ema_decay="0.995")
    labels = {"version": 2, "labels": {
        "hum": {"family": "environmental", "group": "machines", "synonyms": ["mains hum", "buzz"],
                "captions": ["a 50 Hz hum"]},
        "door": {"family": "environmental", "group": "foley", "synonyms": ["door slam"], "captions": []},
        "piano": {"family": "instruments", "group": "keys", "synonyms": [], "captions": ["a piano", "keys"]}},
        "umbrellas": {"noise": {"synonyms": ["noise", "clean-up"], "captions": [], "members": ["hum"]},
                      "instruments": {"synonyms": ["band"], "captions": [], "members_family": "instruments"}},
        "singing": "no allowed source has singing.",
        "unsupported": ["dog barking"], "unsupported_reasons": {"dog barking": "reserved for evaluation"}}
    lj = tmp_path / "labels_v2.json"
    lj.write_text(json.dumps(labels))
    man = [{"family": "environmental", "label": "hum", "package": "plugin-bridge-procedural"}] * 12
    man += [{"family": "environmental", "label": "door", "package": p} for p in ["0ad-data"] * 3 + ["ufoai-sound"]]
    man += [{"family": "instruments", "label": "piano", "package": "fluid-soundfont-gm"}] * 5
    os.makedirs(tmp_path / "corpus")
    (tmp_path / "corpus" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in man))
    summary = {"clips": 21, "minutes": 2.0, "by_family": {"environmental": {"clips": 16, "minutes": 1.5}},
               "by_label": {"environmental/hum": {"clips": 12, "minutes": 1.04},
                            "environmental/door": {"clips": 4, "minutes": 0.2},
                            "instruments/piano": {"clips": 5, "minutes": 0.5}},
               "by_label_split": {"environmental/hum/dev": {"clips": 2, "minutes": 0.1}},
               "groups_per_label": {"environmental/hum": 12, "environmental/door": 3, "instruments/piano": 5},
               "by_package": {"0ad-data": {"clips": 3, "minutes": 0.15}}, "by_licence": {},
               "attributions_required": [{"package": "0ad-data", "licences": ["CC-BY-SA-3.0"],
                                          "copyright_holders": ["Wildfire Games"]}],
               "dropped_labels": {"thunder": "only 13 clips (< 15)"}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))

    def group(sdri, floor, n):
        return {"n": n, "sdri_median": sdri, "sdri_gain_median": floor, "oracle_ratio": 0.5}

    bench = {"summary": {"overall": group(7.0, 2.0, 9), "labels": {"hum": group(4.2, 1.1, 3),
                                                                   "noise": group(3.3, 0.9, 2)},
                         "families": {"environmental": group(6.5, 2.0, 4), "instruments": group(7.5, 2.0, 3),
                                      "umbrella": group(3.3, 0.9, 2)}}}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    run = tmp_path / "run"
    os.makedirs(run)
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"step": 810, "loss": -5.0, "lr": 5e-4, "hours": 1.2},
        {"step": 900, "loss": -5.5, "lr": 4e-4, "hours": 1.5},
        {"step": 900, "kind": "val-ema", "n": 8, "median_sdri": 6.0,
         "family_median_sdri": {"environmental": 5.0, "instruments": 7.0}}]))
    (run / "train_config.json").write_text(json.dumps({"train": {
        "labels_json": "/elsewhere/models/training/labels_v2.json", "loss": "snr", "ema": 0.995, "lr": 5e-4,
        "min_lr": 5e-5, "warmup": 300, "planned_steps": 31400, "umbrella_fraction": 0.1, "val_every": 100}}))
    inputs = tmp_path / "inputs"
    base = [sys.executable, os.path.join(root, "scripts", "make_model_card.py"), "--weights", weights,
            "--labels-json", str(lj), "--corpus-summary", str(tmp_path / "summary.json"), "--inputs", str(inputs)]
    r = subprocess.run(base + ["--run", str(run), "--benchmark", str(tmp_path / "bench.json"), "--corpus",
                               str(tmp_path / "corpus"), "--save-inputs", "--out", str(tmp_path / "card.md")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    text = (tmp_path / "card.md").read_text(encoding="utf-8")
    assert ("| hum | environmental | machines | 12 (2) | 1.0 | 12 | plugin-bridge-procedural (12) | yes, 12 of 12 clips (method below) "
            "| 2 / 1 | 3 | 4.20 | 1.10 |") in text
    assert "| door | environmental | foley | 4 (0) | 0.2 | 3 | 0ad-data (3), ufoai-sound (1) | no | 1 / 0 | 0 | n/a |" in text
    assert "| piano | instruments | keys | 5 (0) | 0.5 | 5 | fluid-soundfont-gm (5) | no | 0 / 2 |" in text
    assert f"* **hum**: {methods()['hum']}" in text and "50 or 60 Hz" in methods()["hum"]
    assert "**door**" not in text  # only procedural labels get a method line
    assert "| noise | clean-up | hum | 2 | 3.30 | 0.90 |" in text
    assert "| instruments | band | every instruments label (1) |" in text
    assert "dog barking (reserved for evaluation)" in text and "thunder (only 13 clips (< 15))" in text
    assert "Loss: thresholded negative SNR" in text and "decay 0.995" in text
    assert "best single checkpoint step 900 (the EMA of the weights)" in text
    assert "lowest family environmental 6.50 dB" in text  # the umbrella queries are not a family
    # the vocabulary the run trained with is found by name in models/training/
    assert card.resolve_labels_json(None, {"labels_json": "/elsewhere/models/training/labels_v2.json"}) == \
        os.path.join(card.TRAINING_DIR, "labels_v2.json")
    # regenerated from the saved inputs alone (no run, benchmark or corpus given): the same card
    assert json.loads((inputs / "label_packages.json").read_text())["environmental/door"] == \
        {"0ad-data": 3, "ufoai-sound": 1}
    r = subprocess.run(base + ["--out", str(tmp_path / "again.md")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "again.md").read_text(encoding="utf-8") == text


def test_resume_on_a_changed_dev_set_scores_the_kept_best_again_instead_of_forgetting_it(tmp_path):
    """A corpus rebuilt elsewhere gives a dev set of other bytes: the best model is scored on the new one,
    so a worse model validated after the resume cannot replace it."""
    lj = _make_corpus(str(tmp_path / "corpus"))
    run = str(tmp_path / "run")
    cfg = TrainConfig(corpus=str(tmp_path / "corpus"), run=run, labels_json=lj, batch=4, seconds=1.0,
                      max_steps=4, val_every=2, val_examples=6, log_every=2, warmup=2, planned_steps=20)
    train(cfg, TINY, encoder=HashEncoder(384), log=lambda s: None)
    st = torch.load(os.path.join(run, "state.pt"), weights_only=True)
    st["dev_id"] = "another-machine"
    torch.save(st, os.path.join(run, "state.pt"))
    from plugin_bridge.models.registry import load_safetensors_model
    from plugin_bridge.training.train import QueryTable, dev_set, evaluate

    exs, labels, umb = dev_set(cfg.corpus, lj, 6, 1.0)
    tr = Corpus.load(cfg.corpus, "train", lj)
    table = QueryTable({**tr.labels, **labels}, HashEncoder(384), {**tr.umbrellas, **umb})
    expect = evaluate(load_safetensors_model(os.path.join(run, "best.safetensors")).net, table, exs,
                      {**tr.labels, **labels}, "cpu")["select"]
    lines = []
    cfg.max_steps = 5  # no validation after the resume: the state keeps the re-scored best
    train(cfg, TINY, encoder=HashEncoder(384), log=lines.append)
    assert any("re-scored" in l for l in lines), lines
    st = torch.load(os.path.join(run, "state.pt"), weights_only=True)
    assert st["best"] == pytest.approx(expect, abs=1e-4) and st["best"] > -1e8


def test_model_card_compares_against_the_replaced_model_pairwise_and_refuses_other_mixtures():
    """The card's table against the previous model pairs the same mixtures: a family that got worse shows
    as a negative difference, and benchmarks of different dev sets are refused, not compared."""
    card = _card_module()

    def row(label, family, sdri, gain):
        return {"label": label, "family": family, "sdri": sdri, "sdri_gain": gain, "below_gain": sdri <= gain}

    def bench(rows):
        labels = {}
        for r in rows:
            labels.setdefault(r["label"], []).append(r)
        return {"rows": rows, "summary": {"labels": {k: {"sdri_median": float(np.median([r["sdri"] for r in v])),
                                                          "sdri_gain_median": float(np.median([r["sdri_gain"] for r in v]))}
                                                      for k, v in labels.items()}}}

    prev = bench([row("speech", "speech", 10.0, 3.0), row("speech", "speech", 12.0, 3.0),
                  row("piano", "instruments", 1.0, 2.0), row("piano", "instruments", 1.5, 2.0)])
    new = bench([row("speech", "speech", 9.0, 3.0), row("speech", "speech", 11.0, 3.0),
                 row("piano", "instruments", 4.0, 2.0), row("piano", "instruments", 5.5, 2.0)])
    lines = card.previous_comparison(prev, new)
    table = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in lines if ln.startswith("| ")}
    assert table["speech"][:4] == ["2", "11.00", "10.00", "-1.00"]
    assert table["instruments"][3] == "+3.50" and table["instruments"][5:] == ["100 %", "0 %"]
    assert table["overall"][0] == "4"
    assert "previous model 1, this model 0 (none)" in lines[-1]
    other = bench([row("birds", "environmental", 3.0, 1.0)] * 4)
    with pytest.raises(SystemExit, match="same dev set"):
        card.previous_comparison(other, new)


def _compile_run(tmp_path, name, compile_, **extra):
    lj = _make_corpus(str(tmp_path / "corpus")) if not (tmp_path / "corpus").exists() else \
        str(tmp_path / "corpus" / "labels.json")
    run = str(tmp_path / name)
    lines = []
    cfg = TrainConfig(corpus=str(tmp_path / "corpus"), run=run, labels_json=lj, batch=4, seconds=1.0, max_steps=3,
                      val_every=100, val_examples=6, log_every=1, warmup=2, planned_steps=20, compile=compile_,
                      threads=2, **extra)
    train(cfg, TINY, encoder=HashEncoder(384), log=lines.append)
    st = torch.load(os.path.join(run, "state.pt"), weights_only=True)
    losses = [json.loads(l)["loss"] for l in open(os.path.join(run, "log.jsonl")) if '"loss"' in l]
    return st, losses, lines


def test_compiled_training_steps_train_the_same_weights_as_eager_ones(tmp_path):
    """`train --compile` (the CLI default) runs the steps through torch.compile: the same losses, and the same
    weights, BatchNorm statistics and state_dict keys in the checkpoint, to float32 rounding."""
    eager, le, _ = _compile_run(tmp_path, "eager", False)
    comp, lc, lines = _compile_run(tmp_path, "compiled", True)
    assert not any("torch.compile failed" in l for l in lines), lines
    assert lc == pytest.approx(le, rel=1e-4) and len(lc) == 3
    assert eager["model"].keys() == comp["model"].keys()
    # Adam's normalised steps carry float32 rounding into the weights at the size of the learning rate, so
    # the comparison is over the whole model: within 1e-3 of its norm (a wrong graph is off by far more)
    keys = [k for k, v in eager["model"].items() if v.is_floating_point()]
    e = torch.cat([eager["model"][k].flatten() for k in keys])
    c = torch.cat([comp["model"][k].flatten() for k in keys])
    assert float((e - c).norm() / e.norm()) < 1e-3
    assert not torch.equal(eager["model"]["base.bn0.running_mean"], torch.zeros_like(eager["model"]["base.bn0.running_mean"]))


def test_a_failed_compile_falls_back_to_eager_training_and_says_so(tmp_path, monkeypatch):
    class Broken:
        def __init__(self, net):
            self.cfg = net.cfg

        def __call__(self, *a, **k):
            raise RuntimeError("no C++ compiler\nmore detail")

    monkeypatch.setattr(torch, "compile", lambda net: Broken(net))
    eager, le, _ = _compile_run(tmp_path, "eager", False)
    fell, lf, lines = _compile_run(tmp_path, "fell", True)
    assert [l for l in lines if "torch.compile failed" in l] == \
        ["torch.compile failed (RuntimeError: no C++ compiler); training on eagerly"]
    assert lf == pytest.approx(le, rel=1e-6) and fell["step"] == 3


def test_prefetched_batches_are_the_mixers_own_and_a_resumed_run_draws_the_same_ones(tmp_path):
    """The trainer draws each next batch on a background thread: the batches are exactly what the mixer gives
    in order, and the RNG state it checkpoints is where the next batch not yet trained on starts, so a run
    stopped and resumed trains on the same mixtures (and reaches the same losses) as one that never stopped."""
    from plugin_bridge.training.mixer import BatchPrefetcher

    lj = _make_corpus(str(tmp_path / "corpus"))
    corpus = Corpus.load(str(tmp_path / "corpus"), "train", lj)
    ref = Mixer(corpus, MixerConfig(seconds=1.0), seed=7)
    want = [ref.batch(3) for _ in range(3)]
    m = Mixer(corpus, MixerConfig(seconds=1.0), seed=7)
    feed = BatchPrefetcher(m, 3)
    try:
        for k in range(3):
            mix, tgt, queries = feed.take()
            assert np.array_equal(mix, np.stack([e.mixture for e in want[k]]))
            assert np.array_equal(tgt, np.stack([e.target for e in want[k]]))
            assert queries == [e.query for e in want[k]]
        # checkpointed state: where batch 4 starts, although the feed has drawn it already
        again = Mixer(corpus, MixerConfig(seconds=1.0), seed=0)
        again.rng.bit_generator.state = feed.rng_state
        nxt = feed.take()
        assert np.array_equal(np.stack([e.mixture for e in again.batch(3)]), nxt[0])
    finally:
        feed.close()

    base = dict(corpus=str(tmp_path / "corpus"), labels_json=lj, batch=4, seconds=1.0, val_every=100,
                val_examples=6, log_every=1, warmup=2, planned_steps=20, threads=1)
    train(TrainConfig(run=str(tmp_path / "straight"), max_steps=4, **base), TINY, encoder=HashEncoder(384),
          log=lambda s: None)
    train(TrainConfig(run=str(tmp_path / "resumed"), max_steps=2, **base), TINY, encoder=HashEncoder(384),
          log=lambda s: None)
    train(TrainConfig(run=str(tmp_path / "resumed"), max_steps=4, **base), TINY, encoder=HashEncoder(384),
          log=lambda s: None)

    def losses(run):
        return [json.loads(l)["loss"] for l in open(tmp_path / run / "log.jsonl") if '"loss"' in l]

    assert len(losses("straight")) == 4 and losses("resumed") == pytest.approx(losses("straight"), rel=1e-6)


def test_training_speed_bench_feeds_every_arm_the_same_batches(tmp_path, monkeypatch):
    """`train --time-steps N` compares eager, compiled and compiled+prefetch steps: a fair A/B needs each arm to train
    the same network on the same mixtures in the same order, round after round (the prefetch arm resumes its
    mixer where its taken batches ended). With compiling replaced by the identity the arms are the same
    arithmetic, so their losses must agree step for step; the figures are per-arm medians over the rounds."""
    monkeypatch.setattr(torch, "compile", lambda net: net)
    from plugin_bridge.training.speed import run_train_bench

    lj = _make_corpus(str(tmp_path / "corpus"))
    lines = []
    res = run_train_bench(str(tmp_path / "corpus"), lj, steps=2, rounds=2, threads=1, batch=3, seconds=1.0,
                          model_cfg=TINY, encoder=HashEncoder(384), out=lines.append)
    assert set(res["losses"]) == {"eager", "compiled", "compiled+prefetch"}
    ref = res["losses"]["eager"]
    assert len(ref) == 2 * (1 + 2) and len(set(ref)) > 1
    for arm in ("compiled", "compiled+prefetch"):
        assert res["losses"][arm] == pytest.approx(ref, rel=1e-6), arm
    assert all(len(v) == 2 and min(v) > 0 for v in res["rounds"].values())
    assert "compiled+prefetch" in lines[1] and "speed vs eager" in lines[1]

    noise = run_train_bench(None, steps=1, rounds=1, threads=1, batch=2, seconds=1.0, model_cfg=TINY, out=lines.append)
    assert set(noise["losses"]) == {"eager", "compiled"}
    assert noise["losses"]["compiled"] == pytest.approx(noise["losses"]["eager"], rel=1e-6)


def test_averaging_ships_one_kind_of_snapshot_in_a_step_range_reproducibly(tmp_path, capsys):
    """`train --average-steps A-B --average-out PATH`: the mean of the EMA snapshots in the range (never raw and
    EMA weights mixed), written with the newest one's metadata, as the shipped weights were made."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from plugin_bridge.cli import main as cli_main
    from plugin_bridge.errors import ConfigError
    from plugin_bridge.models.registry import load_model, save_safetensors_model
    from plugin_bridge.training.cli import parse_step_range
    from plugin_bridge.training.train import average_to_file, snapshot_paths

    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    nets = {}
    for step in (250, 500, 750, 1000):
        for kind in ("", "-ema"):
            torch.manual_seed(step + len(kind))
            net = ResUNet(TINY)
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(torch.randn_like(p))
            nets[(step, kind)] = {k: v.clone() for k, v in net.state_dict().items()}
            extra = {"ema_decay": 0.995} if kind else {}
            save_safetensors_model(net, str(run / "snapshots" / f"step{step:06d}{kind}.safetensors"), step=step,
                                   train_hours=step / 1000, dev_select=1.0, vocabulary_file="labels_v2.json", **extra)
    names = lambda ps: [os.path.basename(p) for p in ps]  # noqa: E731
    assert names(snapshot_paths(str(run), steps=(500, 750))) == ["step000500-ema.safetensors", "step000750-ema.safetensors"]
    assert names(snapshot_paths(str(run), last=2, ema=False)) == ["step000750.safetensors", "step001000.safetensors"]
    assert len(snapshot_paths(str(run), last=3)) == 3 and all("-ema" in p for p in snapshot_paths(str(run), last=3))

    out = str(tmp_path / "shipped.safetensors")
    assert cli_main(["train", "--run", str(run), "--average-steps", "500-1000", "--average-out", out]) == 0
    got = load_file(out)
    for k, v in got.items():
        if v.is_floating_point():
            want = sum(nets[(s, "-ema")][k].double() for s in (500, 750, 1000)) / 3
            assert torch.allclose(v.double(), want, atol=1e-6), k
        else:
            assert torch.equal(v, nets[(1000, "-ema")][k]), k
    with safe_open(out, framework="pt") as f:
        meta = f.metadata()
    assert meta["averaged_steps"] == "500,750,1000" and meta["step"] == "1000" and meta["ema_decay"] == "0.995"
    assert "dev_select" not in meta  # that score was the newest snapshot's, not the mean's
    assert load_model(out).net.cfg == TINY  # loads as a model file
    # the same command again gives the same bytes' worth of tensors (the shipped file can be re-made)
    assert average_to_file(str(run), str(tmp_path / "again.safetensors"), steps=(500, 1000)) == [500, 750, 1000]
    again = load_file(str(tmp_path / "again.safetensors"))
    assert all(torch.equal(again[k], got[k]) for k in got)

    assert parse_step_range("17500-19250") == (17500, 19250)
    for bad in ("17500", "a-b", "900-100", "-5-10"):
        with pytest.raises(ConfigError, match="average-steps"):
            parse_step_range(bad)
    capsys.readouterr()
    assert cli_main(["train", "--run", str(run), "--average-out", out]) != 0
    assert "needs --average-last N or --average-steps" in capsys.readouterr().err
    assert cli_main(["train", "--run", str(run), "--average-steps", "1000-2000", "--average-out", out]) != 0
    assert "1 matching snapshot(s); averaging needs at least 2" in capsys.readouterr().err
    assert all(torch.equal(load_file(out)[k], got[k]) for k in got)  # a refused command left the file alone
