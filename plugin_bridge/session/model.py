"""The session model: tracks, regions, queries, stems and jobs, with versioned JSON (de)serialisation.

Conventions (stable API; extend only):

* Every object has a stable string id (``uuid4().hex``), never reused.
* All positions and lengths are integer sample frames **at the session rate** (``Session.sample_rate``).
  ``Track.offset`` is where frame 0 of the track's file sits on the timeline.  A track whose file has
  another rate is *flagged* (``Track.rate_mismatch``); its frames map by time
  (``Session.session_to_file_frames``).
* In memory every path is absolute.  On disk (``Session.save``) paths are stored relative to the
  folder of the session file, with forward slashes, so a moved or copied session folder still opens.
  Paths that cannot be made relative (another drive) stay absolute.
* The shape is declared once, on the dataclasses below (``shape.shaped`` adds what a type alone does
  not say); the dict form, the JSON schema and the undo history's edit checks derive from them.
* ``schema_version`` is written to every file; ``MIGRATIONS[v]`` turns a version ``v`` dict into
  version ``v + 1`` (``SESSION_DOCUMENT``, a ``document.DocumentFormat``).  Files from a newer program
  are refused with a clear error.
* Loading validates strictly (JSON schema + references + sample ranges) and reports the offending
  field by its path, e.g. ``regions[2].end``.  Every failure is a ``SessionError`` (a ``ConfigError``).
  Loading only reads the JSON file; it never touches audio and never rewrites the session file.
* ``save`` is atomic (temporary file in the same folder, fsync, ``os.replace``).
"""
from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from plugin_bridge.document import DocumentFormat
from plugin_bridge.engine.chunker import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP
from plugin_bridge.errors import ConfigError
from plugin_bridge.fileio import atomic_write_text as write_text_atomically
from plugin_bridge.session import shape
from plugin_bridge.session.shape import shaped

__all__ = [
    "SCHEMA_VERSION", "SESSION_SUFFIX", "TRACK_KINDS", "JOB_STATES", "JOB_KINDS", "SessionError",
    "QuerySpec", "Track", "Region", "Stem", "JobRecord", "Session",
    "new_id", "now_iso", "atomic_write_text", "MIGRATIONS", "SESSION_SCHEMA", "SESSION_DOCUMENT",
    "DEFAULT_SETTINGS", "TRACK_FILE_FACTS",
]

SCHEMA_VERSION = 2
SESSION_SUFFIX = ".pbsession.json"
TRACK_KINDS = ("source", "stem", "residual")
#: the ``Track`` fields that cache what probing its file found (None: not probed yet)
TRACK_FILE_FACTS = ("sample_rate", "channels", "frames")
JOB_STATES = ("pending", "running", "done", "failed", "cancelled")
#: what a job does: separate a region (``region_id``), re-render a track's plugin chain (``track_id``),
#: learn a query from clips (the request in ``settings``); see ``plugin_bridge.session.jobs``
JOB_KINDS = ("separate", "rerender", "learn")

#: Session-wide defaults for rendering (a region's preset overrides them per job).
DEFAULT_SETTINGS: dict[str, Any] = {
    "context_seconds": 1.0,
    "chunk_seconds": DEFAULT_CHUNK_SECONDS,
    "overlap": DEFAULT_OVERLAP,
    "backend": "auto",
    "device": "auto",
    "format": "wav24",
    "name_template": "{session}_{track}_{region}_{label}",
    "residual": "keep",
    "residual_label": "Residual",
}


class SessionError(ConfigError):
    """A session file or session edit is malformed.  ``field`` names the offending field (may be '')."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


def new_id() -> str:
    return uuid.uuid4().hex


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------------
# the session's shape: declared once here; dict form, JSON schema and edit checks derive from it
# (``plugin_bridge.session.shape``)
# --------------------------------------------------------------------------------------------------
_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
_COLOUR = {"pattern": "^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$"}
_FRAME = {"minimum": 0, "maximum": 2 ** 53}
_CHAIN = {"items": {"type": "object", "required": ["type"],
                    "properties": {"type": {"type": "string", "minLength": 1}}}}
_SETTINGS = {
    "properties": {
        "context_seconds": {"type": "number", "minimum": 0, "maximum": 60},
        "chunk_seconds": {"type": "number", "minimum": 0.25, "maximum": 600},
        "overlap": {"type": "number", "minimum": 0, "maximum": 0.75},
        "backend": {"enum": ["auto", "torch", "onnx"]},
        "device": {"enum": ["auto", "cpu", "cuda"]},
        "format": {"enum": ["wav16", "wav24", "wav32f", "flac16", "flac24"]},
        "name_template": {"type": "string", "minLength": 1},
        "residual": {"enum": ["keep", "discard"]},
        "residual_label": {"type": "string"},
        "stems_dir": {"type": "string"},
    },
}


@dataclass
class QuerySpec:
    text: str = shaped(schema={"minLength": 1, "pattern": r"\S"})
    negative: str | None = None
    label: str = ""
    colour: str | None = shaped(None, schema=_COLOUR)
    token: str = ""                 # naming token used in stem file names ({label} falls back to it)
    preset: str | None = None       # name of the preset this query came from, if any
    chain: list[dict] = shaped(factory=list, schema=_CHAIN)  # plugin chain applied to this query's stem

    @property
    def display(self) -> str:
        return self.label or self.token or self.text


@dataclass
class Track:
    name: str
    path: str = shaped(path=True, schema={"minLength": 1})  # absolute in memory; relative on disk
    id: str = shaped(factory=new_id, schema=_ID)
    gain_db: float = shaped(0.0, schema={"minimum": -200, "maximum": 60})
    mute: bool = False
    solo: bool = False
    colour: str | None = shaped(None, schema=_COLOUR)
    kind: str = shaped("source", schema={"enum": list(TRACK_KINDS)})  # "source" | "stem" | "residual"
    parent_id: str | None = None     # the source track of a stem/residual track
    offset: int = shaped(0, schema=_FRAME)  # timeline position (session frames) of the file's first frame
    chain: list[dict] = shaped(factory=list, schema=_CHAIN)
    sample_rate: int | None = shaped(None, schema={"minimum": 1, "maximum": 1536000})  # probed file info
    channels: int | None = shaped(None, schema={"minimum": 1, "maximum": 1024})  # (cached; None: never probed)
    frames: int | None = shaped(None, schema=_FRAME)  # file frames at the file's own rate
    extra: dict = shaped(factory=dict)

    def rate_mismatch(self, session_rate: int) -> bool:
        return self.sample_rate is not None and self.sample_rate != session_rate


@dataclass
class Region:
    track_id: str
    start: int = shaped(schema=_FRAME)  # session frames, inclusive
    end: int = shaped(schema=_FRAME)    # session frames, exclusive
    id: str = shaped(factory=new_id, schema=_ID)
    name: str = ""
    queries: list[QuerySpec] = shaped(factory=list)
    preset: str | None = None        # preset name last applied to this region
    extra: dict = shaped(factory=dict)

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class Stem:
    region_id: str
    # index into the job's queries, or "residual"
    query_index: int | str = shaped(schema={"oneOf": [{"type": "integer", "minimum": 0}, {"const": "residual"}]})
    path: str = shaped(path=True, schema={"minLength": 1})
    id: str = shaped(factory=new_id, schema=_ID)
    track_id: str | None = None
    settings: dict = shaped(factory=dict)
    created: str = shaped(factory=now_iso, missing="")
    complete: bool = True
    job_id: str | None = None
    label: str = ""


@dataclass
class JobRecord:
    """Persisted state of one job of the queue (``plugin_bridge.session.jobs``): a separation of a region
    by queries, a chain re-render of a track, or the learning of a query (``kind``, one of JOB_KINDS)."""

    region_id: str | None = None     # the region a separation renders
    queries: list[QuerySpec] = shaped(factory=list)
    id: str = shaped(factory=new_id, schema=_ID)
    kind: str = shaped("separate", schema={"enum": list(JOB_KINDS)})
    track_id: str | None = None      # the track a re-render renders
    status: str = shaped("pending", schema={"enum": list(JOB_STATES)})
    settings: dict = shaped(factory=dict, schema=_SETTINGS)  # render settings; a learn job's request
    preset: str | None = None
    error: str | None = None
    progress: float = shaped(0.0, schema={"minimum": 0, "maximum": 1})
    stem_ids: list[str] = shaped(factory=list)
    created: str = shaped(factory=now_iso, missing="")
    finished: str | None = None


@dataclass
class Session:
    name: str = shaped("Untitled", required=True)
    sample_rate: int = shaped(48000, required=True, schema={"minimum": 8000, "maximum": 192000})
    settings: dict = shaped(factory=dict, schema=_SETTINGS)
    tracks: list[Track] = shaped(factory=list)
    regions: list[Region] = shaped(factory=list)
    stems: list[Stem] = shaped(factory=list)
    jobs: list[JobRecord] = shaped(factory=list)
    id: str = shaped(factory=new_id, schema=_ID)
    extra: dict = shaped(factory=dict)
    # runtime only (never serialised)
    version: int = shaped(SCHEMA_VERSION, runtime=True)  # schema version of the data (SCHEMA_VERSION in memory)
    path: str | None = shaped(None, runtime=True, compare=False, repr=False)
    lock: Any = shaped(factory=threading.RLock, runtime=True, compare=False, repr=False)

    # -- lookups ----------------------------------------------------------------------------------
    def track(self, track_id: str) -> Track:
        for t in self.tracks:
            if t.id == track_id:
                return t
        raise SessionError(f"no track with id {track_id!r}", "track_id")

    def track_by_name(self, name: str) -> Track:
        hits = [t for t in self.tracks if t.name == name]
        if not hits:
            hits = [t for t in self.tracks if t.name.lower() == name.lower()]
        if len(hits) != 1:
            names = ", ".join(repr(t.name) for t in self.tracks) or "(none)"
            what = "no" if not hits else "more than one"
            raise SessionError(f"{what} track named {name!r}; tracks: {names}", "track")
        return hits[0]

    def region(self, region_id: str) -> Region:
        for r in self.regions:
            if r.id == region_id:
                return r
        raise SessionError(f"no region with id {region_id!r}", "region_id")

    def stem(self, stem_id: str) -> Stem:
        for s in self.stems:
            if s.id == stem_id:
                return s
        raise SessionError(f"no stem with id {stem_id!r}", "stem_id")

    def job(self, job_id: str) -> JobRecord:
        for j in self.jobs:
            if j.id == job_id:
                return j
        raise SessionError(f"no job with id {job_id!r}", "job_id")

    def regions_on(self, track_id: str) -> list[Region]:
        return [r for r in self.regions if r.track_id == track_id]

    def children(self, track_id: str) -> list[Track]:
        return [t for t in self.tracks if t.parent_id == track_id]

    def setting(self, key: str) -> Any:
        return self.settings.get(key, DEFAULT_SETTINGS.get(key))

    @property
    def folder(self) -> str | None:
        return os.path.dirname(os.path.abspath(self.path)) if self.path else None

    @property
    def stems_dir(self) -> str:
        """``<session>_stems/`` next to the session file (or an explicit ``settings['stems_dir']``)."""
        explicit = self.settings.get("stems_dir")
        if explicit:
            return explicit if os.path.isabs(explicit) or not self.folder else os.path.join(self.folder, explicit)
        if not self.path:
            raise SessionError("save the session first: stems are written next to the session file", "path")
        base = os.path.basename(self.path)
        if base.endswith(SESSION_SUFFIX):
            base = base[: -len(SESSION_SUFFIX)]
        else:
            base = os.path.splitext(base)[0]
        return os.path.join(self.folder, base + "_stems")

    # -- time mapping -----------------------------------------------------------------------------
    def session_to_file_frames(self, track: Track, start: int, end: int) -> tuple[int, int]:
        """Session-timeline frames [start, end) -> frames of ``track``'s file (mapped by time)."""
        a, b = start - track.offset, end - track.offset
        rate = track.sample_rate or self.sample_rate
        if rate != self.sample_rate:
            a = int(round(a * rate / self.sample_rate))
            b = int(round(b * rate / self.sample_rate))
        return a, b

    def file_to_session_frames(self, track: Track, n: int) -> int:
        rate = track.sample_rate or self.sample_rate
        return n if rate == self.sample_rate else int(round(n * self.sample_rate / rate))

    def track_end(self, track: Track) -> int | None:
        """Timeline frame just after the track's audio (None if the file length is unknown)."""
        if track.frames is None:
            return None
        return track.offset + self.file_to_session_frames(track, track.frames)

    def mismatched_tracks(self) -> list[Track]:
        return [t for t in self.tracks if t.rate_mismatch(self.sample_rate)]

    # -- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self, base_dir: str | None = None) -> dict:
        """JSON-ready dict; paths relative to ``base_dir`` when given (else absolute)."""
        with self.lock:
            return SESSION_DOCUMENT.stamp(shape.to_dict(self, base_dir))

    @classmethod
    def from_dict(cls, data: Any, base_dir: str | None = None, source: str = "session") -> "Session":
        """Validate (after migrating older versions) and build a Session.  Raises ``SessionError``."""
        data = SESSION_DOCUMENT.migrate(data, source)
        validate(data, source)
        return shape.from_dict(cls, data, base_dir)  # reads the dataclass fields; the header is not one

    def to_json(self, base_dir: str | None = None) -> str:
        return SESSION_DOCUMENT.dumps(self.to_dict(base_dir))

    def save(self, path: str | None = None) -> str:
        """Write the session atomically to ``path`` (default: its current path); returns the path."""
        path = path or self.path
        if not path:
            raise SessionError("no file name given for the session", "path")
        path = os.path.abspath(path)
        data = self.to_dict(os.path.dirname(path))
        validate(data, os.path.basename(path))  # never write a session that would not open again
        SESSION_DOCUMENT.write(path, data)
        self.path = path
        return path

    @classmethod
    def load(cls, path: str) -> "Session":
        """Read a ``*.pbsession.json`` file.  Jobs that were running when the program stopped are
        re-queued as pending.  Never modifies any file."""
        path = os.path.abspath(path)
        data = SESSION_DOCUMENT.read(path)
        s = cls.from_dict(data, os.path.dirname(path), source=os.path.basename(path))
        s.path = path
        for j in s.jobs:
            if j.status == "running":
                j.status, j.progress = "pending", 0.0
        return s

    def copy(self) -> "Session":
        s = Session.from_dict(self.to_dict())
        s.path = self.path
        return s


# --------------------------------------------------------------------------------------------------
# files, schema + validation
# --------------------------------------------------------------------------------------------------
def atomic_write_text(path: str, text: str) -> None:
    write_text_atomically(path, text, suffix=".json")


SESSION_FORMAT = "plugin-bridge-session"

SESSION_SCHEMA: dict = shape.object_schema(Session)
SESSION_SCHEMA["properties"] = {"schema_version": {"type": "integer", "const": SCHEMA_VERSION},
                                "format": {"const": SESSION_FORMAT}, **SESSION_SCHEMA["properties"]}
SESSION_SCHEMA["required"] = ["schema_version", *SESSION_SCHEMA["required"]]
SESSION_SCHEMA = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "plugin-bridge session",
                  **SESSION_SCHEMA}


def _get_validator():
    return shape.cached_validator(SESSION_SCHEMA)


def validate(data: Any, source: str = "session") -> None:
    """Strict validation of a current-version session dict; raises ``SessionError`` naming the field."""
    if not isinstance(data, dict):
        raise SessionError(f"{source}: a session file must hold a JSON object, not {type(data).__name__}")
    bad = shape.first_non_finite(data)
    if bad is not None:
        fld = shape.field_path(bad)
        raise SessionError(f"{source}: session field '{fld}' is not a finite number", fld)
    err = shape.schema_error(_get_validator(), data, source, "session", SessionError)
    if err:
        raise err

    def fail(fld: str, msg: str):
        raise SessionError(f"{source}: session field '{fld}' {msg}", fld)

    track_ids: dict[str, int] = {}
    for i, t in enumerate(data.get("tracks", [])):
        if t["id"] in track_ids:
            fail(f"tracks[{i}].id", f"repeats the id of tracks[{track_ids[t['id']]}]")
        track_ids[t["id"]] = i
    for i, t in enumerate(data.get("tracks", [])):
        kind = t.get("kind", "source")
        pid = t.get("parent_id")
        if pid is not None:
            if pid not in track_ids:
                fail(f"tracks[{i}].parent_id", f"refers to a track id {pid!r} that does not exist")
            if pid == t["id"]:
                fail(f"tracks[{i}].parent_id", "refers to the track itself")
        if kind == "source" and pid is not None:
            fail(f"tracks[{i}].parent_id", "must be null for a source track")
    region_ids: dict[str, int] = {}
    for i, r in enumerate(data.get("regions", [])):
        if r["id"] in region_ids:
            fail(f"regions[{i}].id", f"repeats the id of regions[{region_ids[r['id']]}]")
        region_ids[r["id"]] = i
        if r["track_id"] not in track_ids:
            fail(f"regions[{i}].track_id", f"refers to a track id {r['track_id']!r} that does not exist")
        if r["end"] <= r["start"]:
            fail(f"regions[{i}].end", f"({r['end']}) must be greater than start ({r['start']})")
    stem_ids: dict[str, int] = {}
    for i, s in enumerate(data.get("stems", [])):
        if s["id"] in stem_ids:
            fail(f"stems[{i}].id", f"repeats the id of stems[{stem_ids[s['id']]}]")
        stem_ids[s["id"]] = i
        tid = s.get("track_id")
        if tid is not None and tid not in track_ids:
            fail(f"stems[{i}].track_id", f"refers to a track id {tid!r} that does not exist")
    job_ids: set[str] = set()
    for i, j in enumerate(data.get("jobs", [])):
        if j["id"] in job_ids:
            fail(f"jobs[{i}].id", "repeats the id of another job")
        job_ids.add(j["id"])
        needs = {"separate": "region_id", "rerender": "track_id"}.get(j.get("kind", "separate"))
        if needs and j.get(needs) is None:
            fail(f"jobs[{i}].{needs}", f"is missing: a {j.get('kind', 'separate')} job needs one")


# --------------------------------------------------------------------------------------------------
# migrations
# --------------------------------------------------------------------------------------------------
def _migrate_v0(d: dict) -> dict:
    """Version 0 (pre-release drafts, no ``schema_version``): tracks named their audio ``file``,
    regions held plain query strings and had no ids; there was no session id."""
    d = dict(d)
    d.setdefault("id", new_id())
    d.setdefault("name", "Untitled")
    tracks = []
    for t in d.get("tracks", []) if isinstance(d.get("tracks"), list) else []:
        if isinstance(t, dict):
            t = dict(t)
            if "file" in t and "path" not in t:
                t["path"] = t.pop("file")
            t.setdefault("id", new_id())
            t.setdefault("name", os.path.splitext(os.path.basename(str(t.get("path", ""))))[0] or "Track")
        tracks.append(t)
    if isinstance(d.get("tracks", []), list):
        d["tracks"] = tracks
    regions = []
    for r in d.get("regions", []) if isinstance(d.get("regions"), list) else []:
        if isinstance(r, dict):
            r = dict(r)
            r.setdefault("id", new_id())
            qs = r.get("queries", [])
            if isinstance(qs, list):
                r["queries"] = [{"text": q} if isinstance(q, str) else q for q in qs]
        regions.append(r)
    if isinstance(d.get("regions", []), list):
        d["regions"] = regions
    d["schema_version"] = 1
    return d


def _migrate_v1(d: dict) -> dict:
    """Version 1: a job had no ``kind``; a chain re-render kept it and its track in ``settings["kind"]``
    and ``settings["track_id"]``, with ``region_id`` "".  Version 2 has the fields ``kind`` and ``track_id``
    and no region for a job that renders none."""
    d = dict(d)
    jobs = []
    for j in d.get("jobs", []) if isinstance(d.get("jobs"), list) else []:
        if isinstance(j, dict):
            j = dict(j)
            st = j.get("settings")
            if isinstance(st, dict) and ("kind" in st or "track_id" in st):
                st = dict(st)
                for key in ("kind", "track_id"):
                    if key in st:
                        j[key] = st.pop(key)
                j["settings"] = st
            if j.get("region_id") == "":
                j["region_id"] = None
        jobs.append(j)
    if isinstance(d.get("jobs", []), list) and "jobs" in d:
        d["jobs"] = jobs
    d["schema_version"] = 2
    return d


#: version -> function turning a dict of that version into the next version
MIGRATIONS: dict[int, Callable[[dict], dict]] = {0: _migrate_v0, 1: _migrate_v1}

SESSION_DOCUMENT = DocumentFormat("session", SCHEMA_VERSION, SessionError, MIGRATIONS, tag=SESSION_FORMAT)
