"""The session's shape declared once (shape.py), the versioned-document helper (document.py) and the
edit API for job records (History.add_job / set_job / retry_job)."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import pytest

from plugin_bridge.document import DocumentFormat
from plugin_bridge.learned import LEARNED_DOCUMENT, LearnedQueryError
from plugin_bridge.session import shape
from plugin_bridge.session.history import Autosaver, History
from plugin_bridge.session.jobs import make_job
from plugin_bridge.session.model import (
    SCHEMA_VERSION, SESSION_DOCUMENT, SESSION_SCHEMA, JobRecord, QuerySpec, Region, Session, SessionError, Stem, Track,
)
from plugin_bridge.session.presets import PRESET_DOCUMENT, PresetError, PresetStore, load_preset_file

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "session_v1.pbsession.json")
PERSISTED = (QuerySpec, Track, Region, Stem, JobRecord, Session)


def persisted_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if not f.metadata.get("runtime")}


# --------------------------------------------------------------------------------------------------
# one shape
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", PERSISTED, ids=lambda c: c.__name__)
def test_schema_and_edit_fields_are_the_dataclass_fields(cls):
    assert set(shape.object_schema(cls)["properties"]) == persisted_names(cls)
    assert shape.editable_fields(cls) == persisted_names(cls) - {"id"}


def test_the_session_schema_nests_the_derived_object_schemas():
    props = SESSION_SCHEMA["properties"]
    assert set(props) == persisted_names(Session) | {"schema_version", "format"}
    for key, cls in (("tracks", Track), ("regions", Region), ("stems", Stem), ("jobs", JobRecord)):
        assert props[key]["items"] == shape.object_schema(cls)
    assert props["regions"]["items"]["properties"]["queries"]["items"] == shape.object_schema(QuerySpec)


def test_a_new_dataclass_field_needs_no_other_edit():
    """A throw-away subclass adds one field; dict form, schema and edit checks follow on their own."""

    @dataclasses.dataclass
    class LaneTrack(Track):
        lane: int = shape.shaped(0, schema={"minimum": 0, "maximum": 7})
        notes: list[str] = shape.shaped(factory=list)

    schema = shape.object_schema(LaneTrack)
    assert schema["properties"]["lane"] == {"type": "integer", "minimum": 0, "maximum": 7}
    assert schema["properties"]["notes"] == {"type": "array", "items": {"type": "string"}}
    assert {"lane", "notes"} <= shape.editable_fields(LaneTrack)

    t = LaneTrack(name="a", path="/proj/audio/a.wav", lane=3, notes=["x"])
    d = shape.to_dict(t, "/proj")
    assert d["lane"] == 3 and d["notes"] == ["x"] and d["path"] == "audio/a.wav" and list(d)[0] == "id"
    assert shape.from_dict(LaneTrack, json.loads(json.dumps(d)), "/proj") == t
    assert shape.from_dict(LaneTrack, {k: v for k, v in d.items() if k != "lane"}, "/proj").lane == 0

    validator = shape.cached_validator(schema)
    assert not list(validator.iter_errors(d))
    assert list(validator.iter_errors({**d, "lane": 9}))
    shape.check_fields(LaneTrack, {"lane": 7}, "track", SessionError)
    for bad in (-1, "2", True, 1.5):
        with pytest.raises(SessionError) as e:
            shape.check_fields(LaneTrack, {"lane": bad}, "track", SessionError)
        assert e.value.field == "lane"


def test_a_new_session_field_reaches_the_file_form():
    @dataclasses.dataclass
    class NotedSession(Session):
        notes: str = ""

    s = NotedSession(name="n", notes="hello")
    d = shape.to_dict(s)
    assert d["notes"] == "hello" and "path" not in d and "lock" not in d and "version" not in d
    assert shape.object_schema(NotedSession)["properties"]["notes"] == {"type": "string"}
    assert shape.from_dict(NotedSession, d).notes == "hello"


def test_history_checks_follow_the_schema(tmp_path):
    s = Session()
    h = History(s)
    t = h.add_track(Track(name="a", path=str(tmp_path / "a.wav")))
    for bad, fld in ((dict(gain_db=61), "gain_db"), (dict(gain_db=float("nan")), "gain_db"), (dict(mute=1), "mute"),
                     (dict(kind="x"), "kind"), (dict(colour="red"), "colour"), (dict(offset=-1), "offset"),
                     (dict(chain=[{}]), "chain[0].type"), (dict(lane=1), "lane"), (dict(id="x"), "id")):
        with pytest.raises(SessionError) as e:
            h.set_track(t.id, **bad)
        assert e.value.field == fld
    assert h.undo_label == "Add track a"
    r = h.add_region(Region(track_id=t.id, start=0, end=10, queries=[QuerySpec("a")]))
    with pytest.raises(SessionError) as e:
        h.edit_query(r.id, 0, text=" ")
    assert e.value.field == "queries[0].text"
    with pytest.raises(SessionError) as e:
        h.set_settings(backend="gpu")
    assert e.value.field == "settings.backend"


# --------------------------------------------------------------------------------------------------
# files on disk stay compatible
# --------------------------------------------------------------------------------------------------
def test_a_version_1_file_written_by_the_previous_code_loads_and_saves_the_same_content_as_version_2(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    path = proj / "reel.pbsession.json"
    shutil.copy(FIXTURE, path)
    before = path.read_bytes()
    s = Session.load(str(path))
    assert path.read_bytes() == before
    assert s.tracks[0].path == str(proj / "audio" / "dialogue.wav") and s.tracks[1].sample_rate == 44100
    assert s.regions[0].queries[0] == QuerySpec("people talking", "music", "Speech", "#ff0000", "DX", "Dialogue",
                                                [{"type": "gain", "params": {"gain_db": 1.5}}])
    assert s.stems[1].query_index == "residual" and s.jobs[1].error == "out of memory"
    assert [(j.kind, j.track_id) for j in s.jobs] == [("separate", None)] * len(s.jobs)
    s.save()
    # version 2 adds the job fields kind and track_id; everything else is written as it was read
    saved, old = json.loads(path.read_bytes()), json.loads(before)
    assert saved.pop("schema_version") == SCHEMA_VERSION == 2 and old.pop("schema_version") == 1
    for j in saved["jobs"]:
        assert (j.pop("kind"), j.pop("track_id")) == ("separate", None)
    assert saved == old and list(saved) == list(old)
    again = path.read_bytes()
    Session.load(str(path)).save()
    assert path.read_bytes() == again


def test_a_version_0_session_is_migrated_and_the_file_left_alone(tmp_path):
    path = tmp_path / "old.pbsession.json"
    path.write_text(json.dumps({"name": "Draft", "sample_rate": 44100,
                                "tracks": [{"file": "a.wav", "id": "t1"}],
                                "regions": [{"track_id": "t1", "start": 0, "end": 100, "queries": ["speech"]}]}))
    before = path.read_bytes()
    s = Session.load(str(path))
    assert s.tracks[0].name == "a" and s.tracks[0].path == str(tmp_path / "a.wav")
    assert s.regions[0].queries == [QuerySpec("speech")]
    assert s.to_dict()["schema_version"] == SCHEMA_VERSION
    assert path.read_bytes() == before


@pytest.mark.parametrize("text, fld, words", [
    ('{"schema_version": %d, "id": "a", "name": "x", "sample_rate": 48000}' % (SCHEMA_VERSION + 1), "schema_version",
     "newer"),
    ('{"schema_version": -1}', "schema_version", "negative"),
    ('{"schema_version": "1"}', "schema_version", "integer"),
    ('{"schema_version": 1, "format": "plugin-bridge-preset"}', "format", "not a session"),
    ('{"schema_version": 0, "tracks": [{"file": 3}]}', "", ""),
    ('{"schema_version": 1, "id": "a", "name": "x", "sample_rate": 48000, "tracks": [{"id": "t", "name": "t"}]}',
     "tracks[0].path", "missing"),
    ('{"schema_version": 1, "id": "a", "name": "x"', "", "not valid JSON"),
    ("\xff\xfe", "", "not UTF-8"),
])
def test_malformed_or_too_new_session_files_give_one_clear_error_and_stay_as_they_were(tmp_path, text, fld, words):
    path = tmp_path / "bad.pbsession.json"
    path.write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    before = path.read_bytes()
    with pytest.raises(SessionError) as e:
        Session.load(str(path))
    assert words in str(e.value) and (not fld or e.value.field == fld)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["bad.pbsession.json"]


def test_a_tampered_session_that_no_longer_validates_is_refused_and_never_overwritten(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    path = proj / "reel.pbsession.json"
    doc = json.loads(open(FIXTURE).read())
    doc["regions"][0]["end"] = 1          # end before start
    doc["tracks"][1]["parent_id"] = "nope"
    path.write_text(json.dumps(doc))
    before = path.read_bytes()
    with pytest.raises(SessionError) as e:
        Session.load(str(path))
    assert e.value.field in ("tracks[1].parent_id", "regions[0].end")
    assert path.read_bytes() == before


def test_a_refused_or_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    proj.mkdir()
    path = proj / "reel.pbsession.json"
    shutil.copy(FIXTURE, path)
    before = path.read_bytes()
    s = Session.load(str(path))
    s.regions[0].end = 0                   # a direct edit the schema refuses
    with pytest.raises(SessionError):
        s.save()
    assert path.read_bytes() == before
    s = Session.load(str(path))
    s.name = "renamed"

    def boom(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(Exception):
        s.save()
    assert path.read_bytes() == before and os.listdir(proj) == ["reel.pbsession.json"]


def test_presets_share_the_document_rules(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    good = {"schema_version": 1, "name": "Mine", "queries": [{"label": "Voice", "text": "speech"}]}
    (user / "new.json").write_text(json.dumps({**good, "name": "New", "schema_version": 5}))
    (user / "broken.json").write_text('{"schema_version": 1, "name": ')
    (user / "v0.json").write_text(json.dumps({"name": "Old", "queries": ["speech", "music"], "format": "wav24"}))
    before = {n: (user / n).read_bytes() for n in os.listdir(user)}
    store = PresetStore(user_dir=str(user), factory=str(tmp_path / "nofactory"))
    entries = {e.name: e for e in store.list()}
    assert "newer than this program" in entries["new"].error
    assert "not valid JSON" in entries["broken"].error
    assert entries["Old"].ok and [q.text for q in entries["Old"].preset.queries] == ["speech", "music"]
    assert {n: (user / n).read_bytes() for n in os.listdir(user)} == before
    with pytest.raises(PresetError) as e:
        load_preset_file(str(user / "new.json"))
    assert e.value.field == "schema_version"
    with pytest.raises(PresetError):
        store.import_file(str(user / "broken.json"))
    assert {n: (user / n).read_bytes() for n in os.listdir(user)} == before


def test_one_document_helper_for_every_versioned_file():
    assert SESSION_DOCUMENT.what == "session" and PRESET_DOCUMENT.what == "preset"
    assert isinstance(LEARNED_DOCUMENT, DocumentFormat)
    with pytest.raises(LearnedQueryError) as e:
        LEARNED_DOCUMENT.check_version(2, "x.safetensors", "version")
    assert e.value.field == "version" and "newer" in str(e.value)
    with pytest.raises(LearnedQueryError):
        LEARNED_DOCUMENT.check_version(0, "x.safetensors", "version")

    calls = []
    fmt = DocumentFormat("thing", 2, SessionError, {0: lambda d: calls.append(0) or {**d, "b": 1},
                                                   1: lambda d: calls.append(1) or {**d, "c": 2}}, tag="t")
    assert fmt.migrate({"a": 0}, "src") == {"a": 0, "b": 1, "c": 2} and calls == [0, 1]
    assert fmt.stamp({"x": 1, "schema_version": 9}) == {"schema_version": 2, "format": "t", "x": 1}
    with pytest.raises(SessionError, match="src: thing field 'schema_version' is 1 and the file cannot be"):
        DocumentFormat("thing", 2, SessionError, {0: dict, 1: lambda d: d["missing"]}).migrate(
            {"schema_version": 1}, "src")


# --------------------------------------------------------------------------------------------------
# job records through the edit API
# --------------------------------------------------------------------------------------------------
def job_session(tmp_path):
    s = Session(name="J")
    h = History(s)
    t = h.add_track(Track(name="a", path=str(tmp_path / "a.wav"), sample_rate=48000, channels=1, frames=48000))
    r = h.add_region(Region(track_id=t.id, start=0, end=4800, queries=[QuerySpec("speech")]))
    return s, h, r


def test_job_records_are_edited_through_history_but_are_no_undo_steps(tmp_path):
    s, h, r = job_session(tmp_path)
    seen = []
    h.subscribe(seen.append)
    label, count = h.undo_label, h.edit_count
    job = h.add_job(make_job(s, r.id))
    assert s.jobs == [job] and job is s.jobs[0]
    h.set_job(job.id, status="running", progress=0.0)
    h.set_job(job.id, notify=False, progress=0.5)
    h.set_job(job.id, status="done", progress=1.0, stem_ids=["s1"], finished="2026-01-01T00:00:00+00:00")
    assert (job.status, job.progress, job.stem_ids) == ("done", 1.0, ["s1"])
    assert [c.action for c in seen] == ["state"] * 3 and [c.kind for c in seen] == ["job.add"] + ["job.state"] * 2
    assert h.undo_label == label and h.edit_count == count and not h.can_redo
    h.undo()                              # undoes the region, never the job record
    assert s.jobs == [job]
    assert not h.retry_job(job.id)
    h.set_job(job.id, status="failed", error="boom")
    assert h.retry_job(job.id) and (job.status, job.error, job.progress, job.finished) == ("pending", None, 0.0, None)


def test_bad_job_edits_are_refused_and_change_nothing(tmp_path):
    s, h, r = job_session(tmp_path)
    job = h.add_job(make_job(s, r.id))
    before = dataclasses.replace(job)
    for bad, fld in ((dict(status="paused"), "status"), (dict(progress=2), "progress"), (dict(region=1), "region"),
                     (dict(queries=[QuerySpec("")]), "queries[0].text"), (dict(stem_ids=[1]), "stem_ids[0]")):
        with pytest.raises(SessionError) as e:
            h.set_job(job.id, **bad)
        assert e.value.field == fld
    assert job == before
    with pytest.raises(SessionError):
        h.add_job(job)                     # same id twice
    with pytest.raises(SessionError):
        h.add_job(JobRecord(region_id="nope"))
    assert s.jobs == [job]


def test_job_state_changes_do_not_trigger_autosaves(tmp_path):
    s, h, r = job_session(tmp_path)
    a = Autosaver(h, every_edits=1, directory=str(tmp_path / "auto"))
    job = h.add_job(make_job(s, r.id))
    for k in range(5):
        h.set_job(job.id, progress=k / 10)
    assert not os.path.exists(a.path)
    h.rename_session("K")
    assert os.path.exists(a.path)
    a.close()
