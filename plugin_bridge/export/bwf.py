"""Broadcast WAV (EBU Tech 3285): WAV files with a ``bext`` chunk, so DAWs place stems at their time.

Pedalboard writes plain WAV (``JUNK`` + ``fmt `` + ``data``) and no metadata, so the ``bext`` chunk is
written here by hand and inserted right before ``data``:

* ``BwfWriter(path, rate, channels, bit_depth, description=..., time_reference=...)`` streams a WAV
  with its ``bext`` chunk in one pass (16/24-bit PCM, or 32-bit IEEE float; the same header chunks
  and sample bytes as Pedalboard's WAV writer); render jobs write their stems with it.
* ``write_bwf(path, audio, rate, bit_depth, time_reference, description, ...)`` writes an array
  through ``BwfWriter``; atomic (temp file in the same folder + ``os.replace``).
* ``add_bext(path, ...)`` inserts (or replaces) the chunk in an existing WAV, atomically; the audio
  bytes are copied unchanged.  ``out_path`` writes a new file instead and leaves ``path`` untouched.
* ``read_bext(path)`` reads the fields back (``None`` if the file has no ``bext``).

Fields written: Description (the query; ISO 8859-1 as readers expect, other characters become
'?', cut at 256 characters; the full query stays in the session),
Originator ``plugin-bridge``, OriginatorReference (given, or a unique ``PB`` + 30 hex digits),
OriginationDate ``yyyy-mm-dd`` / OriginationTime ``hh:mm:ss`` (local time, or given),
TimeReference (64-bit, in samples at the file's rate; the caller passes the region's position
since session start), Version 1 (or 2, with the loudness fields zero = "not computed"), UMID all
zero, CodingHistory (``A=PCM,F=<rate>,W=<bits>,M=<mono|stereo|multi>,T=plugin-bridge`` plus any
lines given), CR/LF terminated.

Files whose RIFF size would exceed 4 GiB (RF64/BW64 territory) are refused with ``OutputError``
before anything is written; RF64 input is refused the same way.
"""
from __future__ import annotations

import io
import os
import struct
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Iterator

import numpy as np
from pedalboard.io import AudioFile

from plugin_bridge.errors import AudioInputError, ConfigError, OutputError
from plugin_bridge.fileio import atomic_path

__all__ = ["write_bwf", "BwfWriter", "pcm_bytes", "add_bext", "read_bext", "build_bext", "Bext", "stem_bext_fields", "tag_session_stems", "BEXT_FIXED_SIZE", "MAX_RIFF_BYTES",
           "ORIGINATOR"]

ORIGINATOR = "plugin-bridge"
BEXT_FIXED_SIZE = 602            # bytes before CodingHistory
MAX_RIFF_BYTES = 0xFFFFFFFF      # RIFF size field is 32-bit
_BIT_DEPTHS = (16, 24, 32)


@dataclass
class Bext:
    description: str
    originator: str
    originator_reference: str
    origination_date: str
    origination_time: str
    time_reference: int
    version: int
    umid: bytes
    loudness: tuple[int, int, int, int, int]
    coding_history: str


def _fixed(text: str, size: int, field: str) -> bytes:
    """ISO 8859-1 (what readers such as MediaInfo assume for these ASCII fields; characters outside
    it become '?'), truncated to ``size`` bytes, NUL-padded."""
    if not isinstance(text, str):
        raise OutputError(f"bext {field} must be text, not {type(text).__name__}")
    return text.encode("latin-1", "replace")[:size].ljust(size, b"\0")


def _channel_word(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, "multichannel")


def default_coding_history(rate: int, bits: int, channels: int, is_float: bool) -> str:
    # EBU R98 has no code for float samples: A=PCM with W=32, and the T= text says so
    text = f"A=PCM,F={rate},W={bits},M={_channel_word(channels)},T={ORIGINATOR}"
    return text + (" (IEEE float)" if is_float else "")


def build_bext(*, description: str = "", originator: str = ORIGINATOR, originator_reference: str | None = None,
               origination_date: str | None = None, origination_time: str | None = None,
               time_reference: int = 0, version: int = 1, umid: bytes = b"",
               coding_history: str = "") -> bytes:
    """The ``bext`` chunk payload (without the 8-byte chunk header)."""
    if isinstance(time_reference, bool) or not isinstance(time_reference, (int, np.integer)):
        raise OutputError(f"bext TimeReference must be an integer sample count, not {time_reference!r}")
    time_reference = int(time_reference)
    if not 0 <= time_reference < 2 ** 64:
        raise OutputError(f"bext TimeReference {time_reference} is outside 0 .. 2^64-1")
    if version not in (1, 2):
        raise OutputError(f"bext Version must be 1 or 2, not {version!r}")
    if len(umid) > 64:
        raise OutputError("bext UMID is at most 64 bytes")
    now = datetime.now()
    date = origination_date if origination_date is not None else now.strftime("%Y-%m-%d")
    tod = origination_time if origination_time is not None else now.strftime("%H:%M:%S")
    ref = originator_reference if originator_reference is not None else "PB" + uuid.uuid4().hex[:30].upper()
    head = b"".join([
        _fixed(description, 256, "Description"), _fixed(originator, 32, "Originator"),
        _fixed(ref, 32, "OriginatorReference"), _fixed(date, 10, "OriginationDate"),
        _fixed(tod, 8, "OriginationTime"),
        struct.pack("<II", time_reference & 0xFFFFFFFF, time_reference >> 32),
        struct.pack("<H", version), umid.ljust(64, b"\0"),
        b"\0" * 10 if version >= 2 else b"",          # loudness fields: 0 = not computed
        b"\0" * (180 if version >= 2 else 190),
    ])
    assert len(head) == BEXT_FIXED_SIZE
    history = coding_history.replace("\r\n", "\n").replace("\n", "\r\n")
    if history and not history.endswith("\r\n"):
        history += "\r\n"
    return head + history.encode("ascii", "replace")


# --------------------------------------------------------------------------------------------------
# RIFF reading
# --------------------------------------------------------------------------------------------------
@dataclass
class _Chunk:
    id: bytes
    offset: int      # of the payload
    size: int        # payload size (without pad byte)


def _chunks(f: BinaryIO, path: str) -> Iterator[_Chunk]:
    f.seek(0, os.SEEK_END)
    file_size = f.tell()
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE":
        raise AudioInputError(f"{path}: not a WAV file (no RIFF/WAVE header)")
    if head[:4] in (b"RF64", b"BW64"):
        raise AudioInputError(f"{path}: RF64/BW64 files (over 4 GiB) are not supported for bext insertion")
    if head[:4] != b"RIFF":
        raise AudioInputError(f"{path}: not a WAV file (no RIFF/WAVE header)")
    pos = 12
    while pos + 8 <= file_size:
        f.seek(pos)
        cid, size = struct.unpack("<4sI", f.read(8))
        if pos + 8 + size > file_size:
            if cid == b"data":  # truncated data chunk (a writer crashed): refuse, do not guess
                raise AudioInputError(f"{path}: the data chunk is truncated ({size} bytes announced, "
                                      f"{file_size - pos - 8} present)")
            raise AudioInputError(f"{path}: chunk {cid!r} at byte {pos} runs past the end of the file")
        yield _Chunk(cid, pos + 8, size)
        pos += 8 + size + (size & 1)


def _fmt_info(f: BinaryIO, chunk: _Chunk) -> tuple[int, int, int, int]:
    """(format tag, channels, rate, bits) with WAVE_FORMAT_EXTENSIBLE resolved to its sub-format."""
    f.seek(chunk.offset)
    raw = f.read(chunk.size)
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", raw[:16])
    if tag == 0xFFFE and len(raw) >= 26:
        tag = struct.unpack("<H", raw[24:26])[0]
    return tag, channels, rate, bits


def read_bext(path: str) -> Bext | None:
    """The file's ``bext`` fields, or None when it has none."""
    with open(path, "rb") as f:
        for c in _chunks(f, path):
            if c.id != b"bext":
                continue
            f.seek(c.offset)
            raw = f.read(c.size)
            if len(raw) < BEXT_FIXED_SIZE:
                raise AudioInputError(f"{path}: bext chunk is too short ({len(raw)} bytes)")

            def text(a, b):
                return raw[a:b].split(b"\0", 1)[0].decode("latin-1")

            lo, hi = struct.unpack("<II", raw[338:346])
            version = struct.unpack("<H", raw[346:348])[0]
            loud = struct.unpack("<5h", raw[412:422]) if version >= 2 else (0, 0, 0, 0, 0)
            return Bext(description=text(0, 256), originator=text(256, 288), originator_reference=text(288, 320),
                        origination_date=text(320, 330), origination_time=text(330, 338),
                        time_reference=lo | (hi << 32), version=version, umid=raw[348:412], loudness=loud,
                        coding_history=raw[BEXT_FIXED_SIZE:].split(b"\0", 1)[0].decode("ascii", "replace"))
    return None


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------
def add_bext(path: str, *, description: str = "", time_reference: int = 0, out_path: str | None = None,
             originator_reference: str | None = None, origination_date: str | None = None,
             origination_time: str | None = None, version: int = 1, coding_history: str | None = None,
             extra_history: str = "") -> str:
    """Insert a ``bext`` chunk before ``data`` (replacing any existing one) and return the output path.

    The rewrite is atomic: the new file is written beside the target and moved over it only when
    complete; ``path`` is left untouched on any error (or always, when ``out_path`` is given)."""
    target = os.path.abspath(out_path or path)
    try:
        src = open(path, "rb")
    except FileNotFoundError:
        raise AudioInputError(f"{path}: no such file") from None
    except OSError as exc:
        raise AudioInputError(f"{path}: cannot be read ({exc.strerror})") from None
    with src:
        chunks = list(_chunks(src, path))
        ids = [c.id for c in chunks]
        if b"fmt " not in ids or b"data" not in ids:
            raise AudioInputError(f"{path}: a WAV file needs 'fmt ' and 'data' chunks (found {ids})")
        fmt = next(c for c in chunks if c.id == b"fmt ")
        tag, channels, rate, bits = _fmt_info(src, fmt)
        if tag not in (1, 3):
            raise AudioInputError(f"{path}: WAV format tag {tag} is neither PCM nor IEEE float")
        if coding_history is None:
            coding_history = default_coding_history(rate, bits, channels, tag == 3)
        if extra_history:
            coding_history = coding_history.rstrip("\r\n") + "\r\n" + extra_history
        payload = build_bext(description=description, originator_reference=originator_reference,
                             origination_date=origination_date, origination_time=origination_time,
                             time_reference=time_reference, version=version, coding_history=coding_history)
        kept = [c for c in chunks if c.id != b"bext"]
        pad = lambda n: n + (n & 1)  # noqa: E731
        body = 4 + sum(8 + pad(c.size) for c in kept) + 8 + pad(len(payload))
        if body > MAX_RIFF_BYTES:
            raise OutputError(f"{target}: the WAV would be {body + 8} bytes, over the 4 GiB limit of RIFF; "
                              f"RF64/BW64 output is not supported: split the stem or use FLAC")
        with atomic_path(target, suffix=".wav") as tmp, open(tmp, "wb") as out:
            out.write(b"RIFF" + struct.pack("<I", body) + b"WAVE")
            for c in kept:
                if c.id == b"data":
                    out.write(b"bext" + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1))
                out.write(c.id + struct.pack("<I", c.size))
                src.seek(c.offset)
                _copy(src, out, c.size)
                if c.size & 1:
                    out.write(b"\0")
            out.flush()
            os.fsync(out.fileno())
    return target


def _copy(src: BinaryIO, dst: BinaryIO, n: int) -> None:
    left = n
    while left:
        buf = src.read(min(left, 1 << 20))
        if not buf:
            raise AudioInputError(f"unexpected end of file while copying ({left} bytes missing)")
        dst.write(buf)
        left -= len(buf)


def pcm_bytes(block: np.ndarray, bit_depth: int) -> bytes:
    """(channels, frames) float -> interleaved little-endian WAV sample bytes, the same bytes as
    Pedalboard's WAV writer: 32 = IEEE float as is; 16/24 = clipped to [-1, 1], rounded to 32 bits,
    then shifted down (arithmetic shift)."""
    x = np.asarray(block, np.float32).T
    if bit_depth == 32:
        return np.ascontiguousarray(x, "<f4").tobytes()
    q = np.round(np.clip(x.astype(np.float64), -1.0, 1.0) * 0x7FFFFFFF).astype(np.int64) >> (32 - bit_depth)
    if bit_depth == 16:
        return q.astype("<i2").tobytes()
    return np.ascontiguousarray(q.astype("<i4")).view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


class BwfWriter:
    """Streams one Broadcast WAV in a single pass: the RIFF header, Pedalboard's own ``JUNK`` and
    ``fmt `` chunks for these parameters (so the file reads exactly like a plain stem), the ``bext``
    chunk, then ``write(block)`` appends samples to ``data``; ``close()`` fills in the sizes.

    Writes ``path`` directly: callers make it atomic (a temporary name, renamed when complete).  A
    stream that would pass the 4 GiB RIFF limit raises ``OutputError``."""

    def __init__(self, path: str, rate: int, channels: int, bit_depth: int, *, description: str = "",
                 time_reference: int = 0, originator_reference: str | None = None,
                 origination_date: str | None = None, origination_time: str | None = None, version: int = 1,
                 extra_history: str = ""):
        if bit_depth not in _BIT_DEPTHS:
            raise OutputError(f"bit_depth must be 16, 24 (PCM) or 32 (float), not {bit_depth!r}")
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not 1000 <= int(rate) <= 768000:
            raise OutputError(f"sample rate must be an integer between 1000 and 768000 Hz, not {rate!r}")
        self.path, self.channels, self.bit_depth = path, channels, bit_depth
        empty = io.BytesIO()
        with AudioFile(empty, "w", samplerate=int(rate), num_channels=channels, bit_depth=bit_depth, format="wav"):
            pass
        empty.seek(0)
        head = [(c.id, empty.getvalue()[c.offset:c.offset + c.size]) for c in _chunks(empty, path) if c.id != b"data"]
        tag = _fmt_info(empty, next(c for c in _chunks(empty, path) if c.id == b"fmt "))[0]
        history = default_coding_history(int(rate), bit_depth, channels, tag == 3)
        if extra_history:
            history = history + "\r\n" + extra_history
        payload = build_bext(description=description, originator_reference=originator_reference,
                             origination_date=origination_date, origination_time=origination_time,
                             time_reference=time_reference, version=version, coding_history=history)
        head.append((b"bext", payload))
        self._header = b"".join(cid + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)
                                for cid, data in head)
        self.data_bytes = 0
        self._f = open(path, "wb")
        self._f.write(b"RIFF\0\0\0\0WAVE" + self._header + b"data\0\0\0\0")

    def _riff_size(self, data_bytes: int) -> int:
        return 4 + len(self._header) + 8 + data_bytes + (data_bytes & 1)

    def write(self, block: np.ndarray) -> None:
        raw = pcm_bytes(block, self.bit_depth)
        if self._riff_size(self.data_bytes + len(raw)) > MAX_RIFF_BYTES:
            raise OutputError(f"{self.path}: the WAV would pass the 4 GiB limit of RIFF; RF64/BW64 output is not "
                              f"supported: split the stem or use FLAC")
        self._f.write(raw)
        self.data_bytes += len(raw)

    def close(self) -> None:
        if self._f.closed:
            return
        if self.data_bytes & 1:
            self._f.write(b"\0")
        self._f.seek(4)
        self._f.write(struct.pack("<I", self._riff_size(self.data_bytes)))
        self._f.seek(12 + len(self._header) + 4)
        self._f.write(struct.pack("<I", self.data_bytes))
        self._f.close()


def write_bwf(path: str, audio: np.ndarray, rate: int, bit_depth: int = 24, time_reference: int = 0,
              description: str = "", *, originator_reference: str | None = None,
              origination_date: str | None = None, origination_time: str | None = None,
              version: int = 1, extra_history: str = "") -> str:
    """Write ``audio`` (float, shape (channels, frames) or (frames,)) as a Broadcast WAV.

    ``bit_depth``: 16 or 24 (PCM, clipped to [-1, 1] by the encoder) or 32 (IEEE float, exact).
    Atomic; returns the absolute path."""
    if bit_depth not in _BIT_DEPTHS:
        raise OutputError(f"bit_depth must be 16, 24 (PCM) or 32 (float), not {bit_depth!r}")
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not 1000 <= int(rate) <= 768000:
        raise OutputError(f"sample rate must be an integer between 1000 and 768000 Hz, not {rate!r}")
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[0] > 64:
        raise AudioInputError(f"audio must have shape (channels, frames), not {np.shape(audio)}")
    channels, frames = x.shape
    data_bytes = frames * channels * bit_depth // 8
    estimate = 4 + (8 + 16) + (8 + BEXT_FIXED_SIZE + 256) + 8 + data_bytes + 64
    if estimate > MAX_RIFF_BYTES:
        raise OutputError(f"{path}: {frames} frames x {channels} channels at {bit_depth} bits is "
                          f"{data_bytes} bytes of audio, over the 4 GiB limit of RIFF; RF64/BW64 output is not "
                          f"supported: split the stem or use FLAC")
    if not np.isfinite(x).all():
        raise AudioInputError("audio contains NaN or infinite samples; nothing was written")
    target = os.path.abspath(path)
    with atomic_path(target, suffix=".wav") as tmp:
        w = BwfWriter(tmp, int(rate), channels, bit_depth, description=description, time_reference=time_reference,
                      originator_reference=originator_reference, origination_date=origination_date,
                      origination_time=origination_time, version=version, extra_history=extra_history)
        try:
            w.write(x)
        finally:
            w.close()
    return target


# --------------------------------------------------------------------------------------------------
# session helpers
# --------------------------------------------------------------------------------------------------
def stem_bext_fields(session, track) -> dict:
    """``description`` and ``time_reference`` for a session track's file: the query (or the track
    name), and the track's timeline position converted to samples at the file's own rate."""
    rate = track.sample_rate or session.sample_rate
    tref = track.offset if rate == session.sample_rate else int(round(track.offset * rate / session.sample_rate))
    description = track.name
    stem = next((s for s in session.stems if s.track_id == track.id), None)
    try:
        if stem is not None and stem.query_index == "residual":
            parent = session.track(track.parent_id).name if track.parent_id else ""
            description = "residual (everything not extracted)" + (f" of {parent}" if parent else "")
        elif stem is not None:
            q = session.region(stem.region_id).queries[int(stem.query_index)]
            description = q.text + (f" (not: {q.negative})" if q.negative else "")
    except (IndexError, ValueError, ConfigError):
        pass
    return {"description": description, "time_reference": tref}


def tag_session_stems(session, kinds: tuple[str, ...] = ("stem", "residual")) -> list[str]:
    """Add (or refresh) a ``bext`` chunk in the WAV file of every stem/residual track, so a DAW
    that honours BWF time stamps places it at its session position.  Returns the files tagged;
    non-WAV files are skipped.  Each rewrite is atomic."""
    done = []
    for t in session.tracks:
        if t.kind in kinds and t.path.lower().endswith((".wav", ".wave", ".bwf")):
            add_bext(t.path, **stem_bext_fields(session, t))
            done.append(t.path)
    return done
