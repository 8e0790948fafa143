"""One data path: a job streams the separator into its own sink and writes each final stem once (BWF
chunk included); chain re-render is a job of the same queue (progress, cancel, error, retry, undo)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from pedalboard.io import AudioFile

from plugin_bridge.audio_io import read_all
from plugin_bridge.engine.separator import ArraySink, ArraySource, Query, SeparationSettings, Separator
from plugin_bridge.export.bwf import read_bext
from plugin_bridge.session import jobs
from plugin_bridge.session.history import History
from plugin_bridge.session.jobs import RERENDER, JobQueue, make_job, run_job
from plugin_bridge.session.model import QuerySpec, Region, Session
from plugin_bridge.session.open import open_session
from plugin_bridge.testing import ConstantMaskBackend, fast_model

SR = 16000
DOUBLE = [{"type": "gain", "params": {"gain_db": 20 * np.log10(2.0)}}]


@pytest.fixture(scope="module")
def model():
    return fast_model()


def new_session(tmp_path, audio, fmt="wav24"):
    os.makedirs(tmp_path / "audio", exist_ok=True)
    with AudioFile(str(tmp_path / "audio" / "take.wav"), "w", SR, audio.shape[0], bit_depth=32) as f:
        f.write(audio)
    s = open_session(str(tmp_path / "audio"))
    s.settings["format"] = fmt
    s.save(str(tmp_path / "reel.pbsession.json"))
    return s


def listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


class Recorder:
    """A StemSink that keeps every call."""

    def __init__(self):
        self.calls = []

    def write(self, start, blocks):
        self.calls.append((start, [b.copy() for b in blocks]))

    def close(self):
        self.calls.append("close")
        return "closed"

    def abort(self):
        self.calls.append("abort")


def test_separate_stream_feeds_the_sink_in_order_and_closes_or_aborts(model):
    x = (np.random.RandomState(0).randn(2, 3 * SR) * 0.1).astype(np.float32)
    sep = Separator(model, backend=ConstantMaskBackend(0.0))
    settings = SeparationSettings(chunk_seconds=0.5)
    rec = Recorder()
    assert sep.separate_stream(ArraySource(x, SR), [Query("a"), Query("b")], settings, rec) == "closed"
    assert rec.calls[-1] == "close"
    blocks = rec.calls[:-1]
    starts = [s for s, _ in blocks]
    assert starts[0] == 0 and all(b > a for a, b in zip(starts, starts[1:]))
    assert all(s + b[0].shape[-1] == n for (s, b), n in zip(blocks, starts[1:] + [x.shape[1]]))
    assert all(len(b) == 3 for _, b in blocks)                     # two stems + the residual
    total = np.concatenate([sum(b) for _, b in blocks], axis=1)
    assert np.abs(total - x).max() < 1e-6                         # stems + residual == the mix
    # the same frames as separate_array
    stems, residual = sep.separate_array(x, SR, [Query("a"), Query("b")], settings)
    assert np.abs(np.concatenate([b[0] for _, b in blocks], axis=1) - stems[0]).max() < 1e-6
    # cancel: abort, never close
    rec2 = Recorder()
    with pytest.raises(jobs.JobCancelled):
        sep.separate_stream(ArraySource(x, SR), [Query("a")], settings, rec2, cancel=lambda: True)
    assert rec2.calls == ["abort"]
    # an ArraySink gives (outputs, channels, frames)
    out = sep.separate_stream(ArraySource(x, SR), [Query("a")], settings, ArraySink(2, 2, x.shape[1]))
    assert out.shape == (2, 2, x.shape[1]) and out.dtype == np.float32


def test_job_writes_each_final_stem_once_with_its_bext_chunk(tmp_path, model, monkeypatch):
    x = (np.random.RandomState(1).randn(2, 4 * SR) * 0.1).astype(np.float32)
    s = new_session(tmp_path, x)
    s.tracks[0].offset = 777
    r = Region(track_id=s.tracks[0].id, start=777 + SR, end=777 + 3 * SR,
               queries=[QuerySpec("speech", label="Dialogue"), QuerySpec("music", chain=DOUBLE)])
    s.regions.append(r)
    opened = []
    real_writer_set = jobs.StemWriterSet

    def counting(paths, *a, **k):
        opened.append(list(paths))
        return real_writer_set(paths, *a, **k)
    monkeypatch.setattr(jobs, "StemWriterSet", counting)
    seen = set()

    def progress(p):
        seen.update(listing(s.stems_dir))
    io0 = _wchar()
    res = run_job(s, make_job(s, r.id), Separator(model, backend=ConstantMaskBackend(0.0)), progress=progress)
    written = _wchar() - io0
    finals = [st.path for st in res.stems]
    assert opened == [finals]                         # one writer set, opened on the final names
    assert all(os.path.dirname(p) == s.stems_dir for p in finals)
    # while rendering only the final stems' own hidden temporaries existed: no scratch copies
    assert len([n for n in seen if n.startswith(".pb-partial")]) <= len(finals)
    assert listing(s.stems_dir) == sorted(os.path.basename(p) for p in finals)
    size = sum(os.path.getsize(p) for p in finals)
    if written is not None:
        assert written < 1.2 * size, (written, size)  # every byte written once
    for p, desc in zip(finals, ["speech", "music", "residual (everything not extracted) of take"]):
        b = read_bext(p)
        assert b.description == desc and b.time_reference == 777 + SR
    a, m, rest = (read_all(p)[0] for p in finals)
    src = x[:, SR:3 * SR]
    assert a.shape == src.shape and np.abs(a + m / 2 + rest - src).max() < 1e-4   # 24-bit quantisation


def _wchar():
    try:
        with open("/proc/self/io") as f:
            return int(next(line for line in f if line.startswith("wchar:")).split()[1])
    except OSError:
        return None


# --------------------------------------------------------------------------------------------------
# chain re-render as a job
# --------------------------------------------------------------------------------------------------
def stem_session(tmp_path):
    x = (np.random.RandomState(2).randn(2, SR) * 0.1).astype(np.float32)
    s = new_session(tmp_path, x)
    h = History(s)
    tid = s.tracks[0].id
    return s, h, tid, x


def test_rerender_job_renders_the_chain_over_the_raw_file_and_is_one_undo_step(tmp_path):
    s, h, tid, x = stem_session(tmp_path)
    raw = s.tracks[0].path
    h.set_chain(tid, DOUBLE)
    updates, progress = [], []
    q = JobQueue(s, history=h, persist=False, on_update=lambda j: updates.append(j.status),
                 on_progress=lambda p: progress.append(p.stage))
    job_id = q.enqueue_rerender(tid)
    job = s.job(job_id)
    assert job.kind == RERENDER and job.track_id == tid and job.region_id is None and job.status == "pending"
    q.run_pending()
    assert job.status == "done" and updates == ["pending", "running", "done"] and progress[-1] == "done"
    t = s.track(tid)
    base, ext = os.path.splitext(raw)
    assert t.path == f"{base}_fx1{ext}" and t.extra["raw_path"] == raw
    y, rate = read_all(t.path)
    assert rate == SR and np.abs(y - 2 * x).max() < 1e-6            # float WAV: exact
    # a second re-render with another chain starts from the raw file again, into a new file
    h.set_chain(tid, [{"type": "gain", "params": {"gain_db": -6.0}}])
    q.run_one(s.job(q.enqueue_rerender(tid)))
    assert s.track(tid).path == f"{base}_fx2{ext}"
    assert np.abs(read_all(s.track(tid).path)[0] - x * 10 ** (-6 / 20)).max() < 1e-6
    h.undo()
    assert s.track(tid).path == f"{base}_fx1{ext}"
    # an empty chain points the track back at the raw file
    h.set_chain(tid, [])
    q.run_one(s.job(q.enqueue_rerender(tid)))
    assert s.track(tid).path == raw
    # the job persists in the session file like any other
    s.save()
    s2 = Session.load(s.path)
    assert [j.kind for j in s2.jobs] == [RERENDER] * 3 and all(j.status == "done" for j in s2.jobs)


def test_rerender_with_a_failing_chain_is_a_job_error_leaving_nothing(tmp_path):
    s, h, tid, _ = stem_session(tmp_path)
    before_files = listing(os.path.dirname(s.tracks[0].path))
    s.tracks[0].chain = [{"type": "no-such-effect"}]          # as if loaded from a hand-edited session
    before = s.to_dict()
    q = JobQueue(s, history=h, persist=False)
    job = s.job(q.enqueue_rerender(tid))
    q.run_pending()
    assert job.status == "failed" and "chain[0].type" in job.error
    assert listing(os.path.dirname(s.tracks[0].path)) == before_files
    snapshot = s.to_dict()
    snapshot["jobs"], before["jobs"] = [], []
    assert snapshot == before
    # retry, once the chain is fixed, runs it again through the same queue
    s.tracks[0].chain = DOUBLE
    q.retry(job.id)
    q.run_pending()
    assert job.status == "done" and s.track(tid).path.endswith("_fx1.wav")


def test_cancelled_rerender_writes_nothing_and_changes_nothing(tmp_path):
    s, h, tid, _ = stem_session(tmp_path)
    h.set_chain(tid, DOUBLE)
    folder = os.path.dirname(s.tracks[0].path)
    before_files = listing(folder)
    path = s.tracks[0].path
    q = JobQueue(s, history=h, persist=False)
    q.on_progress = lambda p: q.cancel(p.job_id) if p.stage == "plugins" else None
    job = s.job(q.enqueue_rerender(tid))
    q.run_pending()
    assert job.status == "cancelled"
    assert listing(folder) == before_files and s.track(tid).path == path and "raw_path" not in s.track(tid).extra
    # the worker thread runs re-renders as well
    q.on_progress = None
    q.retry(job.id)
    q.start()
    try:
        assert q.wait_idle(30)
    finally:
        q.stop()
    assert job.status == "done" and s.track(tid).path.endswith("_fx1.wav")


# --------------------------------------------------------------------------------------------------
# learn jobs and old sessions
# --------------------------------------------------------------------------------------------------
def _hum_clips(folder, n=3, rate=16000):
    import soundfile as sf

    folder.mkdir()
    t = np.arange(int(1.5 * rate)) / rate
    for i in range(n):
        sf.write(folder / f"hum{i}.wav", (0.2 * np.sin(2 * np.pi * (110 + 4 * i) * t)).astype(np.float32), rate)
    return str(folder)


def test_learn_job_runs_in_the_queue_with_progress_and_cancel_saves_nothing(tmp_path, monkeypatch, model):
    from plugin_bridge.learned import LearnedStore

    monkeypatch.setenv("PLUGIN_BRIDGE_DATA", str(tmp_path / "userdata"))
    clips = _hum_clips(tmp_path / "clips")
    s = Session()
    sep = Separator(model, backend="torch", device="cpu")
    asked, progress = [], []

    def factory(b, d):
        asked.append((b, d))
        return sep
    q = JobQueue(s, separator_factory=factory, persist=False, on_progress=progress.append)
    job = s.job(q.enqueue_learn("@ generator  hum", clips, steps=2))
    assert job.kind == "learn" and job.settings["name"] == "generator hum" and job.region_id is None
    q.run_pending()
    assert job.status == "done", job.error
    assert asked == [("torch", "cpu")]
    assert [p.detail for p in progress if p.stage == "learning"][-1].startswith("Step 2/2  loss ")
    lq = q.results[job.id].learned
    assert lq.name == "generator hum" and LearnedStore().get("generator hum").kind == "learned"
    assert {"val_clips", "val_sdri_db", "val_sdri_start_db", "start"} <= set(lq.facts)
    # the name is taken now: refused at once
    with pytest.raises(jobs.SessionError, match="already exists"):
        q.enqueue_learn("Generator Hum", clips)
    # cancelled after the first step: nothing saved, no temporary left
    q.on_progress = lambda p: q.cancel(p.job_id) if p.stage == "learning" else None
    job2 = s.job(q.enqueue_learn("fan whine", clips, steps=500))
    q.run_pending()
    assert job2.status == "cancelled" and LearnedStore().names() == ["generator hum"]
    assert not [n for n in os.listdir(LearnedStore().root) if n.startswith(".")]
    # a bad clips folder: the job fails with a readable message, the queue goes on
    q.on_progress = None
    job3 = s.job(q.enqueue_learn("door", str(tmp_path / "missing"), steps=2))
    q.run_pending()
    assert job3.status == "failed" and "not a folder of clips" in job3.error


def test_a_job_record_edit_goes_through_history_and_is_no_undo_step(tmp_path):
    s, h, tid, _ = stem_session(tmp_path)
    h.set_chain(tid, DOUBLE)
    seen = []
    h.subscribe(lambda ch: seen.append((ch.kind, ch.action)))
    raw = s.track(tid).path
    q = JobQueue(s, history=h, persist=False)
    q.run_one(s.job(q.enqueue_rerender(tid)))
    assert ("job.add", "state") in seen and ("job.state", "state") in seen and ("track.set", "do") in seen
    assert s.track(tid).path.endswith("_fx1.wav")
    assert h.undo()                                               # the lane change is one undo step
    assert s.track(tid).path == raw and h.undo_label.startswith("Change plugin chain")
    assert s.jobs[0].status == "done"                             # undo never removes the job record


def test_a_version_1_session_with_a_rerender_job_in_its_settings_loads_as_a_rerender_job(tmp_path):
    import json

    s, h, tid, _ = stem_session(tmp_path)
    d = s.to_dict(os.path.dirname(s.path))
    d["schema_version"] = 1
    d["jobs"] = [{"id": "j1", "region_id": "", "settings": {"kind": "rerender", "track_id": tid, "format": "wav24"},
                  "status": "done"},
                 {"id": "j2", "region_id": "r-gone", "queries": [{"text": "speech"}], "status": "failed"}]
    path = tmp_path / "old.pbsession.json"
    path.write_text(json.dumps(d))
    before = path.read_bytes()
    s2 = Session.load(str(path))
    assert path.read_bytes() == before
    j1, j2 = s2.jobs
    assert (j1.kind, j1.track_id, j1.region_id, j1.settings) == (RERENDER, tid, None, {"format": "wav24"})
    assert (j2.kind, j2.track_id, j2.region_id) == ("separate", None, "r-gone")
    s2.save()
    assert [j["kind"] for j in json.loads(path.read_text())["jobs"]] == [RERENDER, "separate"]


def test_a_render_records_the_file_facts_an_older_session_lacks_and_a_save_keeps_them(tmp_path, model, monkeypatch):
    """A track of a version 1 session file that was never probed (no sample rate, channels or length): the
    render's one probe fills them in through the History (no undo step; planning changes nothing) and the
    session the queue saves keeps them."""
    import json

    x = (np.random.RandomState(2).randn(2, 3 * SR) * 0.1).astype(np.float32)
    s = new_session(tmp_path, x)
    d = s.to_dict(os.path.dirname(s.path))
    d["schema_version"] = 1
    for t in d["tracks"]:
        for k in ("sample_rate", "channels", "frames"):
            t.pop(k, None)
    path = tmp_path / "old.pbsession.json"
    path.write_text(json.dumps(d))
    old = Session.load(str(path))
    track = old.tracks[0]
    assert (track.sample_rate, track.channels, track.frames) == (None, None, None)
    h = History(old)
    region = h.add_region(Region(track_id=track.id, start=SR // 2, end=2 * SR, queries=[QuerySpec("speech")]))
    plan = jobs.plan_job(old, region)
    assert plan.new_facts == {"sample_rate": SR, "channels": 2, "frames": 3 * SR}
    assert (track.sample_rate, track.channels, track.frames) == (None, None, None)     # planning is pure
    probed, real_probe = [], jobs.probe
    monkeypatch.setattr(jobs, "probe", lambda p: probed.append(p) or real_probe(p))
    seen = []
    h.subscribe(lambda ch: seen.append((ch.kind, ch.action)))
    q = JobQueue(old, separator_factory=lambda b, d: Separator(model, backend=ConstantMaskBackend(0.0)), history=h)
    job = q.enqueue(region.id)
    q.run_pending()
    assert job.status == "done", job.error
    assert probed == [track.path]                                               # no second probe
    assert ("track.facts", "state") in seen
    assert (track.sample_rate, track.channels, track.frames) == (SR, 2, 3 * SR)
    saved = Session.load(str(path)).track(track.id)                             # the queue saved the session
    assert (saved.sample_rate, saved.channels, saved.frames) == (SR, 2, 3 * SR)
    assert json.loads(path.read_text())["tracks"][0]["frames"] == 3 * SR
    # the facts are no undo step: undo takes back the render, then the region
    assert h.undo_label.startswith("Render") and h.undo()
    assert h.undo_label.startswith("Add region") and not old.stems
    assert (track.sample_rate, track.channels, track.frames) == (SR, 2, 3 * SR)
    # and a track that has its facts gets no edit
    seen.clear()
    h.redo()
    job2 = q.enqueue(region.id)
    q.run_pending()
    assert job2.status == "done" and "track.facts" not in {k for k, _ in seen}
