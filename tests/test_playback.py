"""Playback engine: the mixed lanes reach a real PortAudio stream sample-exactly.

PortAudio reads the ALSA configuration when it initialises, so each check runs in a subprocess whose
HOME holds an ``.asoundrc`` routing the default device through an ALSA ``file`` tap into a raw file
(float32 interleaved).  The sink is not paced in real time, so a whole run takes milliseconds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from plugin_bridge.gui.playback import LaneSpec, compute_gains

ASOUNDRC = """pcm.tap {{
    type file
    slave.pcm "null"
    file "{cap}"
    format "raw"
    truncate true
}}
pcm.!default {{ type plug; slave.pcm "tap" }}
"""

RATE = 48000


def _have_portaudio() -> bool:
    try:
        import ctypes.util

        return ctypes.util.find_library("portaudio") is not None
    except Exception:
        return False


pytestmark = pytest.mark.skipif(not _have_portaudio(), reason="libportaudio2 is not installed")


def _write(path, x, rate=RATE):
    import soundfile as sf

    sf.write(path, x.T if x.ndim == 2 else x, rate, subtype="FLOAT")


def _run_player(tmp_path, body: str) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    cap = tmp_path / "cap.raw"
    (home / ".asoundrc").write_text(ASOUNDRC.format(cap=cap))
    script = tmp_path / "player.py"
    script.write_text(textwrap.dedent("""
        import json, sys, time
        import numpy as np
        import sounddevice  # initialise PortAudio first (the app does this in the background at start-up)
        from plugin_bridge.gui.playback import PlaybackEngine, LaneSpec
        out = {}
    """) + textwrap.dedent(body) + "\nprint(json.dumps(out))\n")
    env = dict(os.environ, HOME=str(home))
    env.pop("ALSA_CONFIG_PATH", None)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["captured"] = np.fromfile(cap, np.float32).reshape(-1, 2)
    return res


def _strip_lead(cap: np.ndarray) -> tuple[int, np.ndarray]:
    nz = np.nonzero(np.abs(cap).max(axis=1) > 0)[0]
    assert len(nz), "nothing but silence was captured"
    return int(nz[0]), cap[nz[0]:]


def test_callback_delivers_the_mix_of_unmuted_lanes(tmp_path):
    n = RATE  # 1 s per file
    t = np.arange(n) / RATE
    a = (0.3 * np.cos(2 * np.pi * 440 * t)).astype(np.float32)                       # mono
    b = np.stack([0.2 * np.cos(2 * np.pi * 660 * t), -0.1 * np.cos(2 * np.pi * 330 * t)]).astype(np.float32)
    c = (0.5 * np.cos(2 * np.pi * 100 * t)).astype(np.float32)                        # muted lane
    for name, x in (("a.wav", a), ("b.wav", b), ("c.wav", c)):
        _write(str(tmp_path / name), x)
    res = _run_player(tmp_path, f"""
        e = PlaybackEngine({RATE}, 2, blocksize=512)
        e.set_lanes([LaneSpec("a", "a.wav", gain_db=-6.0),
                     LaneSpec("b", "b.wav", kind="stem", offset=1000),
                     LaneSpec("c", "c.wav", mute=True)], preload=True, wait=True)
        out["preloaded"] = [not s.streamed for s in e._sources.values()]
        e.play()
        t0 = time.time()
        while not e.ended and time.time() - t0 < 20:
            time.sleep(0.005)
        e.stop()
        st = e.stats
        out.update(frames=st.frames, underruns=st.underruns, latency=st.first_audio_latency_s,
                   max_cb=st.max_callback_s, ended=e.ended)
        e.close()
    """)
    assert res["preloaded"] == [True, True, True]
    assert res["ended"] and res["underruns"] == 0
    # the expected mix: a at -6 dB on both channels, b from frame 1000, c muted
    L = n + 1000
    exp = np.zeros((L, 2), np.float64)
    exp[:n] += (a * 10 ** (-6 / 20))[:, None]
    exp[1000:1000 + n] += b.T
    lead, got = _strip_lead(res["captured"])
    assert lead < 8192                                 # only the sink's start-up periods precede the audio
    assert got.shape[0] >= L
    assert np.max(np.abs(got[:L] - exp)) < 1e-6        # sample-exact: no drop, no repeat, no glitch
    assert np.max(np.abs(got[L:])) == 0.0              # silence after the end of the session
    assert res["latency"] is not None and res["latency"] < 0.1   # play() -> first audible callback
    assert res["max_cb"] < 0.005


def test_streamed_lanes_seek_and_loop(tmp_path):
    n = RATE * 3
    t = np.arange(n) / RATE
    a = np.stack([0.25 * np.cos(2 * np.pi * 220 * t + 0.3), 0.2 * np.cos(2 * np.pi * 550 * t)]).astype(np.float32)
    _write(str(tmp_path / "long.wav"), a)
    loop_a, loop_b = 30000, 42000        # 12000-frame loop inside the file
    res = _run_player(tmp_path, f"""
        e = PlaybackEngine({RATE}, 2, blocksize=512)
        e.set_lanes([LaneSpec("x", "long.wav", offset=500)], preload=False)
        out["streamed"] = [s.streamed for s in e._sources.values()]
        e.set_loop({loop_a}, {loop_b}, True)
        e.seek(36000)                    # inside the loop: plays 36000..42000 then wraps to 30000
        e.play()
        t0 = time.time()
        while e.stats.frames < 60000 and time.time() - t0 < 20:
            time.sleep(0.002)
        e.stop()
        out.update(frames=e.stats.frames, underruns=e.stats.underruns)
        e.close()
    """)
    assert res["streamed"] == [True]
    assert res["underruns"] == 0
    # timeline frame f holds file frame f - 500
    order = list(range(36000, loop_b)) + list(range(loop_a, loop_b)) * 4
    exp = a[:, np.array(order[:40000]) - 500].T
    _, got = _strip_lead(res["captured"])
    assert got.shape[0] >= 40000
    assert np.max(np.abs(got[:40000] - exp)) < 1e-6


def test_ab_monitor_modes_and_solo():
    lanes = [LaneSpec("src", "s.wav", "source", mute=True), LaneSpec("dx", "d.wav", "stem", gain_db=-6),
             LaneSpec("fx", "f.wav", "stem"), LaneSpec("rest", "r.wav", "residual")]
    g = compute_gains(lanes, "mix")
    assert g == {"src": 0.0, "dx": pytest.approx(10 ** (-6 / 20)), "fx": 1.0, "rest": 1.0}
    assert compute_gains(lanes, "original") == {"src": 1.0, "dx": 0.0, "fx": 0.0, "rest": 0.0}  # A ignores mute
    assert compute_gains(lanes, "stems") == {"src": 0.0, "dx": pytest.approx(0.501187), "fx": 1.0, "rest": 0.0}
    assert compute_gains(lanes, "residual") == {"src": 0.0, "dx": 0.0, "fx": 0.0, "rest": 1.0}
    lanes[2].solo = True
    assert compute_gains(lanes, "mix") == {"src": 0.0, "dx": 0.0, "fx": 1.0, "rest": 0.0}
    with pytest.raises(ValueError):
        compute_gains(lanes, "bogus")
