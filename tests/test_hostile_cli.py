"""The cases a hostile-input run found (issue 16), as regression tests: nothing is written over unless
asked, absurd positions never reach a session, damaged audio is a one-line message (never a crash or
invented silence), a replaced take is refused, bad model files and settings are named, and
SIGTERM/SIGHUP stop a job between chunks with no partial file and the job recorded as cancelled."""
from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from hostile_files import make_hostile_files


def _main(argv) -> tuple[int, str, str]:
    from plugin_bridge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _wav(path, seconds=0.5, rate=16000, ch=1):
    from pedalboard.io import AudioFile

    x = (np.random.RandomState(3).randn(ch, int(seconds * rate)) * 0.1).astype(np.float32)
    with AudioFile(str(path), "w", rate, ch, bit_depth=16) as f:
        f.write(x)
    return x


# -- no clobber -----------------------------------------------------------------------------------
def test_separate_never_writes_over_an_existing_file_unless_asked(tmp_path):
    from plugin_bridge.engine.separator import Query
    from plugin_bridge.errors import OutputError
    from plugin_bridge.testing import fast_separator

    _wav(tmp_path / "mix.wav")
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "mix_speech.wav"
    mine.write_bytes(b"my own take, not a stem")
    sep = fast_separator()
    with pytest.raises(OutputError, match=r"mix_speech\.wav already exists; use --overwrite"):
        sep.separate_file(str(tmp_path / "mix.wav"), [Query("speech")], str(out))
    assert mine.read_bytes() == b"my own take, not a stem"
    assert sorted(os.listdir(out)) == ["mix_speech.wav"]  # nothing else written either
    res = sep.separate_file(str(tmp_path / "mix.wav"), [Query("speech")], str(out), overwrite=True)
    assert res.stem_paths == [str(mine)] and mine.read_bytes()[:4] == b"RIFF"


def test_a_query_named_residual_gets_its_own_file(tmp_path):
    from plugin_bridge.audio_io import read_all
    from plugin_bridge.engine.separator import Query
    from plugin_bridge.testing import fast_separator

    _wav(tmp_path / "mix.wav")
    res = fast_separator().separate_file(str(tmp_path / "mix.wav"), [Query("residual")], str(tmp_path / "o"),
                                         fmt="wav32f")
    assert os.path.basename(res.residual_path) == "mix_residual.wav"
    assert os.path.basename(res.stem_paths[0]) == "mix_residual-2.wav"
    total = read_all(res.stem_paths[0])[0] + read_all(res.residual_path)[0]
    assert np.max(np.abs(total - read_all(str(tmp_path / "mix.wav"))[0])) < 1e-6  # stem + residual == mix


def test_presets_export_refuses_an_existing_file_without_overwrite(tmp_path):
    p = tmp_path / "p.json"
    p.write_text("mine")
    rc, _out, err = _main(["presets", "export", "Podcast", str(p)])
    assert rc == 2 and p.read_text() == "mine"
    assert err.strip() == f"error: {p} already exists; use --overwrite to replace it"
    rc, out, _err = _main(["presets", "export", "Podcast", str(p), "--overwrite"])
    assert rc == 0 and json.loads(p.read_text())["name"] == "Podcast"


@pytest.mark.parametrize("start,end,words", [
    ("0", "9" * 30, "from 0 to 9007199254740992"), ("0", "1e300", "whole number of samples"),
    ("nan", "100", "whole number"), ("0", "inf", "whole number"), ("-1", "100", "whole number"),
    ("500", "100", "must be after --start"), ("900000", "900100", "lies outside the audio"),
])
def test_add_region_refuses_absurd_positions_before_touching_the_session(tmp_path, start, end, words):
    _wav(tmp_path / "mix.wav")
    sess = str(tmp_path / "s.pbsession.json")
    assert _main(["session", "new", str(tmp_path / "mix.wav"), "-o", sess])[0] == 0
    before = open(sess, "rb").read()
    rc, _out, err = _main(["session", "add-region", sess, "--track", "mix", f"--start={start}", f"--end={end}",
                           "-q", "speech"])
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert open(sess, "rb").read() == before


@pytest.mark.parametrize("opt,words", [
    (["--start=nan"], "--start nan: must be a number of seconds"), (["--end=inf"], "--end inf"),
    (["--start=-1"], "--start -1"), (["--start=1e300"], "--start 1e+300"), (["--threads=-1"], "--threads -1"),
    (["--start=0.3", "--end=0.1"], "must be after --start"),
])
def test_separate_option_values_are_named_with_their_range(tmp_path, opt, words):
    _wav(tmp_path / "mix.wav")
    rc, _out, err = _main(["separate", str(tmp_path / "mix.wav"), "-q", "x", "-o", str(tmp_path / "o")] + opt)
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


# -- damaged audio ----------------------------------------------------------------------------------
def test_damaged_audio_is_a_one_line_message_in_a_child_process(tmp_path):
    """Each of these crashed the process, ran for hours on invented silence or padded silently."""
    from fuzz_helpers import ProbeWorker

    cases = make_hostile_files(tmp_path)
    w = ProbeWorker()
    try:
        for name, words in cases.items():
            t0 = time.monotonic()
            res = w.check(str(tmp_path / name), timeout=20)
            assert res.get("ok") is False, (name, res)
            assert words in res["error"] and "\n" not in res["error"], res["error"]
            assert time.monotonic() - t0 < 10
    finally:
        w.close()
    # a folder holding one of them: `session new` names it and goes on with the others
    _wav(tmp_path / "good.wav")
    r = subprocess.run([sys.executable, "-m", "plugin_bridge", "session", "new", str(tmp_path), "-o",
                        str(tmp_path / "s.pbsession.json")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "alaw16.wav" in r.stderr and "good: " in r.stdout and "Traceback" not in r.stderr


def test_a_replaced_take_is_refused_instead_of_rendered_wrong(tmp_path):
    from plugin_bridge.session.jobs import JobQueue
    from plugin_bridge.session.model import Session
    from plugin_bridge.testing import fast_separator

    _wav(tmp_path / "take.wav", 1.0, 16000, 1)
    sess = str(tmp_path / "s.pbsession.json")
    assert _main(["session", "new", str(tmp_path / "take.wav"), "-o", sess])[0] == 0
    assert _main(["session", "add-region", sess, "--track", "take", "--start=0", "--end=8000", "-q", "x"])[0] == 0
    _wav(tmp_path / "take.wav", 1.0, 16000, 2)  # same name, now stereo
    s = Session.load(sess)
    q = JobQueue(s, separator_factory=lambda b, d: fast_separator())
    assert q.run_one(s.jobs[0]) is None
    assert s.jobs[0].status == "failed" and "now has channel count 2 ch but the session recorded 1 ch" in s.jobs[0].error
    assert not os.path.exists(s.stems_dir) or not [n for n in os.listdir(s.stems_dir) if not n.startswith(".")]


# -- models and settings ----------------------------------------------------------------------------
def test_bad_model_files_and_job_settings_are_named(tmp_path):
    from plugin_bridge.errors import CheckpointError
    from plugin_bridge.models.registry import load_model
    from plugin_bridge.session.model import Session, SessionError

    (tmp_path / "rand.ckpt").write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as ei:
        load_model(str(tmp_path / "rand.ckpt"))
    assert "code" not in str(ei.value)
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(CheckpointError, match="is a folder"):
        load_model(str(tmp_path / "dir.safetensors"))
    _wav(tmp_path / "mix.wav")
    sess = tmp_path / "s.pbsession.json"
    assert _main(["session", "new", str(tmp_path / "mix.wav"), "-o", str(sess)])[0] == 0
    assert _main(["session", "add-region", str(sess), "--track", "mix", "--start=0", "--end=100", "-q", "x"])[0] == 0
    d = json.loads(sess.read_text())
    for key, value, words in [("chunk_seconds", "abc", "jobs[0].settings.chunk_seconds"),
                              ("context_seconds", 1e308, "jobs[0].settings.context_seconds")]:
        bad = json.loads(json.dumps(d))
        bad["jobs"][0]["settings"][key] = value
        sess.write_text(json.dumps(bad))
        with pytest.raises(SessionError, match=words.replace("[", r"\[").replace("]", r"\]")):
            Session.load(str(sess))
    old = {"schema_version": 0, "sample_rate": 48000, "tracks": 5}
    sess.write_text(json.dumps(old))
    with pytest.raises(SessionError, match="'tracks' is invalid") as ei:
        Session.load(str(sess))
    assert "TypeError" not in str(ei.value)


# -- interrupts ---------------------------------------------------------------------------------------
def _start_and_signal(argv, cwd, wait_for: str, sig) -> tuple[int, str]:
    import threading

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "plugin_bridge"] + argv, cwd=cwd, env=env,
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    t = threading.Thread(target=lambda: lines.extend(p.stderr), daemon=True)  # '\r' ends a line too
    t.start()
    t_end = time.monotonic() + 120
    while not any(wait_for in ln for ln in list(lines)) and time.monotonic() < t_end and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(sig)
    p.wait(timeout=60)
    t.join(10)
    return p.returncode, "\n".join(lines)


def _dead_pid() -> int:
    r = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(r.stdout)


def test_sigterm_during_separate_stops_cleanly_and_stale_partials_go(tmp_path):
    _wav(tmp_path / "long.wav", 600.0, 16000, 1)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".pb-partial-{_dead_pid()}-x.wav"  # left by a SIGKILLed run
    stale.write_bytes(b"partial")
    rc, err = _start_and_signal(["separate", str(tmp_path / "long.wav"), "-q", "speech", "-o", str(out),
                                 "--backend", "torch", "--chunk", "5"], tmp_path, "chunk 2/", signal.SIGTERM)
    assert rc == 143, err
    assert "cancelled (SIGTERM)" in err and "Traceback" not in err
    assert f"removed {stale}" in err
    assert os.listdir(out) == []  # no stem, no partial file, the stale one removed


@pytest.mark.parametrize("sig,code", [(signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_a_signal_during_session_run_records_the_job_as_cancelled(tmp_path, monkeypatch, sig, code):
    """In-process (the CLI's own handlers): the signal arrives while the 2nd chunk is separated."""
    import plugin_bridge.models.registry as registry
    from plugin_bridge.engine.separator import Separator
    from plugin_bridge.session import jobs
    from plugin_bridge.session.model import Session
    from plugin_bridge.testing import fast_model

    monkeypatch.setattr(registry, "load_model", lambda *a, **k: fast_model())
    monkeypatch.setattr(jobs, "model_separator", functools.lru_cache(maxsize=4)(jobs.model_separator.__wrapped__))
    calls = []
    orig = Separator.process_segment

    def segment(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), sig)
        return orig(self, *a, **k)

    monkeypatch.setattr(Separator, "process_segment", segment)
    _wav(tmp_path / "long.wav", 60.0, 16000, 1)
    sess = str(tmp_path / "s.pbsession.json")
    assert _main(["session", "new", str(tmp_path / "long.wav"), "-o", sess])[0] == 0
    for _ in range(2):
        assert _main(["session", "add-region", sess, "--track", "long", "--start=0", "--end=50s", "-q", "x"])[0] == 0
    s = Session.load(sess)
    s.settings["chunk_seconds"] = 5.0
    s.save()
    rc, _out, err = _main(["session", "run", sess, "--backend", "torch", "--quiet"])
    assert rc == code, err
    assert f"cancelled ({signal.Signals(sig).name}): job" in err and "1 job(s) still pending" in err
    assert "Traceback" not in err
    assert len(calls) < 5  # stopped at the next chunk, not at the end
    s = Session.load(sess)
    assert [j.status for j in s.jobs] == ["cancelled", "pending"]
    assert not os.path.exists(s.stems_dir) or os.listdir(s.stems_dir) == []


def test_long_preset_values_keep_the_reason_in_the_message(tmp_path):
    from plugin_bridge.session.presets import PresetStore

    p = json.loads(PresetStore().get("Podcast").to_json())
    q = p["queries"][0]
    cases = [(dict(p, queries=[dict(q, label=f"L{i}") for i in range(33)]),
              "'queries' is invalid: has 33 entries; at most 32 are allowed"),
             (dict(p, queries=[dict(q, label="x" * 300)]),
              "'queries[0].label' is invalid: is 300 characters long; at most 100 are allowed")]
    for data, words in cases:
        f = tmp_path / "p.json"
        f.write_text(json.dumps(data))
        rc, _out, err = _main(["presets", "import", str(f)])
        assert rc == 2 and words in err and len(err.strip().splitlines()) == 1, err
