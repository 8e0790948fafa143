"""Benchmark metrics against an independent implementation and known signals; benchmark plumbing."""
import csv
import os

import numpy as np
import pytest
import soundfile as sf

from plugin_bridge.engine.separator import Separator
from plugin_bridge.engine.spectral import Grid
from plugin_bridge.training.benchmark import oracle_irm, score_set, summarise
from plugin_bridge.metrics import sdr, sdri, si_sdr
from plugin_bridge.testing import ConstantMaskBackend, fast_model


def test_sdr_on_known_signal():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(16000)
    n = rng.standard_normal(16000)
    n *= np.sqrt(np.mean(ref ** 2) / np.mean(n ** 2)) * 10 ** (-20 / 20)
    assert sdr(ref, ref + n) == pytest.approx(20.0, abs=1e-9)
    assert sdri(ref, ref + n / 10, ref + n) == pytest.approx(20.0, abs=1e-9)
    assert sdr(ref, np.zeros_like(ref)) == pytest.approx(0.0, abs=1e-9)


def test_si_sdr_matches_fast_bss_eval():
    fbe = pytest.importorskip("fast_bss_eval")
    rng = np.random.default_rng(1)
    for _ in range(5):
        ref = rng.standard_normal(8000)
        est = 0.7 * ref + 0.3 * rng.standard_normal(8000)
        ours = si_sdr(ref, est)
        theirs = float(fbe.si_sdr(ref[None], est[None], zero_mean=False)[0])
        assert ours == pytest.approx(theirs, abs=1e-3)
    # scale invariance
    assert si_sdr(ref, 3 * est) == pytest.approx(si_sdr(ref, est), abs=1e-9)


def test_oracle_irm_separates_disjoint_tones():
    t = np.arange(16000 * 2) / 16000
    a = 0.3 * np.sin(2 * np.pi * 300 * t)
    b = 0.3 * np.sin(2 * np.pi * 3000 * t)
    est = oracle_irm(a + b, a, 16000, Grid(16000, 512, 256))
    assert est.shape == a.shape
    assert sdri(a, est, a + b) > 20
    est48 = oracle_irm(np.repeat(a + b, 3), np.repeat(a, 3), 48000, Grid(16000, 512, 256))
    assert est48.shape == (a.size * 3,)


def test_benchmark_scores_a_set(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    os.makedirs(tmp_path / "audio")
    for i in range(3):
        tgt = (rng.standard_normal(16000) * 0.1).astype(np.float32)
        mix = tgt + (rng.standard_normal(16000) * 0.1).astype(np.float32)
        sf.write(tmp_path / f"audio/m{i}.wav", mix, 16000, subtype="FLOAT")
        sf.write(tmp_path / f"audio/t{i}.wav", tgt, 16000, subtype="FLOAT")
        rows.append({"mixture": f"audio/m{i}.wav", "target": f"audio/t{i}.wav", "query": "noise",
                     "paraphrase": "hiss", "label": "noise", "family": "environmental"})
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    # identity separator: the "stem" is the mixture, so SDRi must be 0 exactly (within float error)
    sep = Separator(fast_model(), backend=ConstantMaskBackend(30.0))
    res = score_set(str(tmp_path), sep)
    assert len(res) == 3
    for r in res:
        assert r["sdri"] == pytest.approx(0.0, abs=1e-3)
        assert r["sdr_mix"] == pytest.approx(0.0, abs=0.5)  # 0 dB input SNR
        assert r["sdri_irm"] > 1.0
    s = summarise(res)
    assert s["overall"]["n"] == 3 and "environmental" in s["families"]


def test_benchmark_compare_pairs_two_models_on_the_same_mixtures(tmp_path, capsys):
    """`benchmark --compare OLD.json NEW.json`: per group, both medians and the mean +- standard error of the
    per-mixture differences; files scored on different mixtures are refused."""
    import json

    from plugin_bridge.cli import main
    from plugin_bridge.errors import ConfigError
    from plugin_bridge.training.benchmark import paired_compare

    def row(label, family, mix, sdri, below):
        return {"label": label, "family": family, "sdr_mix": mix, "sdri": sdri, "below_gain": below, "sdri_para": sdri - 1}

    old = [row("rain", "environmental", 0.5, 2.0, True), row("rain", "environmental", -1.0, 4.0, False),
           row("piano", "instruments", 2.0, 6.0, False), row("effects", "umbrella", 1.0, 1.0, True)]
    new = [dict(r, sdri=r["sdri"] + d, below_gain=b) for r, d, b in zip(old, (1.0, 3.0, -0.5, 2.0), (False, False, False, True))]
    recs = {r["group"]: r for r in paired_compare(old, new)}
    assert list(recs) == ["overall", "family: environmental", "family: instruments", "family: umbrella",
                          "umbrella: effects"]
    env = recs["family: environmental"]
    assert (env["n"], env["old_median"], env["new_median"]) == (2, 3.0, 5.0)
    assert env["paired_mean"] == pytest.approx(2.0) and env["paired_se"] == pytest.approx(1.0)  # diffs 1 and 3
    assert env["old_below_floor"] == 0.5 and env["new_below_floor"] == 0.0
    assert recs["overall"]["paired_mean"] == pytest.approx(5.5 / 4)
    assert recs["umbrella: effects"]["new_below_floor"] == 1.0

    for name, rows in (("old", old), ("new", new)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"model": name, "rows": rows}))
    assert main(["benchmark", "--compare", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 0
    out = capsys.readouterr().out
    assert "family: environmental" in out and "+2.00 +- 1.00" in out and "50.0 % -> 0.0 %" in out

    other = [dict(r) for r in new]
    other[1]["sdr_mix"] += 0.1  # another mixture in the same place
    with pytest.raises(ConfigError, match="same mixtures"):
        paired_compare(old, other)
    with pytest.raises(ConfigError, match="same mixtures"):
        paired_compare(old, new[:3])
