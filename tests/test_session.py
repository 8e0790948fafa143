"""Session model, opening, undo/redo history and crash recovery."""
from __future__ import annotations

import copy
import json
import os
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pedalboard.io import AudioFile

from plugin_bridge.errors import ConfigError, PluginBridgeError
from plugin_bridge.session.history import Autosaver, Change, History, find_recoverable, recover
from plugin_bridge.session.model import (
    SCHEMA_VERSION, JobRecord, QuerySpec, Region, Session, SessionError, Stem, Track,
)
from plugin_bridge.session.open import open_session


def write_wav(path, audio, rate, bit_depth=32):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with AudioFile(str(path), "w", rate, audio.shape[0], bit_depth=bit_depth) as f:
        f.write(np.asarray(audio, np.float32))
    return str(path)


def make_session(tmp_path) -> Session:
    a = write_wav(tmp_path / "proj" / "audio" / "dialogue.wav", np.zeros((2, 4800), np.float32), 48000)
    b = write_wav(tmp_path / "proj" / "audio" / "fx.wav", np.zeros((1, 4410), np.float32), 44100)
    s = Session(name="Reel 1", sample_rate=48000)
    t1 = Track(name="dialogue", path=a, sample_rate=48000, channels=2, frames=4800, colour="#4aa3ff", offset=0)
    t2 = Track(name="fx", path=b, sample_rate=44100, channels=1, frames=4410, offset=2 ** 40 + 7,
               chain=[{"type": "gain", "params": {"gain_db": -3.0}}])
    s.tracks += [t1, t2]
    s.regions.append(Region(track_id=t1.id, start=123457, end=2 ** 41 + 3, name="scene 4",
                            queries=[QuerySpec("people talking", negative="music", label="Dialogue", token="DX",
                                               colour="#ff0000"), QuerySpec("room tone")]))
    stem_path = write_wav(tmp_path / "proj" / "Reel_1_stems" / "dx.wav", np.zeros((2, 10), np.float32), 48000)
    t3 = Track(name="dialogue - Dialogue", path=stem_path, kind="stem", parent_id=t1.id, offset=123457)
    s.tracks.append(t3)
    s.stems.append(Stem(region_id=s.regions[0].id, query_index=0, path=stem_path, track_id=t3.id,
                        settings={"format": "wav24"}))
    s.stems.append(Stem(region_id=s.regions[0].id, query_index="residual", path=stem_path, track_id=t3.id))
    s.jobs.append(JobRecord(region_id=s.regions[0].id, queries=list(s.regions[0].queries), status="done"))
    s.settings.update({"context_seconds": 0.5, "format": "wav32f"})
    return s


# --------------------------------------------------------------------------------------------------
# model / JSON
# --------------------------------------------------------------------------------------------------
def test_json_round_trip_is_sample_exact(tmp_path):
    s = make_session(tmp_path)
    p = s.save(str(tmp_path / "proj" / "reel.pbsession.json"))
    raw = json.loads(open(p).read())
    assert raw["schema_version"] == SCHEMA_VERSION
    assert raw["regions"][0]["start"] == 123457 and raw["regions"][0]["end"] == 2 ** 41 + 3
    assert raw["tracks"][1]["offset"] == 2 ** 40 + 7
    # paths are stored relative to the session folder with forward slashes
    assert raw["tracks"][0]["path"] == "audio/dialogue.wav"
    assert raw["stems"][0]["path"] == "Reel_1_stems/dx.wav"
    s2 = Session.load(p)
    assert s2 == s
    assert s2.regions[0].end - s2.regions[0].start == 2 ** 41 + 3 - 123457
    assert isinstance(s2.regions[0].start, int) and isinstance(s2.tracks[1].offset, int)
    assert s2.to_dict(os.path.dirname(p)) == raw
    # a second save is byte-identical (stable output)
    before = open(p, "rb").read()
    s2.save()
    assert open(p, "rb").read() == before


def test_relative_paths_survive_moving_the_session_folder(tmp_path):
    s = make_session(tmp_path)
    s.save(str(tmp_path / "proj" / "reel.pbsession.json"))
    shutil.move(str(tmp_path / "proj"), str(tmp_path / "moved" / "elsewhere"))
    s2 = Session.load(str(tmp_path / "moved" / "elsewhere" / "reel.pbsession.json"))
    assert s2.tracks[0].path == str(tmp_path / "moved" / "elsewhere" / "audio" / "dialogue.wav")
    assert all(os.path.exists(t.path) for t in s2.tracks)
    assert all(os.path.exists(x.path) for x in s2.stems)
    assert s2.stems_dir == str(tmp_path / "moved" / "elsewhere" / "reel_stems")


def test_save_is_atomic_and_leaves_no_temporaries(tmp_path):
    s = make_session(tmp_path)
    p = s.save(str(tmp_path / "proj" / "reel.pbsession.json"))
    s.name = "changed"
    s.save()
    assert [n for n in os.listdir(tmp_path / "proj") if n.startswith(".pb-tmp")] == []
    assert json.load(open(p))["name"] == "changed"


def test_load_reports_field_and_changes_nothing(tmp_path):
    s = make_session(tmp_path)
    p = s.save(str(tmp_path / "proj" / "reel.pbsession.json"))
    d = json.load(open(p))
    cases = [
        (lambda d: d["regions"][0].update(end=5), "regions[0].end"),
        (lambda d: d["regions"][0].update(start=-1), "regions[0].start"),
        (lambda d: d["regions"][0].update(start=1.5), "regions[0].start"),
        (lambda d: d["regions"][0].update(track_id="nope"), "regions[0].track_id"),
        (lambda d: d["tracks"][1].update(gain_db="loud"), "tracks[1].gain_db"),
        (lambda d: d["tracks"][0].pop("path"), "tracks[0].path"),
        (lambda d: d["tracks"][0].update(kind="bus"), "tracks[0].kind"),
        (lambda d: d["tracks"][2].update(parent_id="ghost"), "tracks[2].parent_id"),
        (lambda d: d["tracks"][1].update(id=d["tracks"][0]["id"]), "tracks[1].id"),
        (lambda d: d["regions"][0]["queries"][1].update(text="  "), "regions[0].queries[1].text"),
        (lambda d: d["regions"][0]["queries"][0].update(colour="red"), "regions[0].queries[0].colour"),
        (lambda d: d["stems"][0].update(query_index=-2), "stems[0].query_index"),
        (lambda d: d["tracks"][0].update(volume=3), "tracks[0].volume"),
        (lambda d: d.update(sample_rate=0), "sample_rate"),
        (lambda d: d.update(schema_version=99), "schema_version"),
        (lambda d: d["settings"].update(overlap=0.9), "settings.overlap"),
        (lambda d: d["jobs"][0].update(status="exploded"), "jobs[0].status"),
    ]
    for mutate, fld in cases:
        bad = copy.deepcopy(d)
        mutate(bad)
        bp = tmp_path / "bad.pbsession.json"
        bp.write_text(json.dumps(bad))
        before = bp.read_bytes()
        with pytest.raises(SessionError) as ei:
            Session.load(str(bp))
        assert ei.value.field == fld, (fld, str(ei.value))
        assert fld in str(ei.value)
        assert isinstance(ei.value, ConfigError)
        assert bp.read_bytes() == before
    for text in ["", "{", "[1, 2]", "null", '{"schema_version": NaN}', "\xff\xfe"]:
        bp = tmp_path / "bad2.pbsession.json"
        bp.write_bytes(text.encode("latin-1"))
        with pytest.raises(SessionError):
            Session.load(str(bp))


def test_v0_session_is_migrated(tmp_path):
    write_wav(tmp_path / "a.wav", np.zeros((1, 100), np.float32), 48000)
    v0 = {"name": "old", "sample_rate": 48000, "tracks": [{"file": "a.wav"}],
          "regions": []}
    v0["tracks"][0]["id"] = "t1"
    v0["regions"].append({"track_id": "t1", "start": 10, "end": 90, "queries": ["birds", "wind"]})
    p = tmp_path / "old.pbsession.json"
    p.write_text(json.dumps(v0))
    before = p.read_bytes()
    s = Session.load(str(p))
    assert s.tracks[0].path == str(tmp_path / "a.wav") and s.tracks[0].name == "a"
    assert [q.text for q in s.regions[0].queries] == ["birds", "wind"]
    assert (s.regions[0].start, s.regions[0].end) == (10, 90)
    assert p.read_bytes() == before  # loading never rewrites the file


def test_running_jobs_come_back_pending(tmp_path):
    s = make_session(tmp_path)
    s.jobs[0].status = "running"
    s.jobs[0].progress = 0.4
    p = s.save(str(tmp_path / "proj" / "reel.pbsession.json"))
    s2 = Session.load(p)
    assert (s2.jobs[0].status, s2.jobs[0].progress) == ("pending", 0.0)


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 63) | st.floats(allow_nan=False)
                     | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                     max_leaves=6)


from fuzz_helpers import json_paths as _paths  # noqa: E402


@settings(max_examples=int(os.environ.get("PB_FUZZ_EXAMPLES", 250)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_sessions_fail_cleanly(tmp_path, data):
    base = getattr(test_fuzzed_sessions_fail_cleanly, "_base", None)
    if base is None:
        s = make_session(tmp_path)
        base = s.to_dict(str(tmp_path / "proj"))
        test_fuzzed_sessions_fail_cleanly._base = base
    d = copy.deepcopy(base)
    paths = [p for p in _paths(d) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = d
        try:
            for k in path[:-1]:
                parent = parent[k]
            action = data.draw(st.sampled_from(["replace", "delete"]))
            if action == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            elif action == "delete" and isinstance(parent, list):
                del parent[path[-1]]
            else:
                parent[path[-1]] = data.draw(_JSON)
        except (KeyError, IndexError, TypeError):
            continue
    p = tmp_path / "fuzz.pbsession.json"
    p.write_text(json.dumps(d))
    before = p.read_bytes()
    try:
        s = Session.load(str(p))
    except SessionError as exc:
        assert exc.field, str(exc)
        assert exc.field in str(exc) or exc.field == "(top level)"
    else:
        # whatever loaded must serialise again and validate
        Session.from_dict(s.to_dict(str(tmp_path)), str(tmp_path))
    assert p.read_bytes() == before


# --------------------------------------------------------------------------------------------------
# open
# --------------------------------------------------------------------------------------------------
def test_open_folder_file_and_session(tmp_path):
    write_wav(tmp_path / "in" / "take10.wav", np.zeros((2, 4410), np.float32), 44100)
    write_wav(tmp_path / "in" / "take2.wav", np.zeros((1, 4800), np.float32), 48000)
    (tmp_path / "in" / "notes.txt").write_text("hello")
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF1234WAVEjunk")
    warnings = []
    s = open_session(str(tmp_path / "in"), warnings)
    # natural order: take2 before take10; the session rate is the first track's
    assert [t.name for t in s.tracks] == ["take2", "take10"]
    assert s.sample_rate == 48000
    assert [t.name for t in s.mismatched_tracks()] == ["take10"]
    assert s.tracks[1].frames == 4410 and s.tracks[0].channels == 1
    assert any("broken.wav" in w for w in warnings) and any("44100" in w for w in warnings)
    # time mapping of a mismatched track: 0.05 s at 48 kHz -> 0.05 s at 44.1 kHz
    assert s.session_to_file_frames(s.tracks[1], 2400, 4800) == (2205, 4410)
    one = open_session(str(tmp_path / "in" / "take10.wav"))
    assert one.sample_rate == 44100 and len(one.tracks) == 1
    p = s.save(str(tmp_path / "x.pbsession.json"))
    assert open_session(p) == s
    with pytest.raises(ConfigError):
        open_session(str(tmp_path / "in" / "notes.txt"))
    with pytest.raises(ConfigError):
        open_session(str(tmp_path / "nothing-here"))


def test_dawproject_and_rpp_dispatch(tmp_path, monkeypatch):
    from plugin_bridge.session import dawproject, rpp

    seen = []
    for name, mod in (("dawproject", dawproject), ("rpp", rpp)):
        monkeypatch.setattr(mod, "load", lambda path, name=name: (seen.append((name, path)), Session(name=name))[1])
    for ext in ("dawproject", "RPP"):
        f = tmp_path / f"p.{ext}"
        f.write_text("x")
        assert open_session(str(f)).name == ext.lower()
    assert [n for n, _ in seen] == ["dawproject", "rpp"]


# --------------------------------------------------------------------------------------------------
# history
# --------------------------------------------------------------------------------------------------
def _edits(s: Session):
    """(name, edit(history)) for every edit kind."""
    t1, t2 = s.tracks[0], s.tracks[1]
    r = s.regions[0]

    class P:  # minimal preset stand-in
        name = "Nature"

        def to_queries(self):
            return [QuerySpec("birds", label="Birds", preset="Nature"), QuerySpec("wind", label="Wind", preset="Nature")]

    new_track = Track(name="new", path=t1.path)
    stem_track = Track(name="dialogue - Birds", path=t1.path, kind="stem", parent_id=t1.id, offset=r.start)
    stem = Stem(region_id=r.id, query_index=0, path=t1.path, track_id=stem_track.id)
    return [
        ("add track", lambda h: h.add_track(new_track)),
        ("remove track", lambda h: h.remove_track(t1.id)),
        ("rename track", lambda h: h.set_track(t2.id, name="FX")),
        ("gain", lambda h: h.set_gain(t1.id, -6.5)),
        ("mute", lambda h: h.set_mute(t1.id, True)),
        ("solo", lambda h: h.set_solo(t2.id, True)),
        ("colour/offset", lambda h: h.set_track(t2.id, colour="#00ff00", offset=99)),
        ("move track", lambda h: h.move_track(t2.id, 0)),
        ("add region", lambda h: h.add_region(Region(track_id=t2.id, start=5, end=50))),
        ("remove region", lambda h: h.remove_region(r.id)),
        ("move region", lambda h: h.move_region(r.id, 1000)),
        ("move region to track", lambda h: h.move_region(r.id, 7, track_id=t2.id)),
        ("resize region", lambda h: h.resize_region(r.id, 10, 20)),
        ("rename region", lambda h: h.rename_region(r.id, "scene 5")),
        ("add query", lambda h: h.add_query(r.id, QuerySpec("traffic"))),
        ("remove query", lambda h: h.remove_query(r.id, 0)),
        ("edit query", lambda h: h.edit_query(r.id, 1, text="air", negative="hum", label="Air")),
        ("set preset", lambda h: h.set_preset(r.id, P())),
        ("render", lambda h: h.add_render([stem_track], [stem])),
        ("remove stems", lambda h: h.remove_stems([s.stems[0].id, s.stems[1].id])),
        ("track chain", lambda h: h.set_chain(t1.id, [{"type": "highpass", "params": {"cutoff_frequency_hz": 80}}])),
        ("query chain", lambda h: h.edit_query(r.id, 0, chain=[{"type": "vst3", "path": "/x.vst3"}])),
        ("settings", lambda h: h.set_settings(context_seconds=2.0, format=None)),
        ("rename session", lambda h: h.rename_session("Reel 2")),
    ]


def test_undo_redo_every_edit_kind(tmp_path):
    base = make_session(tmp_path)
    for name, edit in _edits(base):
        s = base.copy()
        h = History(s)
        events = []
        h.subscribe(events.append)
        before = s.to_dict()
        edit(h)
        after = s.to_dict()
        assert after != before, name
        assert h.dirty and h.can_undo and h.undo_label
        assert events[-1].action == "do"
        assert h.undo()
        assert s.to_dict() == before, name
        assert not h.dirty
        assert events[-1].action == "undo"
        assert h.redo()
        assert s.to_dict() == after, name
        assert events[-1].action == "redo" and events[-1].kind == events[0].kind
        assert h.dirty


def test_add_render_refuses_a_track_or_stem_id_the_session_already_has_and_changes_nothing(tmp_path):
    s = make_session(tmp_path)
    h = History(s)
    events = []
    h.subscribe(events.append)
    before = s.to_dict()
    old = s.tracks[2]                                   # an existing stem track
    fresh = Track(name="dialogue - Room", path=old.path, kind="stem", parent_id=s.tracks[0].id, offset=5)
    again = Track(name="dialogue - again", path=old.path, kind="stem", parent_id=s.tracks[0].id, offset=5)
    again.id = old.id
    stem = Stem(region_id=s.regions[0].id, query_index=1, path=old.path, track_id=fresh.id)
    twin = Stem(region_id=s.regions[0].id, query_index=1, path=old.path, track_id=fresh.id)
    twin.id = s.stems[0].id
    for tracks, stems, what in (([fresh, again], [stem], f"track with id {old.id} already exists"),
                                ([fresh, fresh], [stem], f"track with id {fresh.id} already exists"),
                                ([fresh], [stem, twin], f"stem with id {twin.id} already exists"),
                                ([fresh], [stem, stem], f"stem with id {stem.id} already exists")):
        with pytest.raises(PluginBridgeError, match=what):
            h.add_render(tracks, stems, job_id="job-1")
        assert s.to_dict() == before and not h.can_undo and not h.dirty and not events
    h.add_render([fresh], [stem])                        # the same render without the duplicate goes in
    assert s.track(fresh.id) and s.stem(stem.id) and h.can_undo


def test_history_stack_dirty_merge_transaction(tmp_path):
    s = make_session(tmp_path)
    h = History(s)
    p = h.save(str(tmp_path / "proj" / "a.pbsession.json"))
    assert not h.dirty and os.path.exists(p)
    t = s.tracks[0]
    r = s.regions[0]
    original = s.to_dict()
    for g in (-1.0, -2.0, -3.0):  # a fader drag merges into one step
        h.set_gain(t.id, g)
    for x in (10, 20, 30):
        h.move_region(r.id, x)
    assert (t.gain_db, r.start) == (-3.0, 30)
    h.undo()
    assert r.start == 123457 and t.gain_db == -3.0
    h.undo()
    assert s.to_dict() == original and not h.dirty
    with h.transaction("Batch"):
        h.set_mute(t.id, True)
        h.rename_region(r.id, "renamed")
    assert h.undo_label == "Batch"
    h.undo()
    assert s.to_dict() == original
    # failing edits change nothing and raise SessionError naming the field
    with pytest.raises(SessionError) as ei:
        h.resize_region(r.id, 50, 40)
    assert ei.value.field == "end"
    with pytest.raises(SessionError) as ei:
        h.set_gain(t.id, float("nan"))
    assert ei.value.field == "gain_db"
    with pytest.raises(SessionError) as ei:
        h.set_settings(overlap=3)
    assert "settings.overlap" in str(ei.value)
    assert s.to_dict() == original
    # a failing transaction is rolled back
    with pytest.raises(SessionError):
        with h.transaction("half"):
            h.set_mute(t.id, True)
            h.set_track(t.id, kind="bus")
    assert s.to_dict() == original
    # a new edit after undo drops the redo branch; the saved state then reads dirty
    h.set_mute(t.id, True)
    h.undo()
    h.set_solo(t.id, True)
    assert not h.can_redo and h.dirty
    # many edits: the stack keeps them all (unbounded enough)
    for i in range(500):
        h.rename_region(r.id, f"n{i}")
    n = 0
    while h.undo():
        n += 1
    assert n == 501 and s.to_dict() == original


def test_remove_track_removes_its_family_and_undo_restores_order(tmp_path):
    s = make_session(tmp_path)
    h = History(s)
    before = s.to_dict()
    h.remove_track(s.tracks[0].id)
    assert [t.name for t in s.tracks] == ["fx"]
    assert s.regions == [] and s.stems == []
    h.undo()
    assert s.to_dict() == before


def test_crash_recovery_from_autosave(tmp_path):
    s = make_session(tmp_path)
    h = History(s)
    h.save(str(tmp_path / "proj" / "reel.pbsession.json"))
    clock = [0.0]
    a = Autosaver(h, every_edits=3, every_seconds=10, clock=lambda: clock[0])
    assert a.path.startswith(os.environ["PLUGIN_BRIDGE_DATA"])
    h.set_gain(s.tracks[0].id, -4.0, merge=False)
    h.move_region(s.regions[0].id, 777)
    assert not os.path.exists(a.path)          # 2 edits: not yet
    h.add_query(s.regions[0].id, QuerySpec("hum", label="Hum"))
    assert os.path.exists(a.path)              # 3rd edit: autosaved
    h.rename_region(s.regions[0].id, "after autosave")
    assert not a.tick()
    clock[0] = 11.0
    assert a.tick()                            # time-based autosave of the 4th edit
    expected = s.to_dict()
    session_file = s.path
    del a, h, s                                # "crash": nothing saved
    recs = find_recoverable()
    assert len(recs) == 1 and recs[0].session_path == session_file
    s2, h2 = recover(recs[0])
    assert s2.to_dict() == expected and s2.path == session_file and h2.dirty
    assert s2.regions[0].start == 777 and s2.regions[0].queries[-1].label == "Hum"
    # saving the recovered session deletes the autosave; nothing is left to recover
    a2 = Autosaver(h2)
    h2.save()
    assert find_recoverable() == [] and not os.path.exists(a2.path)
    assert Session.load(session_file).to_dict() == expected


def test_autosave_older_than_session_is_not_offered(tmp_path):
    s = make_session(tmp_path)
    h = History(s)
    h.save(str(tmp_path / "proj" / "reel.pbsession.json"))
    a = Autosaver(h, every_edits=1)
    h.rename_session("x")
    os.utime(a.path, (1, 1))                   # the session file is newer
    assert find_recoverable() == []
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "bad.autosave.json").write_text("{not json")
    assert find_recoverable(str(tmp_path / "junk")) == []


def test_change_listener_errors_do_not_break_editing(tmp_path):
    s = make_session(tmp_path)
    h = History(s)
    got: list[Change] = []

    def bad(ch):
        raise RuntimeError("listener bug")

    h.subscribe(bad)
    unsub = h.subscribe(got.append)
    h.set_mute(s.tracks[0].id, True)
    assert s.tracks[0].mute and got[0].kind == "track.mute" and got[0].ids == (s.tracks[0].id,)
    unsub()
    h.set_mute(s.tracks[0].id, False)
    assert len(got) == 1
