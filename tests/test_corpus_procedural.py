"""The procedural corpus labels do what their docstrings (quoted by the model card) say, and the v2 path rules
label the real package paths they were written for."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy.signal import welch

from plugin_bridge.corpus import procedural as P
from plugin_bridge.corpus import sources

SR = P.SR


def _psd(x, nperseg=8192):
    f, p = welch(x, SR, nperseg=nperseg)
    return f, p


def _find(gen, pattern: str, dur: float, tries: int = 400):
    """First seed whose parameter draw matches ``pattern`` (the description names the drawn variant)."""
    for s in range(tries):
        x, desc = gen(np.random.default_rng(s), dur)
        if re.search(pattern, desc):
            return x, desc
    raise AssertionError(f"no seed gives {pattern}")


def _band_slope_db_per_octave(x, f_lo=100.0, f_hi=4000.0):
    f, p = _psd(x)
    m = (f >= f_lo) & (f <= f_hi)
    return float(np.polyfit(np.log2(f[m]), 10 * np.log10(p[m]), 1)[0])


def test_every_generator_deterministic_by_seed_and_in_range():
    for label in P.GENERATORS:
        a, da = P.generate(label, 3)
        b, db = P.generate(label, 3)
        c, _ = P.generate(label, 4)
        assert da == db and np.array_equal(a, b), label
        assert not (len(a) == len(c) and np.allclose(a, c)), label
        assert a.dtype == np.float32 and 4.0 <= len(a) / SR <= 10.0 and np.all(np.isfinite(a)), label
        assert np.sqrt(np.mean(a ** 2)) > 1e-3, label


@pytest.mark.parametrize("beta,slope", [(0.0, 0.0), (1.0, -3.01), (2.0, -6.02)])
def test_noise_colours_have_their_spectral_slope(beta, slope):
    x = P.coloured_noise(np.random.default_rng(1), 8 * SR, beta)
    assert abs(_band_slope_db_per_octave(x) - slope) < 0.5


def test_tape_hiss_rises_above_3_khz():
    x, _ = _find(P.gen_hiss, "colour=tape", 6.0)
    f, p = _psd(x)
    lo = p[(f > 300) & (f < 1500)].mean()
    hi = p[(f > 5000) & (f < 7500)].mean()
    assert 10 * np.log10(hi / lo) > 4.0


@pytest.mark.parametrize("f0", [50, 60])
def test_hum_energy_sits_on_mains_harmonics(f0):
    x, desc = _find(P.gen_hum, f"f0={f0}Hz", 8.0)
    f, p = _psd(x, nperseg=16384)
    on = np.zeros_like(f, dtype=bool)
    for k in range(1, 25):
        on |= np.abs(f - k * f0) <= 0.012 * k * f0 + 2.0
    assert p[on].sum() / p.sum() > 0.97, desc
    # the strongest line is a harmonic of f0 (fundamental or a low one), and nothing at the other mains frequency
    peak = f[np.argmax(p)]
    assert min(abs(peak - k * f0) for k in range(1, 6)) < 3.0
    other = 110 - f0
    assert p[np.abs(f - other) < 1.5].max() < 1e-3 * p.max()


def test_room_tone_is_hum_free_low_level_noise():
    x, _ = P.gen_room_tone(np.random.default_rng(5), 8.0)
    f, p = _psd(x, nperseg=16384)
    assert _band_slope_db_per_octave(x, 400, 1500) < -2.0          # pink-to-brown, falling
    for mains in (50, 60):
        line = p[np.abs(f - mains) < 0.6].max()
        neighbours = np.median(p[(np.abs(f - mains) > 3) & (np.abs(f - mains) < 10)])
        assert line < 20 * neighbours                              # no tonal hum line


def test_wind_noise_is_low_frequency_rumble_with_gusts():
    x, _ = P.gen_wind_noise(np.random.default_rng(2), 8.0)
    f, p = _psd(x)
    assert p[f < 500].sum() / p.sum() > 0.95
    frames = np.sqrt(np.mean(x[: len(x) // 1600 * 1600].reshape(-1, 1600) ** 2, axis=1))
    assert frames.max() / max(frames.min(), 1e-9) > 1.5             # gusty level


def test_crackle_is_impulsive_and_hiss_is_not():
    def kurt(y):
        y = y - y.mean()
        return float(np.mean(y ** 4) / np.mean(y ** 2) ** 2)
    x, _ = P.gen_crackle(np.random.default_rng(0), 6.0)
    h, _ = _find(P.gen_hiss, "colour=white", 6.0)
    assert kurt(x) > 15 and abs(kurt(h) - 3.0) < 0.5


def test_beep_is_a_gated_tone_at_its_frequency():
    x, desc = _find(P.gen_beep, "wave=sine", 6.0)
    fb = float(re.search(r"f=(\d+)Hz", desc).group(1))
    f, p = _psd(x, nperseg=16384)
    assert abs(f[np.argmax(p)] - fb) < 3.0
    env = np.abs(x[: len(x) // 160 * 160]).reshape(-1, 160).max(axis=1)
    assert (env < 0.01).mean() > 0.05 and (env > 0.3).mean() > 0.05    # on and off


def test_phone_ring_cadence_north_american_2s_on_4s_off():
    for s in range(400):
        rng = np.random.default_rng(s)
        x, desc = P.gen_phone_ring(rng, 14.0)
        if "north-american" in desc:
            break
    env = np.sqrt(np.mean(x[: len(x) // 160 * 160].reshape(-1, 160) ** 2, axis=1)) > 0.05   # 10 ms frames
    edges = np.flatnonzero(np.diff(env.astype(int)))
    runs = np.diff(edges) / 100.0                                   # seconds between transitions
    on = [r for r in runs if abs(r - 2.0) < 0.1]
    off = [r for r in runs if abs(r - 4.0) < 0.1]
    assert on and off, (desc, runs)
    assert all(abs(r - 2.0) < 0.1 or abs(r - 4.0) < 0.1 for r in runs), runs
    if desc.startswith("ringback"):
        f, p = _psd(x, nperseg=16384)
        top = sorted(f[np.argsort(p)[-6:]])
        assert any(abs(t - 440) < 3 for t in top) and any(abs(t - 480) < 3 for t in top)


def test_siren_instantaneous_frequency_sweeps():
    x, desc = _find(P.gen_siren, "kind=wail static", 8.0)
    from scipy.signal import stft
    f, t, Z = stft(x, SR, nperseg=1024, noverlap=768)
    track = f[np.argmax(np.abs(Z[(f > 300) & (f < 2000)]), axis=0) + np.argmax(f > 300)]
    assert track.min() < 850 and track.max() > 1150 and track.max() - track.min() > 500
    assert np.sum(np.abs(np.diff(np.sign(np.diff(track[::4]))))) > 0   # goes up and down, not a constant tone


def test_doppler_pass_shifts_frequency_by_c_over_c_plus_v():
    f0, v, d, dur = 1000.0, 25.0, 10.0, 8.0
    n = int(dur * SR)
    y, _ = P.doppler_warp(lambda tt: 2 * np.pi * f0 * tt, lambda tt: 1.0, n, SR, v, d, t0=dur / 2)
    def freq(seg):
        sp = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 8 * len(seg)))
        return np.fft.rfftfreq(8 * len(seg), 1 / SR)[np.argmax(sp)]
    approach, recede = freq(y[: SR // 2]), freq(y[-SR // 2:])
    assert abs(approach - f0 * P.C_SOUND / (P.C_SOUND - v)) < 8       # far away: nearly radial speed
    assert abs(recede - f0 * P.C_SOUND / (P.C_SOUND + v)) < 8
    mid = np.abs(y[n // 2 - 800: n // 2 + 800]).max()
    assert mid > 2 * np.abs(y[:1600]).max()                          # louder (1/r) when it passes


def test_alarm_temporal_three_pattern():
    x, _ = _find(P.gen_alarm, "kind=temporal3", 9.0)
    env = np.sqrt(np.mean(x[: len(x) // 160 * 160].reshape(-1, 160) ** 2, axis=1)) > 0.05
    runs = np.diff(np.flatnonzero(np.diff(env.astype(int)))) / 100.0
    assert any(abs(r - 1.5) < 0.05 for r in runs) and sum(abs(r - 0.5) < 0.05 for r in runs) >= 4


def test_build_procedural_dev_by_seed_range_and_resumable(tmp_path):
    P.build_procedural(tmp_path, labels=["beep"], units=10, log=lambda *_: None)
    rows = [r for line in (tmp_path / "parts" / "procedural.jsonl").read_text().splitlines()
            for r in json.loads(line)["rows"]]
    assert [r["split"] for r in rows] == ["train"] * 9 + ["dev"]
    assert all(r["family"] == "environmental" and r["licence"] == P.LICENCE for r in rows)
    size = (tmp_path / "parts" / "procedural.jsonl").stat().st_size
    P.build_procedural(tmp_path, labels=["beep"], units=10, log=lambda *_: None)
    assert (tmp_path / "parts" / "procedural.jsonl").stat().st_size == size


# ----------------------------------------------------------------------------- v2 path rules on real package paths
V2_PATHS = [
    ("lincity-ng-data", "usr/share/games/lincity-ng/sounds/TraficHigh2.wav", "traffic"),
    ("warzone2100-data", "zip:audio/sfx/vehicle/vtol-move.ogg", "aircraft"),
    ("warzone2100-data", "zip:audio/taunts/taunt2/hahaha2.ogg", "laughter"),
    ("warzone2100-data", "zip:audio/taunts/taunt2/tme2die2.ogg", None),
    ("wesnoth-1.16-data", "usr/share/games/wesnoth/1.16/data/core/sounds/horn-signals/horn-3.ogg", "horn"),
    ("widelands-data", "usr/share/games/widelands/data/world/critters/duck/duck_00.ogg", "duck"),
    ("widelands-data", "usr/share/games/widelands/data/music/ingame_01.ogg", "music"),
    ("0ad-data", "zip:audio/music/celtic/Celtic_Pride.ogg", "music"),
    ("0ad-data", "zip:audio/interface/alarm/alarmalert_1.ogg", None),
    ("hedgewars-data", "usr/share/games/hedgewars/Data/Music/Castle.ogg", "music"),
    ("hedgewars-data", "usr/share/games/hedgewars/Data/Sounds/voices/Singer/Hello.ogg", None),   # GFDL
    ("colobot-common-sounds", "usr/share/games/colobot/sounds/sound030.wav", None),              # no names
    ("wesnoth-1.16-music", "usr/share/games/wesnoth/1.16/data/core/music/silence.ogg", None),
    ("lmms-common", "usr/share/lmms/samples/misc/dong01.ogg", "bell"),
    ("lmms-common", "usr/share/lmms/samples/instruments/violin01.ogg", None),                    # reserved
    ("sonic-pi-samples", "usr/share/sonic-pi/samples/guit_em9.flac", None),                     # reserved
    ("sonic-pi-samples", "usr/share/sonic-pi/samples/perc_bell2.flac", "bell"),
]


@pytest.mark.parametrize("pkg,path,label", V2_PATHS)
def test_v2_rules_label_real_paths(pkg, path, label):
    hit = sources.label_for(sources.load_rules(), pkg, path)
    assert (hit[0] if hit else None) == label
    if label:
        assert not sources.is_reserved(pkg, path, label)


def test_every_procedural_label_states_its_method_and_is_in_the_vocabulary():
    from plugin_bridge.corpus import vocab
    m = P.methods()
    assert set(m) == set(P.GENERATORS)
    for lab, text in m.items():
        assert len(text) > 150 and "\n" not in text, lab
        fam, group, syn, caps = vocab.VOCAB[lab]
        assert fam == "environmental" and group == P.GENERATORS[lab][1], lab
