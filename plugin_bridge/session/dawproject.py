"""DAWproject (bitwig/dawproject 1.0) import and export.

    save(session, "out.dawproject", embed=False)     # -> path
    session = load("out.dawproject")

The file is a ZIP holding ``project.xml`` (validates against the official ``Project.xsd``),
``metadata.xml`` (``MetaData.xsd``), optionally the audio files under ``audio/``, and
``plugin-bridge/session.json`` (the sidecar: session data DAWs have no place for; DAWs ignore it).

Layout written:
* every session track (source, stem and residual tracks, in session order, stems right after their
  source as the session keeps them) is a ``Track contentType="audio"`` with its ``Channel``
  (``audioChannels``, ``Volume`` as a linear factor, ``Mute``, ``solo``), routed to a master
  channel;
* the arrangement has one ``Lanes timeUnit="seconds"``, and inside it, per track, a lane with one
  ``Clip`` (``time`` = the track's offset, ``duration`` = its length, ``playStart="0"``) holding an
  ``Audio`` element (file rate, channels, duration in seconds) and its ``File``.

Time unit: **seconds**, chosen because it does not depend on a tempo and round-trips exactly: the
double nearest ``frames / rate`` is written with enough digits (``repr``) and read back with
``round(seconds * rate)``, which gives the same sample for any position below 2**50 frames.

Audio files: ``embed=False`` (default) references them with ``external="true"`` and a path
relative to the ``.dawproject`` file (absolute if no relative path exists, e.g. another drive):
small exports, but the project must stay beside the audio.  ``embed=True`` copies every file into
the ZIP (``audio/<name>``, ``external="false"``): portable.  On import, embedded files are
extracted into ``<project name>_audio/`` next to the project (or ``audio_dir``); an existing
identical file there is reused, a different one is never overwritten.

Import also reads DAWprojects written by other programs: clips in beats (converted with the
project tempo), nested lanes, ``Warps`` around audio, and several clips per track (the extra
clips become extra tracks, since a session track holds one file).  Clips that start inside their
file (``playStart`` > 0) are placed by the file's start; a clip that would start before the
timeline start is refused with a clear error.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from typing import Any

from plugin_bridge.errors import OutputError
from plugin_bridge.fileio import temp_prefix
from plugin_bridge.session.interchange import (
    build_session, db_to_linear, linear_to_db, safe_name, seconds_str, sidecar_dict, timeline_clips, to_frames,
    valid_id,
)
from plugin_bridge.session.model import Session, SessionError

__all__ = ["load", "save", "PROJECT_XML", "METADATA_XML", "SIDECAR_PATH", "DAWPROJECT_VERSION"]

PROJECT_XML = "project.xml"
METADATA_XML = "metadata.xml"
SIDECAR_PATH = "plugin-bridge/session.json"
DAWPROJECT_VERSION = "1.0"
APP_NAME = "plugin-bridge"


def _app_version() -> str:
    try:
        from importlib.metadata import version

        return version("plugin-bridge")
    except Exception:
        return "0"


def _b(v: bool) -> str:
    return "true" if v else "false"


# --------------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------------
def save(session: Session, path: str, *, embed: bool = False) -> str:
    """Write ``session`` as a DAWproject; returns the absolute path.  Atomic (temp file + replace).
    Raises ``OutputError`` if a track's audio is missing or the file cannot be written."""
    path = os.path.abspath(path)
    base_dir = os.path.dirname(path)
    clips = timeline_clips(session)
    rate = session.sample_rate

    project = ET.Element("Project", version=DAWPROJECT_VERSION)
    ET.SubElement(project, "Application", name=APP_NAME, version=_app_version())
    transport = ET.SubElement(project, "Transport")
    ET.SubElement(transport, "Tempo", id="tempo", name="Tempo", unit="bpm", value="120.0", min="20.0", max="999.0")
    ET.SubElement(transport, "TimeSignature", id="timesig", numerator="4", denominator="4")
    structure = ET.SubElement(project, "Structure")
    arrangement = ET.Element("Arrangement", id="arrangement")
    root_lanes = ET.SubElement(arrangement, "Lanes", id="lanes", timeUnit="seconds")

    used: set[str] = set()
    embedded: list[tuple[str, str]] = []       # (file on disk, name in zip)
    for i, c in enumerate(clips):
        t = c.track
        tid = f"track_{t.id}"
        attrs: dict[str, str] = {"id": tid, "name": t.name, "contentType": "audio", "loaded": "true"}
        if t.colour:
            attrs["color"] = t.colour[:7]
        track_el = ET.SubElement(structure, "Track", attrs)
        ch = ET.SubElement(track_el, "Channel", id=f"channel_{i}", role="regular", audioChannels=str(c.channels),
                           destination="master", solo=_b(t.solo))
        ET.SubElement(ch, "Mute", id=f"mute_{i}", name="Mute", value=_b(t.mute))
        ET.SubElement(ch, "Pan", id=f"pan_{i}", name="Pan", unit="normalized", value="0.5", min="0.0", max="1.0")
        ET.SubElement(ch, "Volume", id=f"volume_{i}", name="Volume", unit="linear",
                      value=repr(db_to_linear(t.gain_db)), min="0.0", max="2.0")

        if embed:
            zname = "audio/" + safe_name(c.path, used)
            embedded.append((c.path, zname))
            fref = {"path": zname, "external": "false"}
        else:
            try:
                rel = os.path.relpath(c.path, base_dir).replace(os.sep, "/")
            except ValueError:  # another drive
                rel = c.path
            fref = {"path": rel, "external": "true"}
        lane = ET.SubElement(root_lanes, "Lanes", id=f"lane_{i}", track=tid)
        clips_el = ET.SubElement(lane, "Clips", id=f"clips_{i}")
        clip_el = ET.SubElement(clips_el, "Clip", time=seconds_str(c.position, rate),
                                duration=seconds_str(c.length, rate), playStart="0.0", name=t.name)
        audio = ET.SubElement(clip_el, "Audio", id=f"audio_{i}", timeUnit="seconds", sampleRate=str(c.file_rate),
                              channels=str(c.channels), duration=seconds_str(c.file_frames, c.file_rate))
        ET.SubElement(audio, "File", fref)

    master = ET.SubElement(structure, "Channel", id="master", name="Master", role="master",
                           audioChannels=str(max([c.channels for c in clips] + [2])), solo="false")
    ET.SubElement(master, "Mute", id="master_mute", name="Mute", value="false")
    ET.SubElement(master, "Volume", id="master_volume", name="Volume", unit="linear", value="1.0", min="0.0", max="2.0")
    project.append(arrangement)

    meta = ET.Element("MetaData")
    ET.SubElement(meta, "Title").text = session.name
    ET.SubElement(meta, "Comment").text = (f"Exported by plugin-bridge; session sample rate {rate} Hz; "
                                           f"times in seconds")
    project_xml = _xml_bytes(project)
    metadata_xml = _xml_bytes(meta)
    sidecar = json.dumps(sidecar_dict(session, base_dir, clips), indent=1, ensure_ascii=False).encode("utf-8")

    from plugin_bridge.fileio import atomic_path

    with atomic_path(path, suffix=".dawproject") as tmp:
        with open(tmp, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(PROJECT_XML, project_xml)
            z.writestr(METADATA_XML, metadata_xml)
            z.writestr(SIDECAR_PATH, sidecar)
            for src, zname in embedded:
                try:
                    z.write(src, zname, compress_type=zipfile.ZIP_STORED)
                except FileNotFoundError:
                    raise OutputError(f"cannot embed {src}: no such file") from None
            z.close()
            raw.flush()
            os.fsync(raw.fileno())
    return path


def _xml_bytes(root: ET.Element) -> bytes:
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


# --------------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------------
def _float(el: ET.Element, attr: str, where: str, default: float | None = None) -> float:
    v = el.get(attr)
    if v is None:
        if default is not None:
            return default
        raise SessionError(f"{where}: attribute '{attr}' is missing", attr)
    try:
        return float(v)
    except ValueError:
        raise SessionError(f"{where}: attribute '{attr}' is not a number ({v!r})", attr) from None


def _tempo(root: ET.Element) -> float:
    tempo = root.find("Transport/Tempo")
    if tempo is not None:
        try:
            bpm = float(tempo.get("value", "120"))
            if bpm > 0:
                return bpm
        except ValueError:
            pass
    return 120.0


def _walk_lanes(el: ET.Element, unit: str, track: str | None, out: list) -> None:
    """Collect (track id, clip element, time unit) from nested lanes/clips (units are inherited)."""
    unit = el.get("timeUnit", unit)
    track = el.get("track", track)
    for child in el:
        if child.tag in ("Lanes", "Clips"):
            _walk_lanes(child, unit, track, out)
        elif child.tag == "Clip":
            out.append((track, child, unit))


def _clip_audio(clip: ET.Element) -> ET.Element | None:
    a = clip.find("Audio")
    if a is None:
        a = clip.find("Warps/Audio")
    return a


def load(path: str, *, audio_dir: str | None = None) -> Session:
    """Read a ``.dawproject`` into a new Session (its ``path`` is left unset: save it where you like).
    Raises ``SessionError`` (a ``ConfigError``) naming the problem."""
    path = os.path.abspath(path)
    base_dir = os.path.dirname(path)
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        z = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise SessionError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise SessionError(f"{path}: not a DAWproject (not a ZIP file: {exc})") from None
    with z:
        names = set(z.namelist())
        if PROJECT_XML not in names:
            raise SessionError(f"{path}: not a DAWproject (no {PROJECT_XML} inside)")
        try:
            root = ET.fromstring(z.read(PROJECT_XML))
        except ET.ParseError as exc:
            raise SessionError(f"{path}: {PROJECT_XML} is not valid XML ({exc})") from None
        if root.tag != "Project":
            raise SessionError(f"{path}: {PROJECT_XML} has no <Project> root")
        sidecar: Any = None
        if SIDECAR_PATH in names:
            try:
                sidecar = json.loads(z.read(SIDECAR_PATH).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                sidecar = None
        side_rate = sidecar.get("session", {}).get("sample_rate") if isinstance(sidecar, dict) else None

        tracks: dict[str, dict] = {}
        order: list[str] = []
        for t in root.iter("Track"):
            tid = t.get("id")
            if not tid:
                continue
            ch = t.find("Channel")
            gain_db, mute, solo = 0.0, False, False
            if ch is not None:
                vol = ch.find("Volume")
                if vol is not None and vol.get("value") is not None:
                    v = _float(vol, "value", f"track {t.get('name')!r} volume")
                    gain_db = linear_to_db(v) if vol.get("unit", "linear") == "linear" else (
                        v if vol.get("unit") == "decibel" else 0.0)
                m = ch.find("Mute")
                mute = m is not None and m.get("value") == "true"
                solo = ch.get("solo") == "true"
            colour = t.get("color")
            if colour and not (len(colour) == 7 and colour.startswith("#")):
                colour = None
            tracks[tid] = {"name": t.get("name") or tid, "gain_db": gain_db, "mute": mute, "solo": solo,
                           "colour": colour}
            order.append(tid)

        found: list = []
        arr = root.find("Arrangement")
        if arr is not None:
            _walk_lanes(arr, "beats", None, found)
        bpm = _tempo(root)
        rates = []
        for _, clip, _ in found:
            a = _clip_audio(clip)
            if a is not None and a.get("sampleRate", "").isdigit():
                rates.append(int(a.get("sampleRate")))
        rate = int(side_rate) if isinstance(side_rate, int) and side_rate > 0 else (
            max(set(rates), key=rates.count) if rates else 48000)

        extract_dir = audio_dir or os.path.join(base_dir, name + "_audio")
        clips_by_track: dict[str, list[dict]] = {}
        for n, (tid, clip, unit) in enumerate(found):
            where = f"{path}: clip {n + 1}" + (f" on track {tracks[tid]['name']!r}" if tid in tracks else "")
            if tid is None or tid not in tracks:
                continue  # a lane without a (known) track: nothing to place it on
            audio = _clip_audio(clip)
            if audio is None:
                continue  # note or automation clip
            if clip.get("enable") == "false":
                continue
            fr = audio.find("File")
            if fr is None or not fr.get("path"):
                raise SessionError(f"{where}: the audio has no File path", "File")
            to_sec = (60.0 / bpm) if unit == "beats" else 1.0
            time_s = _float(clip, "time", where) * to_sec
            content_unit = clip.get("contentTimeUnit", unit)
            play_start = _float(clip, "playStart", where, 0.0) * ((60.0 / bpm) if content_unit == "beats" else 1.0)
            offset = to_frames(time_s - play_start, rate, "time")
            if offset < 0:
                raise SessionError(f"{where}: the clip's file would start {-offset} samples before the timeline "
                                   f"start (playStart beyond the clip position); cannot place it", "time")
            file_path = _resolve_file(z, names, fr, base_dir, extract_dir, where)
            a_rate = audio.get("sampleRate")
            a_ch = audio.get("channels")
            a_dur = audio.get("duration")
            file_rate = int(a_rate) if a_rate and a_rate.isdigit() else None
            frames = to_frames(float(a_dur), file_rate, "duration") if (a_dur and file_rate) else None
            clips_by_track.setdefault(tid, []).append({
                "path": file_path, "offset": offset, "sample_rate": file_rate,
                "channels": int(a_ch) if a_ch and a_ch.isdigit() else None, "frames": frames})

    native = []
    for tid in order:
        for k, c in enumerate(sorted(clips_by_track.get(tid, []), key=lambda c: c["offset"])):
            info = dict(tracks[tid])
            if k:
                info["name"] = f"{info['name']} ({k + 1})"
            info.update(c)
            info["id"] = tid[len("track_"):] if k == 0 and tid.startswith("track_") and valid_id(tid[6:]) else None
            native.append(info)
    return build_session(native, sidecar, base_dir, rate, name, os.path.basename(path))


def _resolve_file(z: zipfile.ZipFile, names: set, fr: ET.Element, base_dir: str, extract_dir: str,
                  where: str) -> str:
    ref = fr.get("path")
    external = fr.get("external") == "true"
    if external or ref not in names:
        if not external and ref not in names:
            raise SessionError(f"{where}: embedded file {ref!r} is missing from the project", "File")
        p = ref.replace("/", os.sep)
        return os.path.normpath(p if os.path.isabs(p) else os.path.join(base_dir, p))
    # embedded: extract (safely) next to the project
    parts = [p for p in ref.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts) or ":" in ref or ref.startswith("/") or "\\" in ref:
        raise SessionError(f"{where}: unsafe embedded file name {ref!r}", "File")
    dest = os.path.join(extract_dir, *parts[1:] if parts[0] == "audio" and len(parts) > 1 else parts)
    info = z.getinfo(ref)
    if os.path.exists(dest):
        if os.path.getsize(dest) == info.file_size and _sha(dest) == _zip_sha(z, ref):
            return dest
        stem, ext = os.path.splitext(dest)
        n = 2
        while os.path.exists(f"{stem}_{n}{ext}"):
            n += 1
        dest = f"{stem}_{n}{ext}"
    try:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), dir=os.path.dirname(dest))
        with os.fdopen(fd, "wb") as out, z.open(ref) as src:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, dest)
    except OSError as exc:
        raise SessionError(f"{where}: cannot extract {ref!r} to {dest}: {exc.strerror or exc}", "File") from None
    return dest


def _sha(path: str) -> str:
    from plugin_bridge.fileio import file_sha256

    return file_sha256(path)


def _zip_sha(z: zipfile.ZipFile, name: str) -> str:
    h = hashlib.sha256()
    with z.open(name) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
