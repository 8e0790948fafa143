"""Render jobs: sample-exact stem placement, stems + residual == region, cancel, queue persistence."""
from __future__ import annotations

import os
import re
import threading

import numpy as np
import pytest
from pedalboard.io import AudioFile

from plugin_bridge.audio_io import read_all
from plugin_bridge.engine.separator import Separator
from plugin_bridge.errors import JobCancelled
from plugin_bridge.models.registry import DEFAULT_WEIGHTS, load_model
from plugin_bridge.session.history import History
from plugin_bridge.session.jobs import JobQueue, make_job, plan_job, run_job, sanitize_filename
from plugin_bridge.session.model import QuerySpec, Region, Session
from plugin_bridge.session.open import open_session
from plugin_bridge.testing import ConstantMaskBackend, fast_model

SR = 16000


@pytest.fixture(scope="module")
def model():
    return fast_model()


def sep_with(model, mag_logit):
    return Separator(model, backend=ConstantMaskBackend(mag_logit))


def write_wav(path, audio, rate=SR):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with AudioFile(str(path), "w", rate, audio.shape[0], bit_depth=32) as f:
        f.write(np.asarray(audio, np.float32))
    return str(path)


def new_session(tmp_path, audio, offset=0, fmt="wav32f"):
    write_wav(tmp_path / "audio" / "dialogue.wav", audio)
    s = open_session(str(tmp_path / "audio"))
    s.tracks[0].offset = offset
    s.settings["format"] = fmt
    s.save(str(tmp_path / "reel.pbsession.json"))
    return s


def stem_files(tmp_path):
    d = tmp_path / "reel_stems"
    return sorted(os.listdir(d)) if d.exists() else []


def test_impulse_lands_on_the_exact_sample_in_the_stem_track(tmp_path, model):
    x = np.zeros((2, 3 * SR), np.float32)
    x[:, 20000] = 0.9          # file frame 20000
    offset = 1234              # the file starts at timeline frame 1234
    s = new_session(tmp_path, x, offset=offset)
    h = History(s)
    r = h.add_region(Region(track_id=s.tracks[0].id, start=offset + 20000, end=offset + 27000, name="hit",
                            queries=[QuerySpec("impact", label="Impact")]))
    job = make_job(s, r.id)
    res = run_job(s, job, sep_with(model, 30.0), history=h)
    stem_track = res.tracks[0]
    assert stem_track.kind == "stem" and stem_track.parent_id == s.tracks[0].id
    assert stem_track.offset == offset + 20000            # placed at the region start
    y, rate = read_all(stem_track.path)
    assert rate == SR and y.shape == (2, 7000)            # exactly the region's length
    assert int(np.argmax(np.abs(y[0]))) == 0              # impulse on the stem's first sample
    assert abs(y[0, 0] - 0.9) < 1e-4 and np.abs(y[:, 1:]).max() < 1e-4
    # timeline position of the impulse == where it is in the source
    assert stem_track.offset + int(np.argmax(np.abs(y[0]))) == offset + 20000
    # the WAV carries a BWF bext chunk a DAW places it by: TimeReference = the region's timeline position
    from plugin_bridge.export.bwf import read_bext
    b = read_bext(stem_track.path)
    assert b.time_reference == offset + 20000 and b.description == "impact"
    assert read_bext(res.tracks[1].path).description.startswith("residual")
    # stem tracks sit right under their source track
    assert [t.kind for t in s.tracks] == ["source", "stem", "residual"]
    assert res.stems[0].complete and res.stems[0].query_index == 0 and res.stems[1].query_index == "residual"
    # one undo step removes the render; redo brings it back
    h.undo()
    assert [t.kind for t in s.tracks] == ["source"] and s.stems == []
    h.redo()
    assert len(s.stems) == 2


def test_impulse_mid_region_with_context_clipped_at_file_start(tmp_path, model):
    x = np.zeros((1, 2 * SR), np.float32)
    x[0, 777] = 0.5
    s = new_session(tmp_path, x)
    r = Region(track_id=s.tracks[0].id, start=700, end=9000, queries=[QuerySpec("click")])
    s.regions.append(r)
    plan = plan_job(s, r, 1.0)
    assert (plan.read_start, plan.read_end, plan.pre, plan.length) == (0, 9000 + SR, 700, 8300)
    res = run_job(s, make_job(s, r.id), sep_with(model, 30.0))
    y, _ = read_all(res.stems[0].path)
    assert y.shape == (1, 8300) and int(np.argmax(np.abs(y[0]))) == 77
    assert res.tracks[0].offset + 77 == 777


def test_stems_plus_residual_equal_region_audio(tmp_path, model):
    rng = np.random.RandomState(3)
    x = (rng.randn(2, 3 * SR) * 0.2).astype(np.float32)
    s = new_session(tmp_path, x, offset=500)
    region = Region(track_id=s.tracks[0].id, start=500 + 3000, end=500 + 3 * SR - 100,  # context clipped at end
                    queries=[QuerySpec("speech", negative="music", label="DX"), QuerySpec("music", label="MX")])
    s.regions.append(region)
    res = run_job(s, make_job(s, region.id), sep_with(model, 0.0))
    assert len(res.stems) == 3
    parts = [read_all(st.path)[0] for st in res.stems]
    src = x[:, 3000:3 * SR - 100]
    assert all(p.shape == src.shape for p in parts)
    err = np.abs(np.sum(parts, axis=0) - src).max()
    assert err < 1e-6, err
    # the masks really split the audio (each query half with mag_logit 0 and energy sharing)
    assert np.abs(parts[0]).max() > 0.05 and np.abs(parts[1]).max() > 0.05
    assert all(t.offset == 3500 for t in res.tracks)


def test_file_names_template_sanitised_unique(tmp_path, model):
    x = (np.random.RandomState(0).randn(1, SR) * 0.1).astype(np.float32)
    s = new_session(tmp_path, x)
    s.name = 'Reel: 1/A'
    s.settings["name_template"] = "{session}_{track}_{region}_{label}_{index}"
    r = Region(track_id=s.tracks[0].id, start=0, end=4000, name="sc*4",
               queries=[QuerySpec("birds?", label="Birds <hi>"), QuerySpec("birds?", label="Birds <hi>")])
    s.regions.append(r)
    res1 = run_job(s, make_job(s, r.id), sep_with(model, 0.0))
    res2 = run_job(s, make_job(s, r.id), sep_with(model, 0.0))
    n1 = [os.path.basename(x.path) for x in res1.stems]
    n2 = [os.path.basename(x.path) for x in res2.stems]
    assert n1 == ["Reel_1_A_dialogue_sc_4_Birds_hi_01.wav", "Reel_1_A_dialogue_sc_4_Birds_hi_02.wav",
                  "Reel_1_A_dialogue_sc_4_Residual_R.wav"]
    assert n2 == [n[:-4] + "-2.wav" for n in n1]          # a second render never overwrites
    assert len(stem_files(tmp_path)) == 6
    assert sanitize_filename("CON") == "_CON" and sanitize_filename(' ..a\tb:c ') == "a_b_c"


def test_cancel_leaves_no_files(tmp_path, model):
    x = (np.random.RandomState(1).randn(1, 3 * SR) * 0.1).astype(np.float32)
    s = new_session(tmp_path, x)
    s.settings["chunk_seconds"] = 0.5
    r = Region(track_id=s.tracks[0].id, start=0, end=3 * SR, queries=[QuerySpec("a"), QuerySpec("b")])
    s.regions.append(r)
    ev = threading.Event()
    seen = []

    def progress(p):
        seen.append(p.fraction)
        if len(seen) == 2:
            ev.set()

    before = s.to_dict()
    with pytest.raises(JobCancelled):
        run_job(s, make_job(s, r.id), sep_with(model, 0.0), progress=progress, cancel=ev)
    assert stem_files(tmp_path) == []                      # not even hidden partial files
    assert s.to_dict() == before
    # cancel at the very end too: every frame separated and written, the files not yet in place
    ev2 = threading.Event()

    def progress2(p):
        if p.stage == "separating" and p.fraction == 1.0:
            ev2.set()
    with pytest.raises(JobCancelled):
        run_job(s, make_job(s, r.id), sep_with(model, 0.0), progress=progress2, cancel=ev2)
    assert stem_files(tmp_path) == [] and s.to_dict() == before


def test_queue_runs_in_worker_with_progress_errors_and_cancel(tmp_path, model):
    x = (np.random.RandomState(2).randn(1, 2 * SR) * 0.1).astype(np.float32)
    s = new_session(tmp_path, x)
    h = History(s)
    t = s.tracks[0]
    ok1 = h.add_region(Region(track_id=t.id, start=0, end=8000, queries=[QuerySpec("a")]))
    bad = h.add_region(Region(track_id=t.id, start=10 * SR, end=11 * SR, queries=[QuerySpec("b")]))  # past the end
    ok2 = h.add_region(Region(track_id=t.id, start=8000, end=16000, queries=[QuerySpec("c")]))
    progress, updates = [], []
    q = JobQueue(s, lambda b, d: sep_with(model, 0.0), history=h, on_progress=progress.append,
                 on_update=lambda j: updates.append((j.id, j.status)))
    j1, j2, j3 = q.enqueue(ok1.id), q.enqueue(bad.id), q.enqueue(ok2.id)
    q.cancel(j3.id)                                       # cancel one pending job
    q.start()
    assert q.wait_idle(60)
    q.stop()
    assert (j1.status, j2.status, j3.status) == ("done", "failed", "cancelled")
    assert "outside the audio" in j2.error
    fr = [p.fraction for p in progress if p.job_id == j1.id]
    assert fr == sorted(fr) and fr[-1] == 1.0 and any(p.eta_seconds is not None for p in progress)
    assert (j1.id, "running") in updates and (j1.id, "done") in updates
    # the results are saved in the session file
    s2 = Session.load(s.path)
    assert [j.status for j in s2.jobs] == ["done", "failed", "cancelled"]
    assert len(s2.stems) == 2 and all(os.path.exists(x.path) for x in s2.stems)
    assert s2.jobs[0].stem_ids == [x.id for x in s2.stems]
    # retry the cancelled one
    q2 = JobQueue(s2, lambda b, d: sep_with(model, 0.0))
    q2.retry(s2.jobs[2].id)
    q2.run_pending()
    assert s2.jobs[2].status == "done" and len(s2.stems) == 4


def test_queue_persists_and_resumes_after_a_crash(tmp_path, model):
    x = (np.random.RandomState(4).randn(1, 2 * SR) * 0.1).astype(np.float32)
    s = new_session(tmp_path, x)
    for a in (0, 8000):
        s.regions.append(Region(track_id=s.tracks[0].id, start=a, end=a + 4000, queries=[QuerySpec("x")]))
    q = JobQueue(s, lambda b, d: sep_with(model, 0.0))
    jobs = [q.enqueue(r.id) for r in s.regions]
    # "crash" while the first job runs: the session file says running, a work folder is left over
    crash = threading.Event()

    class Boom(Exception):
        pass

    def exploding_factory(b, d):
        class S:
            model = None

            def separate_stream(self, *a, **k):
                os.makedirs(os.path.join(s.stems_dir, "partial-junk"), exist_ok=True)
                raise KeyboardInterrupt  # the process dies here
        return S()

    q_crash = JobQueue(s, exploding_factory)
    with pytest.raises(KeyboardInterrupt):
        q_crash.run_one(jobs[0])
    os.rmdir(os.path.join(s.stems_dir, "partial-junk"))
    # simulate that the failure handler never ran (hard crash): the saved file has "running"
    jobs[0].status = "running"
    s.save()
    del q, q_crash, s
    s2 = Session.load(str(tmp_path / "reel.pbsession.json"))
    assert [j.status for j in s2.jobs] == ["pending", "pending"]
    q2 = JobQueue(s2, lambda b, d: sep_with(model, 0.0))
    ran = q2.run_pending()
    assert len(ran) == 2 and all(j.status == "done" for j in s2.jobs)
    s3 = Session.load(str(tmp_path / "reel.pbsession.json"))
    assert [j.status for j in s3.jobs] == ["done", "done"] and len(s3.stems) == 4
    assert [n for n in stem_files(tmp_path) if n.startswith(".")] == []


def test_cancel_all_stops_the_running_job(tmp_path, model):
    x = (np.random.RandomState(5).randn(1, 3 * SR) * 0.1).astype(np.float32)
    s = new_session(tmp_path, x)
    s.settings["chunk_seconds"] = 0.25
    for a in (0, SR):
        s.regions.append(Region(track_id=s.tracks[0].id, start=a, end=a + 2 * SR, queries=[QuerySpec("x")]))
    q = JobQueue(s, lambda b, d: sep_with(model, 0.0))

    def on_progress(p):
        q.cancel_all()
    q.on_progress = on_progress
    for r in s.regions:
        q.enqueue(r.id)
    q.run_pending()
    assert [j.status for j in s.jobs] == ["cancelled", "cancelled"]
    assert stem_files(tmp_path) == [] and s.stems == []


def test_mixed_rate_track_maps_region_by_time(tmp_path, model):
    write_wav(tmp_path / "audio" / "a.wav", np.zeros((1, 48000), np.float32), 48000)
    y = np.zeros((1, 44100), np.float32)
    y[0, 22050] = 0.7                                    # 0.5 s
    write_wav(tmp_path / "audio" / "b.wav", y, 44100)
    s = open_session(str(tmp_path / "audio"))
    s.settings["format"] = "wav32f"
    s.save(str(tmp_path / "reel.pbsession.json"))
    b = s.tracks[1]
    r = Region(track_id=b.id, start=24000, end=36000, queries=[QuerySpec("x")])  # 0.5 s .. 0.75 s
    s.regions.append(r)
    res = run_job(s, make_job(s, r.id), sep_with(model, 30.0))
    st_audio, rate = read_all(res.stems[0].path)
    assert rate == 44100 and st_audio.shape == (1, 11025)
    assert int(np.argmax(np.abs(st_audio[0]))) == 0 and res.tracks[0].offset == 24000


def test_query_plugin_chain_is_rendered_into_its_stem(tmp_path, model):
    x = (np.random.RandomState(6).randn(1, SR) * 0.1).astype(np.float32)
    s = new_session(tmp_path, x)
    gain = [{"type": "gain", "params": {"gain_db": 20 * np.log10(2.0)}}]
    r = Region(track_id=s.tracks[0].id, start=1000, end=9000,
               queries=[QuerySpec("a", label="A", chain=gain), QuerySpec("b", label="B")])
    s.regions.append(r)
    res = run_job(s, make_job(s, r.id), sep_with(model, 0.0))
    a, b, rest = (read_all(st.path)[0] for st in res.stems)
    src = x[:, 1000:9000]
    # query A was doubled by its chain; B and the residual are untouched, so A/2 + B + rest == source
    assert np.abs(a / 2 + b + rest - src).max() < 1e-5
    assert np.abs(a).max() > 1.5 * np.abs(b).max()
    assert res.warnings == []


@pytest.mark.skipif(not os.path.exists(DEFAULT_WEIGHTS), reason="no embedded weights in this checkout")
def test_a_query_far_from_the_trained_concepts_is_flagged_in_the_job(tmp_path):
    """The embedded model knows 43 concepts: a render with a query far from all of them still runs, but
    says so (with the closest concepts and similarities) in the job's warnings, which the app's job list
    and `session run` show; a trained concept gets no warning."""
    trained = load_model(None)
    x = (np.random.RandomState(5).randn(1, SR) * 0.1).astype(np.float32)
    s = new_session(tmp_path, x)
    region = Region(track_id=s.tracks[0].id, start=0, end=SR // 2,
                    queries=[QuerySpec("speech"), QuerySpec("a jet engine spooling up on the runway")])
    s.regions.append(region)
    res = run_job(s, make_job(s, region.id), Separator(trained, backend=ConstantMaskBackend(0.0)))
    assert len(res.stems) == 3
    far = [w for w in res.warnings if "far from what this model knows" in w]
    assert len(far) == 1 and "jet engine" in far[0] and "speech" not in far[0].split("closest")[0]
    # closest concepts are named with a similarity each
    assert re.search(r"closest concepts: [a-z_ ]+ \(-?\d\.\d\d\)", far[0])
