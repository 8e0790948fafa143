"""Header sanity checks run before any decoder sees a file.

Decoders trust headers: a WAV whose ``fmt`` chunk says A-law with 16-bit samples crashes the process
inside the native decoder, a 1 s WAV whose ``data`` chunk claims 4 GB is read as 9 h of invented
silence, an ADPCM header yields ~9e18 frames, and a truncated WAV or FLAC is silently padded with
silence to the length its header claims.  ``check_header(path)`` reads the container structure
itself (RIFF/RF64 chunks, AIFF chunks, FLAC STREAMINFO and the last frame header) and compares what
the header claims with what the file really holds.  It returns the frame count the header promises
(None where the container does not say) and raises ``AudioInputError`` with one line otherwise.
"""
from __future__ import annotations

import os
import struct

from plugin_bridge.errors import AudioInputError

__all__ = ["check_header", "WAV_CODECS", "MIN_RATE", "MAX_RATE"]

#: sample rates the decoders handle; files far outside this range make them misbehave
MIN_RATE, MAX_RATE = 8000, 192000

#: WAV format tags the decoder handles safely -> (name, allowed bits per sample)
WAV_CODECS = {1: ("PCM", (8, 16, 24, 32)), 3: ("IEEE float", (32, 64)), 6: ("A-law", (8,)), 7: ("mu-law", (8,))}
_MAX_CHANNELS = 256
_AIFC_OK = {b"NONE", b"sowt", b"twos", b"fl32", b"FL32", b"fl64", b"FL64", b"raw "}


def _fail(path: str, msg: str):
    raise AudioInputError(f"{path}: {msg}")


def _check_rate(path: str, what: str, rate: float) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        _fail(path, f"{what} header says a sample rate of {rate:g} Hz; supported: {MIN_RATE}-{MAX_RATE} Hz")


def _frames_text(frames: int, rate: int) -> str:
    return f"{frames} frames ({frames / rate:.2f} s)" if rate > 0 else f"{frames} frames"


def check_header(path: str) -> int | None:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
            return _check_wav(path, f, size, head[:4] != b"RIFF")
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return _check_aiff(path, f, size, head[8:12] == b"AIFC")
        if head[:4] == b"fLaC":
            return _check_flac(path, f, size)
    ext = os.path.splitext(path)[1].lower()
    if ext in (".wav", ".wave", ".bwf"):
        _fail(path, "not a WAV file (no RIFF/WAVE header)")
    if ext in (".aif", ".aiff", ".aifc"):
        _fail(path, "not an AIFF file (no FORM/AIFF header)")
    if ext == ".flac":
        _fail(path, "not a FLAC file (no fLaC header)")
    return None


def _chunks(f, size: int, endian: str):
    """(id, size, body offset) of each RIFF/IFF chunk after the 12-byte file header (the file position
    is at the body when the caller gets it)."""
    pos = 12
    while pos + 8 <= size:
        f.seek(pos)
        cid, csize = struct.unpack(endian + "4sI", f.read(8))
        yield cid, csize, pos + 8
        pos += 8 + csize + (csize & 1)


# -- WAV ----------------------------------------------------------------------------------------------
def _check_wav(path: str, f, size: int, rf64: bool) -> int:
    fmt = None
    ds64_data = None
    for cid, csize, body in _chunks(f, size, "<"):
        if cid == b"ds64" and rf64 and csize >= 28:
            _riff, ds64_data, _frames = struct.unpack("<QQQ", f.read(24))
        elif cid == b"fmt ":
            if csize < 16:
                _fail(path, f"WAV fmt chunk is {csize} bytes, shorter than the 16 a WAV header needs")
            fmt = f.read(min(csize, 40))
        elif cid == b"data":
            if fmt is None:
                _fail(path, "WAV data chunk comes before any fmt chunk; the header is damaged")
            if rf64 and csize == 0xFFFFFFFF and ds64_data is not None:
                csize = ds64_data
            return _wav_frames(path, fmt, csize, size - body)
    _fail(path, "WAV file has no data chunk" if fmt is not None else "WAV file has no fmt chunk")


def _wav_frames(path: str, fmt: bytes, data_size: int, available: int) -> int:
    tag, ch, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the codec is the sub-format GUID
        tag = struct.unpack("<H", fmt[24:26])[0]
    if tag not in WAV_CODECS:
        names = ", ".join(f"{n} ({'/'.join(map(str, b))}-bit)" for n, b in WAV_CODECS.values())
        _fail(path, f"WAV codec 0x{tag:04x} is not supported (readable: {names}); convert it to PCM WAV or FLAC")
    name, allowed_bits = WAV_CODECS[tag]
    if bits not in allowed_bits:
        _fail(path, f"WAV header says {name} with {bits}-bit samples, which is not a valid combination "
                    f"({name} allows {'/'.join(map(str, allowed_bits))} bits); the header is damaged")
    if not 1 <= ch <= _MAX_CHANNELS:
        _fail(path, f"WAV header says {ch} channels (allowed 1-{_MAX_CHANNELS}); the header is damaged")
    _check_rate(path, "WAV", rate)
    if block_align != ch * bits // 8:
        _fail(path, f"WAV header block size {block_align} does not match {ch} channels x {bits} bits "
                    f"(= {ch * bits // 8}); the header is damaged")
    claimed = data_size // block_align
    real = min(data_size, available) // block_align
    if data_size > available:
        _fail(path, f"truncated or damaged: the header says {_frames_text(claimed, rate)} of audio but the file "
                    f"holds only {_frames_text(real, rate)}; repair or re-export it")
    return claimed


# -- AIFF ---------------------------------------------------------------------------------------------
def _check_aiff(path: str, f, size: int, aifc: bool) -> int:
    comm = None
    for cid, csize, body in _chunks(f, size, ">"):
        if cid == b"COMM":
            comm = f.read(min(csize, 22))
            if len(comm) < 18:
                _fail(path, "AIFF COMM chunk is too short; the header is damaged")
        elif cid == b"SSND":
            if comm is None:
                _fail(path, "AIFF sound data comes before the COMM chunk; the header is damaged")
            ch, frames, bits = struct.unpack(">hIh", comm[:8])
            _check_rate(path, "AIFF", _ieee_extended(comm[8:18]))
            comp = comm[18:22] if aifc and len(comm) >= 22 else b"NONE"
            if comp not in _AIFC_OK:
                _fail(path, f"AIFF-C compression {comp.decode('latin-1')!r} is not supported; convert it to PCM")
            if not 1 <= ch <= _MAX_CHANNELS or not 1 <= bits <= 64:
                _fail(path, f"AIFF header says {ch} channels of {bits}-bit samples; the header is damaged")
            need = frames * ch * ((bits + 7) // 8)
            have = min(csize, size - body) - 8  # offset + block size words
            if need > max(0, have):
                real = max(0, have) // (ch * ((bits + 7) // 8))
                _fail(path, f"truncated or damaged: the header says {frames} frames of audio but the file "
                            f"holds only {real}; repair or re-export it")
            return frames
    _fail(path, "AIFF file has no sound data")


def _ieee_extended(b: bytes) -> float:
    """80-bit IEEE 754 extended (AIFF's sample rate field)."""
    exp = ((b[0] & 0x7F) << 8) | b[1]
    mant = int.from_bytes(b[2:10], "big")
    if exp == 0 and mant == 0:
        return 0.0
    if exp == 0x7FFF:
        return float("inf")
    v = mant * 2.0 ** (exp - 16383 - 63) if exp - 16383 - 63 < 1000 else float("inf")
    return -v if b[0] & 0x80 else v


# -- FLAC ---------------------------------------------------------------------------------------------
def _crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


_BLOCK_SIZES = {1: 192, 2: 576, 3: 1152, 4: 2304, 5: 4608, **{k: 256 << (k - 8) for k in range(8, 16)}}


def _frame_header(buf: bytes, i: int):
    """(first sample, block size) of a valid FLAC frame header at ``buf[i]``, else None."""
    if buf[i] != 0xFF or (buf[i + 1] & 0xFE) != 0xF8 or len(buf) < i + 6:
        return None
    variable = buf[i + 1] & 1
    bs_code, sr_code = buf[i + 2] >> 4, buf[i + 2] & 0xF
    if bs_code == 0 or sr_code == 0xF or (buf[i + 3] >> 4) > 10 or buf[i + 3] & 1 or ((buf[i + 3] >> 1) & 7) == 3:
        return None
    j = i + 4
    first = buf[j]
    n_extra = 0
    if first < 0x80:
        num = first
    else:
        mask, n_extra = 0x40, 0
        while first & mask and n_extra < 7:
            mask >>= 1
            n_extra += 1
        if not 1 <= n_extra <= 6:
            return None
        num = first & (mask - 1)
        for k in range(1, n_extra + 1):
            if j + k >= len(buf) or buf[j + k] & 0xC0 != 0x80:
                return None
            num = (num << 6) | (buf[j + k] & 0x3F)
    j += 1 + n_extra
    if bs_code == 6:
        bs, j = buf[j] + 1 if j < len(buf) else 0, j + 1
    elif bs_code == 7:
        bs, j = (int.from_bytes(buf[j:j + 2], "big") + 1) if j + 2 <= len(buf) else 0, j + 2
    else:
        bs = _BLOCK_SIZES.get(bs_code, 0)
    j += {12: 1, 13: 2, 14: 2}.get(sr_code, 0)
    if j >= len(buf) or bs == 0 or _crc8(buf[i:j]) != buf[j]:
        return None
    return num, bs, bool(variable)


def _check_flac(path: str, f, size: int) -> int | None:
    f.seek(4)
    hdr = f.read(4)
    if len(hdr) < 4 or hdr[0] & 0x7F != 0 or int.from_bytes(hdr[1:4], "big") < 34:
        _fail(path, "FLAC file does not start with a valid STREAMINFO block; the header is damaged")
    info = f.read(34)
    if len(info) < 34:
        _fail(path, "FLAC STREAMINFO block is cut short; the file is truncated")
    min_bs = int.from_bytes(info[0:2], "big")
    max_frame = int.from_bytes(info[7:10], "big")
    packed = int.from_bytes(info[10:18], "big")
    rate = packed >> 44
    ch = ((packed >> 41) & 7) + 1
    total = packed & ((1 << 36) - 1)
    _check_rate(path, "FLAC", rate)
    if total == 0:
        return None  # length unknown (a stream): nothing to compare
    # the last frame header in the file tells how far the audio really goes
    span = min(size, max(1 << 16, 3 * max_frame if max_frame else 1 << 20, ch * 65536 * 4 // 2))
    f.seek(size - span)
    buf = f.read(span)
    i = len(buf) - 6
    while i >= 0:
        i = buf.rfind(b"\xff", 0, i + 1)
        if i < 0:
            break
        h = _frame_header(buf, i) if (buf[i + 1] & 0xFE) == 0xF8 else None
        if h is None:
            i -= 1
            continue
        num, bs, variable = h
        end = num + bs if variable else num * min_bs + bs
        if end < total:
            _fail(path, f"truncated or damaged: the header says {_frames_text(total, rate)} but the audio in "
                        f"the file ends at about {_frames_text(end, rate)}; repair or re-export it")
        tail = buf[i:]
        if not buf.endswith(b"\x00") and b"TAG" not in buf[-128:-125] and _crc16(tail[:-2]) != int.from_bytes(tail[-2:], "big"):
            _fail(path, f"truncated or damaged: the last audio frame (from {_frames_text(num * (1 if variable else min_bs), rate)}) "
                        "is cut short; repair or re-export it")
        return total
    _fail(path, "truncated or damaged: no FLAC audio frame found near the end of the file")


def _crc16_table() -> list[int]:
    t = []
    for n in range(256):
        c = n << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x8005) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
        t.append(c)
    return t


_CRC16 = _crc16_table()


def _crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ b]
    return crc
