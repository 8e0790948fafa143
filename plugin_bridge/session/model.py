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
* ``schema_version`` is written to every file; ``MIGRATIONS[v]`` turns a version ``v`` dict into
  version ``v + 1``.  Files from a newer program are refused with a clear error.
* Loading validates strictly (JSON schema + references + sample ranges) and reports the offending
  field by its path, e.g. ``regions[2].end``.  Every failure is a ``SessionError`` (a ``ConfigError``).
  Loading only reads the JSON file; it never touches audio and never rewrites the session file.
* ``save`` is atomic (temporary file in the same folder, fsync, ``os.replace``).
"""
from __future__ import annotations

import copy
import json
import math
import os
import threading
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Callable

from plugin_bridge.engine.chunker import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP
from plugin_bridge.errors import ConfigError

__all__ = [
    "SCHEMA_VERSION", "SESSION_SUFFIX", "TRACK_KINDS", "JOB_STATES", "SessionError",
    "QuerySpec", "Track", "Region", "Stem", "JobRecord", "Session",
    "new_id", "now_iso", "atomic_write_text", "MIGRATIONS", "SESSION_SCHEMA", "DEFAULT_SETTINGS",
]

SCHEMA_VERSION = 1
SESSION_SUFFIX = ".pbsession.json"
TRACK_KINDS = ("source", "stem", "residual")
JOB_STATES = ("pending", "running", "done", "failed", "cancelled")

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
# dataclasses
# --------------------------------------------------------------------------------------------------
@dataclass
class QuerySpec:
    text: str
    negative: str | None = None
    label: str = ""
    colour: str | None = None
    token: str = ""                 # naming token used in stem file names ({label} falls back to it)
    preset: str | None = None       # name of the preset this query came from, if any
    chain: list[dict] = field(default_factory=list)  # plugin chain applied to this query's stem

    @property
    def display(self) -> str:
        return self.label or self.token or self.text


@dataclass
class Track:
    name: str
    path: str                        # absolute in memory; relative on disk
    id: str = field(default_factory=new_id)
    gain_db: float = 0.0
    mute: bool = False
    solo: bool = False
    colour: str | None = None
    kind: str = "source"             # "source" | "stem" | "residual"
    parent_id: str | None = None     # the source track of a stem/residual track
    offset: int = 0                  # timeline position (session frames) of the file's first frame
    chain: list[dict] = field(default_factory=list)
    sample_rate: int | None = None   # probed file info (cached; None if never probed)
    channels: int | None = None
    frames: int | None = None        # file frames at the file's own rate
    extra: dict = field(default_factory=dict)

    def rate_mismatch(self, session_rate: int) -> bool:
        return self.sample_rate is not None and self.sample_rate != session_rate


@dataclass
class Region:
    track_id: str
    start: int                       # session frames, inclusive
    end: int                         # session frames, exclusive
    id: str = field(default_factory=new_id)
    name: str = ""
    queries: list[QuerySpec] = field(default_factory=list)
    preset: str | None = None        # preset name last applied to this region
    extra: dict = field(default_factory=dict)

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class Stem:
    region_id: str
    query_index: int | str           # index into the job's queries, or "residual"
    path: str
    id: str = field(default_factory=new_id)
    track_id: str | None = None
    settings: dict = field(default_factory=dict)
    created: str = field(default_factory=now_iso)
    complete: bool = True
    job_id: str | None = None
    label: str = ""


@dataclass
class JobRecord:
    """Persisted state of one render job (region x queries); see ``plugin_bridge.session.jobs``."""

    region_id: str
    queries: list[QuerySpec] = field(default_factory=list)
    id: str = field(default_factory=new_id)
    status: str = "pending"          # one of JOB_STATES
    settings: dict = field(default_factory=dict)
    preset: str | None = None
    error: str | None = None
    progress: float = 0.0
    stem_ids: list[str] = field(default_factory=list)
    created: str = field(default_factory=now_iso)
    finished: str | None = None


@dataclass
class Session:
    name: str = "Untitled"
    sample_rate: int = 48000
    tracks: list[Track] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    stems: list[Stem] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    version: int = SCHEMA_VERSION    # schema version of the data (always SCHEMA_VERSION in memory)
    jobs: list[JobRecord] = field(default_factory=list)
    id: str = field(default_factory=new_id)
    extra: dict = field(default_factory=dict)
    # runtime only (never serialised)
    path: str | None = field(default=None, compare=False, repr=False)
    lock: Any = field(default_factory=threading.RLock, compare=False, repr=False)

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
            return {
                "schema_version": SCHEMA_VERSION,
                "format": "plugin-bridge-session",
                "id": self.id,
                "name": self.name,
                "sample_rate": self.sample_rate,
                "settings": copy.deepcopy(self.settings),
                "tracks": [_track_to_dict(t, base_dir) for t in self.tracks],
                "regions": [_region_to_dict(r) for r in self.regions],
                "stems": [_stem_to_dict(s, base_dir) for s in self.stems],
                "jobs": [_job_to_dict(j) for j in self.jobs],
                "extra": copy.deepcopy(self.extra),
            }

    @classmethod
    def from_dict(cls, data: Any, base_dir: str | None = None, source: str = "session") -> "Session":
        """Validate (after migrating older versions) and build a Session.  Raises ``SessionError``."""
        data = migrate(data, source)
        validate(data, source)
        s = cls(
            id=data["id"], name=data["name"], sample_rate=int(data["sample_rate"]),
            settings=copy.deepcopy(data.get("settings", {})),
            tracks=[_track_from_dict(d, base_dir) for d in data.get("tracks", [])],
            regions=[_region_from_dict(d) for d in data.get("regions", [])],
            stems=[_stem_from_dict(d, base_dir) for d in data.get("stems", [])],
            jobs=[_job_from_dict(d) for d in data.get("jobs", [])],
            extra=copy.deepcopy(data.get("extra", {})),
        )
        return s

    def to_json(self, base_dir: str | None = None) -> str:
        return json.dumps(self.to_dict(base_dir), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def save(self, path: str | None = None) -> str:
        """Write the session atomically to ``path`` (default: its current path); returns the path."""
        path = path or self.path
        if not path:
            raise SessionError("no file name given for the session", "path")
        path = os.path.abspath(path)
        data = self.to_dict(os.path.dirname(path))
        validate(data, os.path.basename(path))  # never write a session that would not open again
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        atomic_write_text(path, text)
        self.path = path
        return path

    @classmethod
    def load(cls, path: str) -> "Session":
        """Read a ``*.pbsession.json`` file.  Jobs that were running when the program stopped are
        re-queued as pending.  Never modifies any file."""
        path = os.path.abspath(path)
        data = read_json(path, "session")
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
# files
# --------------------------------------------------------------------------------------------------
def atomic_write_text(path: str, text: str) -> None:
    from plugin_bridge.fileio import atomic_write_text as _write

    _write(path, text, suffix=".json")


def read_json(path: str, what: str = "file") -> Any:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise SessionError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise SessionError(f"{path}: is a folder, not a {what} file") from None
    except OSError as exc:
        raise SessionError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SessionError(f"{path}: not a {what} file (not UTF-8 text at byte {exc.start})") from None
    try:
        # NaN/Infinity parse here and are reported with their field by validation
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise SessionError(f"{path}: not valid JSON{where}: {getattr(exc, 'msg', exc)}") from None


# --------------------------------------------------------------------------------------------------
# path helpers
# --------------------------------------------------------------------------------------------------
def _rel(path: str, base_dir: str | None) -> str:
    if not path or base_dir is None:
        return path
    try:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(base_dir))
    except ValueError:  # other drive on Windows
        return path
    return rel.replace(os.sep, "/")


def _abs(path: str, base_dir: str | None) -> str:
    if not path:
        return path
    p = path.replace("/", os.sep) if os.sep != "/" else path
    if os.path.isabs(p) or base_dir is None:
        return os.path.normpath(p) if os.path.isabs(p) else p
    return os.path.normpath(os.path.join(base_dir, p))


# --------------------------------------------------------------------------------------------------
# per-object (de)serialisation
# --------------------------------------------------------------------------------------------------
def _query_to_dict(q: QuerySpec) -> dict:
    return {"text": q.text, "negative": q.negative, "label": q.label, "colour": q.colour, "token": q.token,
            "preset": q.preset, "chain": copy.deepcopy(q.chain)}


def _query_from_dict(d: dict) -> QuerySpec:
    return QuerySpec(text=d["text"], negative=d.get("negative"), label=d.get("label", ""),
                     colour=d.get("colour"), token=d.get("token", ""), preset=d.get("preset"),
                     chain=copy.deepcopy(d.get("chain", [])))


def _track_to_dict(t: Track, base: str | None) -> dict:
    return {"id": t.id, "name": t.name, "path": _rel(t.path, base), "gain_db": t.gain_db, "mute": t.mute,
            "solo": t.solo, "colour": t.colour, "kind": t.kind, "parent_id": t.parent_id, "offset": t.offset,
            "chain": copy.deepcopy(t.chain), "sample_rate": t.sample_rate, "channels": t.channels,
            "frames": t.frames, "extra": copy.deepcopy(t.extra)}


def _track_from_dict(d: dict, base: str | None) -> Track:
    return Track(id=d["id"], name=d["name"], path=_abs(d["path"], base), gain_db=float(d.get("gain_db", 0.0)),
                 mute=d.get("mute", False), solo=d.get("solo", False), colour=d.get("colour"),
                 kind=d.get("kind", "source"), parent_id=d.get("parent_id"), offset=int(d.get("offset", 0)),
                 chain=copy.deepcopy(d.get("chain", [])), sample_rate=_int_or_none(d.get("sample_rate")),
                 channels=_int_or_none(d.get("channels")), frames=_int_or_none(d.get("frames")),
                 extra=copy.deepcopy(d.get("extra", {})))


def _region_to_dict(r: Region) -> dict:
    return {"id": r.id, "track_id": r.track_id, "start": r.start, "end": r.end, "name": r.name,
            "queries": [_query_to_dict(q) for q in r.queries], "preset": r.preset, "extra": copy.deepcopy(r.extra)}


def _region_from_dict(d: dict) -> Region:
    return Region(id=d["id"], track_id=d["track_id"], start=int(d["start"]), end=int(d["end"]),
                  name=d.get("name", ""), queries=[_query_from_dict(q) for q in d.get("queries", [])],
                  preset=d.get("preset"), extra=copy.deepcopy(d.get("extra", {})))


def _stem_to_dict(s: Stem, base: str | None) -> dict:
    return {"id": s.id, "region_id": s.region_id, "query_index": s.query_index, "path": _rel(s.path, base),
            "track_id": s.track_id, "settings": copy.deepcopy(s.settings), "created": s.created,
            "complete": s.complete, "job_id": s.job_id, "label": s.label}


def _stem_from_dict(d: dict, base: str | None) -> Stem:
    qi = d["query_index"]
    return Stem(id=d["id"], region_id=d["region_id"], query_index=qi if isinstance(qi, str) else int(qi),
                path=_abs(d["path"], base), track_id=d.get("track_id"), settings=copy.deepcopy(d.get("settings", {})),
                created=d.get("created", ""), complete=d.get("complete", True), job_id=d.get("job_id"),
                label=d.get("label", ""))


def _job_to_dict(j: JobRecord) -> dict:
    return {"id": j.id, "region_id": j.region_id, "queries": [_query_to_dict(q) for q in j.queries],
            "status": j.status, "settings": copy.deepcopy(j.settings), "preset": j.preset, "error": j.error,
            "progress": j.progress, "stem_ids": list(j.stem_ids), "created": j.created, "finished": j.finished}


def _job_from_dict(d: dict) -> JobRecord:
    return JobRecord(id=d["id"], region_id=d["region_id"], queries=[_query_from_dict(q) for q in d.get("queries", [])],
                     status=d.get("status", "pending"), settings=copy.deepcopy(d.get("settings", {})),
                     preset=d.get("preset"), error=d.get("error"), progress=float(d.get("progress", 0.0)),
                     stem_ids=list(d.get("stem_ids", [])), created=d.get("created", ""), finished=d.get("finished"))


def _int_or_none(v):
    return None if v is None else int(v)


# --------------------------------------------------------------------------------------------------
# schema + validation
# --------------------------------------------------------------------------------------------------
_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
_OPT_STR = {"type": ["string", "null"]}
_COLOUR = {"type": ["string", "null"], "pattern": "^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$"}
_FRAME = {"type": "integer", "minimum": 0, "maximum": 2 ** 53}
_OPT_FRAME = {"type": ["integer", "null"], "minimum": 0, "maximum": 2 ** 53}
_CHAIN = {"type": "array", "items": {
    "type": "object", "required": ["type"],
    "properties": {"type": {"type": "string", "minLength": 1}}}}

_QUERY = {
    "type": "object", "additionalProperties": False, "required": ["text"],
    "properties": {
        "text": {"type": "string", "minLength": 1, "pattern": r"\S"},
        "negative": _OPT_STR, "label": {"type": "string"}, "colour": _COLOUR, "token": {"type": "string"},
        "preset": _OPT_STR, "chain": _CHAIN,
    },
}

_SETTINGS = {
    "type": "object",
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

SESSION_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "plugin-bridge session",
    "type": "object", "additionalProperties": False,
    "required": ["schema_version", "id", "name", "sample_rate"],
    "properties": {
        "schema_version": {"type": "integer", "const": SCHEMA_VERSION},
        "format": {"const": "plugin-bridge-session"},
        "id": _ID,
        "name": {"type": "string"},
        "sample_rate": {"type": "integer", "minimum": 8000, "maximum": 192000},
        "settings": _SETTINGS,
        "tracks": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["id", "name", "path"],
            "properties": {
                "id": _ID, "name": {"type": "string"}, "path": {"type": "string", "minLength": 1},
                "gain_db": {"type": "number", "minimum": -200, "maximum": 60},
                "mute": {"type": "boolean"}, "solo": {"type": "boolean"}, "colour": _COLOUR,
                "kind": {"enum": list(TRACK_KINDS)}, "parent_id": {"type": ["string", "null"]},
                "offset": _FRAME, "chain": _CHAIN,
                "sample_rate": {"type": ["integer", "null"], "minimum": 1, "maximum": 1536000},
                "channels": {"type": ["integer", "null"], "minimum": 1, "maximum": 1024},
                "frames": _OPT_FRAME, "extra": {"type": "object"},
            },
        }},
        "regions": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["id", "track_id", "start", "end"],
            "properties": {
                "id": _ID, "track_id": {"type": "string"}, "start": _FRAME, "end": _FRAME,
                "name": {"type": "string"}, "queries": {"type": "array", "items": _QUERY},
                "preset": _OPT_STR, "extra": {"type": "object"},
            },
        }},
        "stems": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["id", "region_id", "query_index", "path"],
            "properties": {
                "id": _ID, "region_id": {"type": "string"},
                "query_index": {"oneOf": [{"type": "integer", "minimum": 0}, {"const": "residual"}]},
                "path": {"type": "string", "minLength": 1}, "track_id": {"type": ["string", "null"]},
                "settings": {"type": "object"}, "created": {"type": "string"}, "complete": {"type": "boolean"},
                "job_id": {"type": ["string", "null"]}, "label": {"type": "string"},
            },
        }},
        "jobs": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["id", "region_id"],
            "properties": {
                "id": _ID, "region_id": {"type": "string"}, "queries": {"type": "array", "items": _QUERY},
                "status": {"enum": list(JOB_STATES)}, "settings": _SETTINGS, "preset": _OPT_STR,
                "error": _OPT_STR, "progress": {"type": "number", "minimum": 0, "maximum": 1},
                "stem_ids": {"type": "array", "items": {"type": "string"}}, "created": {"type": "string"},
                "finished": _OPT_STR,
            },
        }},
        "extra": {"type": "object"},
    },
}

_VALIDATORS: dict[int, Any] = {}


def cached_validator(schema: dict):
    """One compiled jsonschema validator per schema object (sessions, presets)."""
    v = _VALIDATORS.get(id(schema))
    if v is None:
        import jsonschema

        v = _VALIDATORS[id(schema)] = jsonschema.Draft202012Validator(schema)
    return v


def _get_validator():
    return cached_validator(SESSION_SCHEMA)


def field_path(parts) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def schema_error(validator, data: Any, source: str, what: str, exc_cls=SessionError):
    """First (most relevant) jsonschema error as ``exc_cls`` naming the field, or None."""
    import jsonschema

    errors = list(validator.iter_errors(data))
    if not errors:
        return None
    err = jsonschema.exceptions.best_match(errors)
    parts = list(err.absolute_path)
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [k for k in err.validator_value if k not in err.instance]
        fld = field_path(parts + missing[:1])
        msg = f"{source}: {what} field '{fld}' is missing"
    elif err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(str(k) for k in err.instance if k not in allowed)
        fld = field_path(parts + extra[:1])
        msg = f"{source}: unknown {what} field '{fld}' (allowed here: {', '.join(sorted(allowed))})"
    else:
        fld = field_path(parts) or "(top level)"
        detail = err.message
        n = len(err.instance) if isinstance(err.instance, (list, str)) else None
        if err.validator == "maxItems" and n is not None:
            detail = f"has {n} entries; at most {err.validator_value} are allowed"
        elif err.validator == "maxLength" and n is not None:
            detail = f"is {n} characters long; at most {err.validator_value} are allowed"
        if len(detail) > 200:  # shorten the quoted value, never the reason after it
            r = repr(err.instance)
            detail = detail.replace(r, r[:40] + "..." if len(r) > 40 else r)
        if len(detail) > 200:
            detail = "..." + detail[-200:]
        msg = f"{source}: {what} field '{fld}' is invalid: {detail}"
    return exc_cls(msg, fld)


def _finite_numbers(obj: Any, parts: list, source: str) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise SessionError(f"{source}: session field '{field_path(parts)}' is not a finite number", field_path(parts))
    if isinstance(obj, dict):
        for k, v in obj.items():
            _finite_numbers(v, parts + [k], source)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _finite_numbers(v, parts + [i], source)


def validate(data: Any, source: str = "session") -> None:
    """Strict validation of a current-version session dict; raises ``SessionError`` naming the field."""
    if not isinstance(data, dict):
        raise SessionError(f"{source}: a session file must hold a JSON object, not {type(data).__name__}")
    _finite_numbers(data, [], source)
    err = schema_error(_get_validator(), data, source, "session")
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


#: version -> function turning a dict of that version into the next version
MIGRATIONS: dict[int, Callable[[dict], dict]] = {0: _migrate_v0}


def migrate(data: Any, source: str = "session") -> Any:
    if not isinstance(data, dict):
        return data  # validate() reports it
    v = data.get("schema_version", 0)
    if isinstance(v, bool) or not isinstance(v, int):
        raise SessionError(f"{source}: session field 'schema_version' must be an integer, not {v!r}",
                           "schema_version")
    if v > SCHEMA_VERSION:
        raise SessionError(f"{source}: session field 'schema_version' is {v}, newer than this program supports "
                           f"({SCHEMA_VERSION}); update plugin-bridge to open it", "schema_version")
    if v < 0:
        raise SessionError(f"{source}: session field 'schema_version' ({v}) must not be negative", "schema_version")
    while v < SCHEMA_VERSION:
        try:
            data = MIGRATIONS[v](data)
        except SessionError:
            raise
        except Exception as exc:  # a malformed old file
            raise SessionError(f"{source}: session field 'schema_version' is {v} and the file cannot be upgraded "
                               f"({type(exc).__name__}: {exc})", "schema_version") from None
        v += 1
    return data


def dataclass_fields(obj) -> list[str]:
    return [f.name for f in fields(obj)]
