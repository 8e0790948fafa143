"""Open a session from a folder of audio files, one audio file, a saved ``*.pbsession.json``, or (via
the importers in ``dawproject.py`` / ``rpp.py``) a ``.dawproject`` / ``.rpp`` project.

Sample-rate rule: the session rate is the rate of the first track (files sorted by name, natural
order).  Tracks at another rate are kept and *flagged*: ``Track.sample_rate`` differs from
``Session.sample_rate`` (see ``Session.mismatched_tracks()``), a warning is reported, and region
frames are mapped onto such a file by time (``Session.session_to_file_frames``); their stems are
rendered at the file's own rate.

Opening reads only headers (``plugin_bridge.audio_io.probe``); audio is never modified.
"""
from __future__ import annotations

import os
import re

from plugin_bridge.audio_io import READ_EXTENSIONS, probe
from plugin_bridge.errors import AudioInputError, ConfigError
from plugin_bridge.session import dawproject, rpp
from plugin_bridge.session.model import SESSION_SUFFIX, Session, Track

__all__ = ["open_session", "open_folder", "open_audio_file", "session_from_files", "check_media",
           "refresh_media", "is_audio_file"]

# a palette for new source tracks (stems use their query's colour)
_PALETTE = ["#4aa3ff", "#ff6b6b", "#8fd18f", "#ffb84a", "#b26bff", "#4ad0c8", "#ff8fd1", "#c9c95b"]


def is_audio_file(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in READ_EXTENSIONS and not os.path.basename(path).startswith(".")


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _session_name(path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    if base.endswith(SESSION_SUFFIX):
        return base[: -len(SESSION_SUFFIX)]
    return os.path.splitext(base)[0] if os.path.isfile(path) else base


def session_from_files(paths: list[str], name: str = "Untitled", warnings: list[str] | None = None,
                       skip_unreadable: bool = False) -> Session:
    """One source track per file, all starting at timeline 0."""
    tracks = []
    rate = None
    for p in paths:
        try:
            info = probe(p)
        except AudioInputError as exc:
            if not skip_unreadable:
                raise
            if warnings is not None:
                warnings.append(f"skipped {os.path.basename(p)}: {exc}")
            continue
        if rate is None:
            rate = info.sample_rate
        t = Track(name=os.path.splitext(os.path.basename(p))[0], path=os.path.abspath(p),
                  colour=_PALETTE[len(tracks) % len(_PALETTE)], sample_rate=info.sample_rate,
                  channels=info.channels, frames=info.frames)
        if info.sample_rate != rate and warnings is not None:
            warnings.append(f"{os.path.basename(p)} is at {info.sample_rate} Hz but the session runs at {rate} Hz; "
                            "its regions are mapped by time and its stems are written at its own rate")
        tracks.append(t)
    if not tracks:
        raise AudioInputError("no readable audio files to open")
    names = {}
    for t in tracks:  # unique track names
        n = names.get(t.name, 0)
        names[t.name] = n + 1
        if n:
            t.name = f"{t.name} ({n + 1})"
    return Session(name=name, sample_rate=rate, tracks=tracks)


def open_folder(folder: str, warnings: list[str] | None = None) -> Session:
    """Every audio file directly inside ``folder`` becomes a track (unreadable ones are skipped with a
    warning); raises ``AudioInputError`` if none is readable."""
    try:
        names = sorted((n for n in os.listdir(folder) if is_audio_file(n)), key=_natural_key)
    except OSError as exc:
        raise AudioInputError(f"{folder}: cannot list the folder ({exc.strerror})") from None
    files = [os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))]
    if not files:
        raise AudioInputError(f"{folder}: holds no audio files ({', '.join(READ_EXTENSIONS)})")
    return session_from_files(files, _session_name(folder), warnings, skip_unreadable=True)


def open_audio_file(path: str, warnings: list[str] | None = None) -> Session:
    return session_from_files([path], _session_name(path), warnings)


def open_session(path: str, warnings: list[str] | None = None) -> Session:
    """Open anything a user may point at: folder, audio file, ``*.pbsession.json``, ``.dawproject``,
    ``.rpp``.  Raises ``SessionError``/``ConfigError``/``AudioInputError`` with a readable message."""
    if not os.path.exists(path):
        raise ConfigError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        return open_folder(path, warnings)
    low = path.lower()
    if low.endswith(".json"):
        s = Session.load(path)
        if warnings is not None:
            warnings.extend(check_media(s))
        return s
    if low.endswith(".dawproject"):
        return dawproject.load(path)
    if low.endswith(".rpp"):
        return rpp.load(path)
    if is_audio_file(path):
        return open_audio_file(path, warnings)
    raise ConfigError(f"{path}: not something plugin-bridge opens; use a folder of audio files, an audio file "
                      f"({', '.join(READ_EXTENSIONS)}), a {SESSION_SUFFIX} session, a .dawproject or a .rpp")


def check_media(session: Session) -> list[str]:
    """Readable problems with the session's audio files (missing files, rate mismatches)."""
    out = []
    for t in session.tracks:
        if not os.path.exists(t.path):
            out.append(f"track {t.name!r}: audio file {t.path} is missing")
        elif t.rate_mismatch(session.sample_rate):
            out.append(f"track {t.name!r} is at {t.sample_rate} Hz, the session at {session.sample_rate} Hz "
                       "(mapped by time)")
    return out


def refresh_media(session: Session) -> list[str]:
    """Probe every track's file again and update its cached rate/channels/length (headers only)."""
    problems = []
    for t in session.tracks:
        try:
            info = probe(t.path)
        except AudioInputError as exc:
            problems.append(f"track {t.name!r}: {exc}")
            continue
        t.sample_rate, t.channels, t.frames = info.sample_rate, info.channels, info.frames
    return problems
