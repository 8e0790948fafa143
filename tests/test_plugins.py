"""Plugin chains: built-in numbers, a real VST3 (self-built DPF gain) through the worker, crash/hang
isolation, and clear errors for malformed chains."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pedalboard
import pytest

from plugin_bridge.errors import AudioInputError, ConfigError, JobCancelled, PluginBridgeError
from plugin_bridge.plugins import ChainError, PluginError, probe_vst3, render_chain, validate_chain
from plugin_bridge.plugins.chain import TEST_STEPS_ENV

ROOT = Path(__file__).resolve().parents[1]
RATE = 48000


def _noise(channels=2, frames=RATE, seed=0, scale=0.1):
    return (np.random.default_rng(seed).standard_normal((channels, frames)) * scale).astype(np.float32)


def _sine(freq, frames=RATE, channels=1, amp=0.5):
    t = np.arange(frames) / RATE
    return np.repeat((amp * np.sin(2 * np.pi * freq * t))[None].astype(np.float32), channels, axis=0)


def _rms_db(x):
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# -------------------------------------------------------------------------------------------------
# built-in chains (in process)
# -------------------------------------------------------------------------------------------------
def test_gain_step_is_exact_and_input_untouched():
    x = _noise()
    before = x.copy()
    y = render_chain([{"type": "gain", "params": {"gain_db": -6.0}}], x, RATE)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, x * 10 ** (-6 / 20), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(x, before)


def test_builtin_chain_matches_pedalboard_bit_for_bit():
    x = _noise(seed=1)
    chain = [{"type": "highpass", "params": {"cutoff_frequency_hz": 120}},
             {"type": "peak", "params": {"cutoff_frequency_hz": 2500, "gain_db": 4, "q": 1.5}},
             {"type": "lowshelf", "params": {"cutoff_frequency_hz": 200, "gain_db": -3}},
             {"type": "highshelf", "params": {"cutoff_frequency_hz": 8000, "gain_db": 2}},
             {"type": "compressor", "params": {"threshold_db": -18, "ratio": 4, "attack_ms": 5, "release_ms": 100}},
             {"type": "noisegate", "params": {"threshold_db": -60}},
             {"type": "reverb", "params": {"room_size": 0.3, "wet_level": 0.2}},
             {"type": "delay", "params": {"delay_seconds": 0.05, "mix": 0.2}},
             {"type": "gain", "params": {"gain_db": 12}, "enabled": False},   # disabled: skipped
             {"type": "limiter", "params": {"threshold_db": -1}},
             {"type": "lowpass", "params": {"cutoff_frequency_hz": 16000}}]
    ref = pedalboard.Pedalboard([
        pedalboard.HighpassFilter(120), pedalboard.PeakFilter(2500, 4, 1.5), pedalboard.LowShelfFilter(200, -3),
        pedalboard.HighShelfFilter(8000, 2), pedalboard.Compressor(-18, 4, 5, 100), pedalboard.NoiseGate(-60),
        pedalboard.Reverb(room_size=0.3, wet_level=0.2), pedalboard.Delay(0.05, mix=0.2),
        pedalboard.Limiter(-1), pedalboard.LowpassFilter(16000)])(x, RATE)
    y = render_chain(chain, x, RATE)
    assert y.shape == x.shape                       # tails are cut: stems stay aligned
    np.testing.assert_array_equal(y, ref)


def test_filters_shape_the_spectrum():
    low, high = _sine(50), _sine(5000)
    hp = [{"type": "highpass", "params": {"cutoff_frequency_hz": 1000}}]
    # steady state (skip the first 0.1 s): 50 Hz loses > 20 dB, 5 kHz passes within 0.5 dB
    assert _rms_db(render_chain(hp, low, RATE)[:, 4800:]) - _rms_db(low[:, 4800:]) < -20
    assert abs(_rms_db(render_chain(hp, high, RATE)[:, 4800:]) - _rms_db(high[:, 4800:])) < 0.5
    peak = [{"type": "peak", "params": {"cutoff_frequency_hz": 1000, "gain_db": 6, "q": 1}}]
    s = _sine(1000)
    assert abs(_rms_db(render_chain(peak, s, RATE)[:, 4800:]) - _rms_db(s[:, 4800:]) - 6.0) < 0.2


def test_mono_1d_input_and_empty_chain():
    x = _noise(1)[0]
    y = render_chain([{"type": "gain", "params": {"gain_db": 6}}], x, RATE)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x * 10 ** (6 / 20), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(render_chain([], x, RATE), x)


def test_isolated_builtin_chain_equals_in_process():
    x = _noise(seed=3)
    chain = [{"type": "compressor", "params": {"threshold_db": -20, "ratio": 3}},
             {"type": "reverb", "params": {"room_size": 0.6}}]
    np.testing.assert_array_equal(render_chain(chain, x, RATE, isolate=True), render_chain(chain, x, RATE))


# -------------------------------------------------------------------------------------------------
# validation
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chain, field, words", [
    ("gain", "chain", "list"),
    ([{"params": {}}], "chain[0].type", "missing"),
    ([{"type": "gain"}, {"type": "flanger"}], "chain[1].type", "unknown"),
    ([{"type": "gain", "params": {"gain": 3}}], "chain[0].params.gain", "gain_db"),
    ([{"type": "compressor", "params": {"ratio": 0.5}}], "chain[0].params.ratio", "out of range"),
    ([{"type": "reverb", "params": {"room_size": "big"}}], "chain[0].params.room_size", "number"),
    ([{"type": "delay", "params": {"mix": float("nan")}}], "chain[0].params.mix", "finite"),
    ([{"type": "gain", "enabled": "yes"}], "chain[0].enabled", "true or false"),
    ([{"type": "gain", "colour": "red"}], "chain[0].colour", "unknown step field"),
    ([{"type": "vst3"}], "chain[0].path", "missing"),
    ([{"type": "vst3", "path": "/nonexistent/X.vst3"}], "chain[0].path", "not found"),
    ([{"type": "_test_abort"}], "chain[0].type", "unknown"),     # test steps are off without the env var
])
def test_invalid_chain_names_the_field(chain, field, words, monkeypatch):
    monkeypatch.delenv(TEST_STEPS_ENV, raising=False)
    with pytest.raises(ChainError) as ei:
        render_chain(chain, _noise(1, 100), RATE)
    assert ei.value.field == field
    assert field in str(ei.value) and words in str(ei.value)
    assert isinstance(ei.value, ConfigError)


def test_cutoff_above_nyquist_and_bad_audio():
    with pytest.raises(ChainError) as ei:
        render_chain([{"type": "lowpass", "params": {"cutoff_frequency_hz": 12000}}], _noise(1, 100), 22050)
    assert ei.value.field == "chain[0].params.cutoff_frequency_hz" and "11025" in str(ei.value)
    with pytest.raises(AudioInputError, match="NaN"):
        render_chain([], np.array([[0.0, np.nan]], np.float32), RATE)
    with pytest.raises(AudioInputError, match="sample rate"):
        render_chain([], _noise(1, 10), 0)


def test_validate_normalises_aliases():
    steps = validate_chain([{"type": "High_Shelf", "params": {"gain_db": 2}}, {"type": "hpf"}])
    assert [s["type"] for s in steps] == ["highshelf", "highpass"]
    assert steps[0] == {"type": "highshelf", "enabled": True, "params": {"gain_db": 2.0}}


# -------------------------------------------------------------------------------------------------
# real VST3 through the worker
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def test_vst3(tmp_path_factory):
    """Build the self-written PBTestGain VST3 once per test session."""
    if not (shutil.which("g++") or shutil.which("c++")) or not shutil.which("make"):
        pytest.skip("no C++ compiler/make: apt-get install g++ make")
    if not os.path.isfile("/usr/share/dpf/Makefile.plugins.mk") and not os.environ.get("DPF_PATH"):
        pytest.skip("dpf-source is not installed: apt-get install dpf-source")
    out = ROOT / "build" / "vst3"
    proc = subprocess.run([str(ROOT / "scripts" / "build_test_vst3.sh"), str(out)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    bundle = proc.stdout.strip().splitlines()[-1]
    assert bundle.endswith("PBTestGain.vst3") and os.path.isdir(bundle)
    return bundle


# 9.5 dB is not on Pedalboard's 1/1000-of-range grid (it would give 9.504 dB): the worker refines it.
@pytest.mark.parametrize("gain_db", [-6.0, 9.5, 12.0])
def test_vst3_gain_through_worker(test_vst3, gain_db):
    x = _noise(seed=4)
    y = render_chain([{"type": "vst3", "path": test_vst3, "params": {"gain_db": gain_db}}], x, RATE)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x * 10 ** (gain_db / 20), rtol=1e-5, atol=1e-7)


def test_vst3_mixed_chain_mono_and_state(test_vst3):
    x = _noise(1, seed=5)
    chain = [{"type": "gain", "params": {"gain_db": -6}},
             {"type": "vst3", "path": test_vst3, "params": {"gain_db": 12.0}}]
    y = render_chain(chain, x, RATE)                 # stereo-only plugin, mono stem: dual-mono fold
    np.testing.assert_allclose(y, x * 10 ** (6 / 20), rtol=1e-5, atol=1e-7)

    info = probe_vst3(test_vst3)
    assert info["name"] == "PBTestGain"
    assert info["parameters"]["gain_db"]["min"] == -24.0 and info["parameters"]["gain_db"]["max"] == 24.0
    assert info["parameters"]["gain_db"]["units"] == "dB"
    # a saved state restores the parameter values (state captured in a throwaway process; the plugin
    # only commits a parameter change to its state after processing a block)
    code = ("import base64,numpy,pedalboard,sys; p=pedalboard.load_plugin(sys.argv[1]); p.gain_db=-12.0;"
            "p(numpy.zeros((2, 64), numpy.float32), 48000.0);"
            "sys.stdout.write(base64.b64encode(p.raw_state).decode()); sys.stdout.flush()")
    state = subprocess.run([os.sys.executable, "-c", code, test_vst3], capture_output=True, text=True,
                           timeout=60).stdout.strip()
    base64.b64decode(state, validate=True)
    y = render_chain([{"type": "vst3", "path": test_vst3, "state": state}], _noise(2, 4800), RATE)
    np.testing.assert_allclose(y, _noise(2, 4800) * 10 ** (-12 / 20), rtol=1e-5, atol=1e-7)


def test_vst3_unknown_parameter_and_bad_value(test_vst3):
    with pytest.raises(ChainError) as ei:
        render_chain([{"type": "vst3", "path": test_vst3, "params": {"drive": 1}}], _noise(2, 100), RATE)
    assert ei.value.field == "chain[0].params.drive" and "gain_db" in str(ei.value)
    with pytest.raises(ChainError) as ei:
        render_chain([{"type": "vst3", "path": test_vst3, "params": {"gain_db": 60}}], _noise(2, 100), RATE)
    assert ei.value.field == "chain[0].params.gain_db" and "out of range" in str(ei.value)
    with pytest.raises(ChainError) as ei:
        render_chain([{"type": "vst3", "path": test_vst3, "state": "not base64!"}], _noise(2, 100), RATE)
    assert ei.value.field == "chain[0].state"


def test_broken_vst3_bundle_is_plugin_error(tmp_path):
    fake = tmp_path / "Broken.vst3" / "Contents" / "x86_64-linux"
    fake.mkdir(parents=True)
    (fake / "Broken.so").write_bytes(b"\x7fELF this is not a plugin")
    with pytest.raises(PluginError, match="cannot load"):
        render_chain([{"type": "vst3", "path": str(tmp_path / "Broken.vst3")}], _noise(2, 100), RATE)


# -------------------------------------------------------------------------------------------------
# crash / hang isolation
# -------------------------------------------------------------------------------------------------
def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")   # zombie = dead, awaiting reaper
    except FileNotFoundError:
        return True


def _wait_gone(pid: int, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


@pytest.fixture
def test_steps(monkeypatch):
    monkeypatch.setenv(TEST_STEPS_ENV, "1")


def test_crashing_plugin_is_plugin_error_and_caller_survives(test_steps, tmp_path):
    x = _noise(seed=6)
    pid_file = tmp_path / "pids.json"
    chain = [{"type": "gain", "params": {"gain_db": 1}}, {"type": "_test_abort", "params": {"pid_file": str(pid_file)}}]
    with pytest.raises(PluginError) as ei:
        render_chain(chain, x, RATE)
    msg = str(ei.value)
    assert "chain[1]" in msg and "SIGABRT" in msg and "crashed" in msg
    assert isinstance(ei.value, PluginBridgeError)
    pids = json.loads(pid_file.read_text())
    assert _wait_gone(pids["worker"]) and _wait_gone(pids["helper"])   # worker and its child are gone
    # the caller is fine and the next render works
    y = render_chain([{"type": "gain", "params": {"gain_db": 6}}], x, RATE, isolate=True)
    np.testing.assert_allclose(y, x * 10 ** (6 / 20), rtol=1e-5, atol=1e-7)


def test_hanging_plugin_times_out_and_leaves_no_process(test_steps, tmp_path):
    pid_file = tmp_path / "pids.json"
    t0 = time.monotonic()
    with pytest.raises(PluginError) as ei:
        render_chain([{"type": "_test_hang", "params": {"pid_file": str(pid_file)}}], _noise(), RATE, timeout=2.0)
    took = time.monotonic() - t0
    assert 2.0 <= took < 8.0
    assert "did not finish within 2 s" in str(ei.value) and "chain[0]" in str(ei.value)
    pids = json.loads(pid_file.read_text())
    assert _wait_gone(pids["worker"]) and _wait_gone(pids["helper"])


def test_timeout_from_env_and_cancel(test_steps, monkeypatch, tmp_path):
    monkeypatch.setenv("PLUGIN_BRIDGE_PLUGIN_TIMEOUT", "1.5")
    with pytest.raises(PluginError, match="within 1.5 s"):
        render_chain([{"type": "_test_hang"}], _noise(2, 100), RATE)
    monkeypatch.delenv("PLUGIN_BRIDGE_PLUGIN_TIMEOUT")
    pid_file = tmp_path / "pids.json"
    t0 = time.monotonic()
    with pytest.raises(JobCancelled):   # the user cancels once the plugin is running
        render_chain([{"type": "_test_hang", "params": {"pid_file": str(pid_file)}}], _noise(2, 100), RATE,
                     timeout=60, cancel=pid_file.exists)
    assert time.monotonic() - t0 < 10
    assert _wait_gone(json.loads(pid_file.read_text())["worker"])


def test_exception_in_plugin_is_plugin_error(test_steps):
    with pytest.raises(PluginError, match=r"chain\[1\] \(_test_raise\) failed: RuntimeError: kaputt"):
        render_chain([{"type": "gain"}, {"type": "_test_raise", "params": {"message": "kaputt"}}], _noise(2, 100), RATE)
