"""Reaper project (``.RPP``) import and export.

    save(session, "out.rpp")          # -> path
    session = load("out.rpp")

Written: ``<REAPER_PROJECT`` with ``SAMPLERATE`` (the session rate), then one ``<TRACK`` per session
track (``NAME``, ``TRACKID`` = the track id as a GUID, ``VOLPAN`` linear gain, ``MUTESOLO``,
``PEAKCOL`` when coloured, ``NCHAN``) holding one ``<ITEM`` (``POSITION`` / ``LENGTH`` in seconds,
``SOFFS 0``, ``NAME``, ``<SOURCE WAVE|FLAC|MP3|VORBIS`` with ``FILE``).  Stem and residual tracks
are placed in a **folder** under their source track (``ISBUS``), the way Reaper shows a group.

Times are seconds written with enough digits to read back as the same double (``repr``) and
converted back with ``round(seconds * rate)``: positions and lengths come back to the exact sample.

File paths are relative to the ``.rpp`` (Reaper resolves relative paths against the project
folder), absolute when no relative path exists.  ``save(..., absolute_paths=True)`` writes
absolute paths.

Session data Reaper has no field for (track kinds, regions, queries, stems, settings) is kept as a
JSON line in the project notes, after a marker line (``sidecar=False`` leaves it out).  Reaper
keeps project notes when it re-saves a project; on import the RPP is authoritative for tracks,
names, positions, files, gain, mute, solo and folders, and the notes fill in the rest.

Import (``load``) parses with the PyPI ``rpp`` package and also reads projects written by Reaper:
several items per track become extra tracks (a session track holds one file), ``SOFFS`` (item
starting inside its file) is honoured, and items without an audio source (MIDI, empty) are skipped.
"""
from __future__ import annotations

import json
import os
import re
import uuid

from plugin_bridge.session.interchange import (
    build_session, db_to_linear, linear_to_db, seconds_str, sidecar_dict, timeline_clips, to_frames,
)
from plugin_bridge.session.model import Session, SessionError

__all__ = ["load", "save", "NOTES_MARKER"]

NOTES_MARKER = "plugin-bridge session data (keep this for plugin-bridge; do not edit below)"
_SOURCE_TYPES = {".wav": "WAVE", ".wave": "WAVE", ".bwf": "WAVE", ".w64": "WAVE", ".flac": "FLAC",
                 ".mp3": "MP3", ".ogg": "VORBIS", ".aif": "WAVE", ".aiff": "WAVE", ".aifc": "WAVE"}
_AUDIO_SOURCES = {"WAVE", "FLAC", "MP3", "VORBIS", "OPUS", "WAVPACK"}
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


def _q(text: str) -> str:
    """Reaper's quoting: plain if safe, else "..." / '...' / `...` whichever quote is absent."""
    text = text.replace("\r", " ").replace("\n", " ")
    if text and not re.search(r"\s", text) and text[0] not in "\"'`":
        return text
    for q in ('"', "'", "`"):
        if q not in text:
            return q + text + q
    return "`" + text.replace("`", "'") + "`"


def _guid(track_id: str) -> str:
    h = track_id.lower() if _HEX32.match(track_id) else uuid.uuid4().hex
    return "{" + f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}".upper() + "}"


def _id_from_guid(guid: str) -> str | None:
    h = guid.strip("{}").replace("-", "").lower()
    return h if _HEX32.match(h) else None


def _colour_to_reaper(colour: str) -> int:
    r, g, b = int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)
    return 0x1000000 | r | (g << 8) | (b << 16)


def _reaper_to_colour(v: int) -> str | None:
    if not v & 0x1000000:
        return None
    return "#{:02x}{:02x}{:02x}".format(v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF)


def _ordered(session: Session):
    """Tracks in folder order (each source followed by its stems), with their folder depth."""
    ids = {t.id for t in session.tracks}
    children: dict[str, list] = {}
    roots = []
    for t in session.tracks:
        if t.parent_id in ids and t.parent_id != t.id:
            children.setdefault(t.parent_id, []).append(t)
        else:
            roots.append(t)
    out, seen = [], set()

    def visit(t, depth):
        if t.id in seen:
            return
        seen.add(t.id)
        out.append((t, depth))
        for c in children.get(t.id, []):
            visit(c, depth + 1)

    for t in roots:
        visit(t, 0)
    for t in session.tracks:  # parent cycles: still export every track
        visit(t, 0)
    return out


def save(session: Session, path: str, *, absolute_paths: bool = False, sidecar: bool = True) -> str:
    """Write ``session`` as a Reaper project; atomic; returns the absolute path."""
    path = os.path.abspath(path)
    base_dir = os.path.dirname(path)
    rate = session.sample_rate
    clip_list = timeline_clips(session)
    clips = {c.track.id: c for c in clip_list}
    order = _ordered(session)
    lines = ['<REAPER_PROJECT 0.1 "6.0/plugin-bridge" 0', f"  SAMPLERATE {rate} 0 0", "  TIMELOCKMODE 1"]
    if sidecar:
        lines.append("  <NOTES 0 2")
        lines.append(f"    |{NOTES_MARKER}")
        lines.append("    |" + json.dumps(sidecar_dict(session, base_dir, clip_list), ensure_ascii=True, separators=(",", ":")))
        lines.append("  >")
    for k, (t, depth) in enumerate(order):
        c = clips[t.id]
        nxt = order[k + 1][1] if k + 1 < len(order) else 0
        delta = nxt - depth
        isbus = "1 1" if delta > 0 else (f"2 {delta}" if delta < 0 else "0 0")
        guid = _guid(t.id)
        lines.append(f"  <TRACK {guid}")
        lines.append(f"    NAME {_q(t.name)}")
        if t.colour:
            lines.append(f"    PEAKCOL {_colour_to_reaper(t.colour)}")
        lines.append(f"    VOLPAN {db_to_linear(t.gain_db)!r} 0 -1 -1 1")
        lines.append(f"    MUTESOLO {int(t.mute)} {2 if t.solo else 0} 0")
        lines.append(f"    ISBUS {isbus}")
        lines.append(f"    TRACKID {guid}")
        lines.append(f"    NCHAN {max(2, c.channels + (c.channels & 1))}")
        if absolute_paths:
            fpath = c.path
        else:
            try:
                fpath = os.path.relpath(c.path, base_dir)
            except ValueError:  # another drive
                fpath = c.path
        src_type = _SOURCE_TYPES.get(os.path.splitext(c.path)[1].lower(), "WAVE")
        lines += ["    <ITEM",
                  f"      POSITION {seconds_str(c.position, rate)}",
                  f"      LENGTH {seconds_str(c.length, rate)}",
                  "      LOOP 0",
                  "      SOFFS 0",
                  f"      NAME {_q(t.name)}",
                  f"      IGUID {_guid(uuid.uuid4().hex)}",
                  f"      <SOURCE {src_type}",
                  f"        FILE {_q(fpath)}",
                  "      >",
                  "    >"]
        lines.append("  >")
    lines.append(">")
    text = "\n".join(lines) + "\n"
    from plugin_bridge.fileio import atomic_write_text

    atomic_write_text(path, text, suffix=".rpp")
    return path


# --------------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------------
def _lines(el) -> dict:
    """First occurrence of each key line of an element: {KEY: [values...]}."""
    out: dict = {}
    for ch in el.children:
        if isinstance(ch, list) and ch and ch[0] not in out:
            out[ch[0]] = ch[1:]
    return out


def _num(vals, i, where, default=None) -> float:
    try:
        return float(vals[i])
    except (IndexError, TypeError, ValueError):
        if default is not None:
            return default
        raise SessionError(f"{where}: expected a number, got {vals!r}") from None


def load(path: str) -> Session:
    """Read a Reaper project into a new Session (``path`` left unset).  Raises ``SessionError``."""
    import rpp

    path = os.path.abspath(path)
    base_dir = os.path.dirname(path)
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        raise SessionError(f"{path}: no such file") from None
    except OSError as exc:
        raise SessionError(f"{path}: cannot be read ({exc.strerror})") from None
    if not text.lstrip().startswith("<REAPER_PROJECT"):
        raise SessionError(f"{path}: not a Reaper project (no <REAPER_PROJECT header)")
    try:
        root = rpp.loads(text)
    except Exception as exc:  # the rpp parser raises plain exceptions on malformed input
        raise SessionError(f"{path}: malformed Reaper project ({type(exc).__name__}: {exc})") from None
    head = _lines(root)
    rate = int(_num(head.get("SAMPLERATE", []), 0, f"{path}: SAMPLERATE", 0)) or 0

    sidecar = None
    notes = root.find("NOTES")
    if notes is not None:
        raw = [ln[1:] if isinstance(ln, str) and ln.startswith("|") else None for ln in notes.children]
        if NOTES_MARKER in raw:
            payload = "".join(x for x in raw[raw.index(NOTES_MARKER) + 1:] if x)
            try:
                sidecar = json.loads(payload)
            except ValueError:
                sidecar = None
    if not rate:
        side_rate = sidecar.get("session", {}).get("sample_rate") if isinstance(sidecar, dict) else None
        rate = int(side_rate) if isinstance(side_rate, int) and side_rate > 0 else 48000

    native = []
    stack: list[str | None] = []       # folder parents (track ids)
    for n, tr in enumerate(root.findall("TRACK")):
        where = f"{path}: track {n + 1}"
        kv = _lines(tr)
        tname = kv.get("NAME", [""])[0] if kv.get("NAME") else ""
        tname = tname or f"Track {n + 1}"
        guid = (kv.get("TRACKID") or tr.attrib or [""])[0]
        tid = _id_from_guid(guid) if guid else None
        volpan = kv.get("VOLPAN", ["1"])
        gain_db = linear_to_db(_num(volpan, 0, f"{where} VOLPAN", 1.0))
        ms = kv.get("MUTESOLO", ["0", "0"])
        mute = _num(ms, 0, where, 0) != 0
        solo = _num(ms, 1, where, 0) != 0 if len(ms) > 1 else False
        colour = None
        if kv.get("PEAKCOL"):
            colour = _reaper_to_colour(int(_num(kv["PEAKCOL"], 0, where, 0)))
        parent = stack[-1] if stack else None
        own_id = tid or uuid.uuid4().hex
        items = [ch for ch in tr.children if not isinstance(ch, list) and ch.tag == "ITEM"]
        placed = []
        for it in items:
            ikv = _lines(it)
            src = it.find("SOURCE")
            if src is not None and src.attrib and src.attrib[0] == "SECTION":
                src = src.find("SOURCE")   # a section of a file: the file is inside
            if src is None or not src.attrib or src.attrib[0] not in _AUDIO_SOURCES:
                continue
            file = _lines(src).get("FILE", [""])[0]
            if not file:
                continue
            pos = _num(ikv.get("POSITION", []), 0, f"{where} POSITION")
            soffs = _num(ikv.get("SOFFS", ["0"]), 0, f"{where} SOFFS", 0.0)
            offset = to_frames(pos - soffs, rate, "POSITION")
            if offset < 0:
                raise SessionError(f"{where} ({tname!r}): the item's file would start {-offset} samples before "
                                   f"the project start (SOFFS beyond POSITION); cannot place it", "POSITION")
            fp = file.replace("\\", os.sep) if os.sep != "\\" else file
            fp = os.path.normpath(fp if os.path.isabs(fp) else os.path.join(base_dir, fp))
            placed.append({"path": fp, "offset": offset})
        placed.sort(key=lambda c: c["offset"])
        for k, c in enumerate(placed):
            info = {"name": tname if not k else f"{tname} ({k + 1})", "gain_db": gain_db, "mute": mute,
                    "solo": solo, "colour": colour, "id": own_id if not k else None, "parent_id": parent,
                    "sample_rate": None, "channels": None, "frames": None}
            info.update(c)
            native.append(info)
        isbus = kv.get("ISBUS", ["0", "0"])
        kind, depth = int(_num(isbus, 0, where, 0)), int(_num(isbus, 1, where, 0)) if len(isbus) > 1 else 0
        if kind == 1 and depth > 0:
            stack.append(own_id if placed else parent)
        elif kind == 2 and depth < 0:
            for _ in range(min(-depth, len(stack))):
                stack.pop()
    return build_session(native, sidecar, base_dir, rate, name, os.path.basename(path))
