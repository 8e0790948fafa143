"""Shared helpers of the session's DAW project import/export (``dawproject.py``, ``rpp.py``).

Time: positions are integer session frames.  Both formats store seconds as a double; we write the
shortest decimal that reads back as the same double (Python ``repr``) and convert back with
``round(seconds * rate)``, which returns the exact frame for any position below 2**50 frames (the
error of one double rounding is ~1e-16 relative, far below half a frame).

Session data the DAW formats cannot carry (track kind stem/residual, regions, queries, stems,
settings, ids) travel as a *sidecar*: the session dict without jobs (``sidecar_dict``).  On import
the DAW file is authoritative for what a DAW can edit (which tracks exist, names, positions,
files, gain, mute, solo, colour) and the sidecar fills in the rest (``build_session``); entries the
DAW file no longer has are dropped, so a project edited and re-saved by a DAW still opens.
"""
from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from plugin_bridge.errors import AudioInputError, OutputError
from plugin_bridge.session.model import Session, SessionError, Track, new_id

__all__ = ["Clip", "timeline_clips", "seconds_str", "to_frames", "sidecar_dict", "build_session",
           "SIDECAR_FORMAT", "safe_name", "db_to_linear", "linear_to_db"]

SIDECAR_FORMAT = "plugin-bridge-interchange"
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class Clip:
    """One track's audio on the timeline (the session model holds one file per track)."""
    track: Track
    path: str
    position: int          # session frames
    length: int            # session frames
    file_rate: int
    channels: int
    file_frames: int


def seconds_str(frames: int, rate: int) -> str:
    """Seconds as the shortest text that reads back as the same double."""
    return repr(frames / rate) if frames else "0.0"


def to_frames(seconds: float, rate: int, what: str = "position") -> int:
    if not math.isfinite(seconds):
        raise SessionError(f"{what} {seconds!r} is not a finite number", what)
    return int(round(seconds * rate))


def db_to_linear(db: float) -> float:
    return 10.0 ** (db / 20.0)


def linear_to_db(lin: float) -> float:
    if lin <= 0:
        return -200.0
    db = 20.0 * math.log10(lin)
    return max(-200.0, min(60.0, round(db, 9)))


def _probe(path: str) -> tuple[int, int, int]:
    from plugin_bridge.audio_io import probe  # header checks first: a damaged file is a message

    info = probe(path)
    return info.sample_rate, info.channels, info.frames


def timeline_clips(session: Session, probe: bool = True) -> list[Clip]:
    """A clip for every track, in track order; file info comes from the track (probed when unknown)."""
    clips = []
    for t in session.tracks:
        rate, channels, frames = t.sample_rate, t.channels, t.frames
        if probe and (rate is None or channels is None or frames is None):
            try:
                rate, channels, frames = _probe(t.path)
            except AudioInputError as exc:
                raise OutputError(f"track {t.name!r}: {exc}") from None
        rate = rate or session.sample_rate
        if channels is None or frames is None:
            raise OutputError(f"track {t.name!r}: file length unknown ({t.path})")
        length = frames if rate == session.sample_rate else int(round(frames * session.sample_rate / rate))
        clips.append(Clip(t, t.path, t.offset, length, int(rate), int(channels), int(frames)))
    return clips


def safe_name(name: str, used: set[str]) -> str:
    """A portable, unique file name (ASCII letters, digits, ``._-``)."""
    stem, ext = os.path.splitext(os.path.basename(name))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "audio"
    ext = re.sub(r"[^A-Za-z0-9.]+", "", ext).lower() or ".wav"
    cand, n = stem[:80] + ext, 2
    while cand.lower() in used:
        cand, n = f"{stem[:80]}_{n}{ext}", n + 1
    used.add(cand.lower())
    return cand


def sidecar_dict(session: Session, base_dir: str, clips: list[Clip] | None = None) -> dict:
    """The session without jobs; file info probed for the export (``clips``) fills unknown fields."""
    d = session.to_dict(base_dir)
    d.pop("jobs", None)
    probed = {c.track.id: c for c in clips or []}
    for t in d["tracks"]:
        c = probed.get(t["id"])
        if c is not None:
            t["sample_rate"], t["channels"], t["frames"] = c.file_rate, c.channels, c.file_frames
    return {"format": SIDECAR_FORMAT, "version": 1, "session": d}


def valid_id(text: str | None) -> str | None:
    return text if text and _ID_RE.match(text) else None


def build_session(native: list[dict], sidecar: Any, base_dir: str, rate: int, name: str,
                  source: str) -> Session:
    """Merge the tracks read from a DAW file with the sidecar (if any) into a validated Session.

    ``native``: one dict per track: ``id`` (may be None), ``name``, ``path`` (absolute), ``offset``,
    ``frames``/``sample_rate``/``channels`` (file info, may be None), ``gain_db``, ``mute``, ``solo``,
    ``colour``, ``parent_id`` (may be None)."""
    side = None
    if isinstance(sidecar, dict) and sidecar.get("format") == SIDECAR_FORMAT and isinstance(sidecar.get("session"), dict):
        side = copy.deepcopy(sidecar["session"])
    side_tracks = {t.get("id"): t for t in (side or {}).get("tracks", []) if isinstance(t, dict)}
    tracks, seen = [], set()
    for n in native:
        tid = valid_id(n.get("id"))
        if tid is None or tid in seen:
            tid = new_id()
        seen.add(tid)
        base = side_tracks.get(tid, {})
        t = {k: v for k, v in base.items()}
        t.update({"id": tid, "name": n["name"], "path": n["path"], "offset": int(n["offset"]),
                  "gain_db": float(n.get("gain_db", 0.0)), "mute": bool(n.get("mute", False)),
                  "solo": bool(n.get("solo", False)), "colour": n.get("colour")})
        for k in ("sample_rate", "channels", "frames"):
            if n.get(k) is not None:
                t[k] = int(n[k])
        if "parent_id" in n:              # the DAW file knows the nesting (RPP folders)
            t["parent_id"] = n["parent_id"]
        t.setdefault("kind", "source")
        tracks.append(t)
    ids = {t["id"] for t in tracks}
    for t in tracks:  # parents the DAW file dropped -> plain source tracks
        if t.get("parent_id") not in ids or t.get("parent_id") == t["id"]:
            t["parent_id"] = None
        elif t["kind"] == "source":       # nested under another track in the DAW: a stem of it
            t["kind"] = "stem"
    if side is not None:
        data = side
        data["tracks"] = tracks
        data["sample_rate"] = int(data.get("sample_rate") or rate)
        data["regions"] = [r for r in data.get("regions", []) if isinstance(r, dict) and r.get("track_id") in ids]
        by_id = {t["id"]: t for t in tracks}
        stems = []
        for s in data.get("stems", []):
            if not isinstance(s, dict):
                continue
            tid = s.get("track_id")
            if tid is not None and tid not in ids:
                continue
            if tid is not None:
                s["path"] = by_id[tid]["path"]
            stems.append(s)
        region_ids = {r.get("id") for r in data["regions"]}
        data["stems"] = [s for s in stems if s.get("region_id") in region_ids]
        data["jobs"] = []
    else:
        data = {"schema_version": 1, "id": new_id(), "name": name, "sample_rate": int(rate), "tracks": tracks}
    try:
        return Session.from_dict(data, base_dir, source=source)
    except SessionError as exc:
        raise SessionError(f"{exc} (while importing {source})", exc.field) from None
