"""Audio file I/O for every part of plugin-bridge: open, probe, read (streamed or whole) and atomic write.

* ``open_audio(path)``: a Pedalboard ``AudioFile`` for reading, after the checks that keep damaged or
  hostile files away from the decoder (``audio_headers.check_header``); every failure is one
  ``AudioInputError`` line.
* ``probe(path)``: the file's ``AudioInfo`` (rate, channels, frames, sample format).
* ``StreamReader``: frame ranges served in order (the engine's input).  Memory stays bounded: only the
  frames between the oldest segment still needed and the newest one read are held.  Samples are checked
  for NaN/Inf as they arrive.  ``read_all`` reads a whole (small) file through it.
* ``write_audio(path, audio, rate, bit_depth)``: a whole file written to a hidden temporary next to
  ``path`` and renamed into place (``fileio.atomic_path``); ``open_writer`` does the same for a file
  written block by block.
* ``resample(x, rate, target)``: (channels, frames) arrays to another rate (Pedalboard's streaming resampler).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from pedalboard import Resample
from pedalboard.io import AudioFile, StreamResampler

from plugin_bridge.audio_headers import MAX_RATE, MIN_RATE, check_header
from plugin_bridge.errors import AudioInputError
from plugin_bridge.fileio import atomic_path, check_input_file

__all__ = ["AudioInfo", "StreamReader", "open_audio", "probe", "read_all", "write_audio", "open_writer",
           "resample", "READ_EXTENSIONS", "MIN_RATE",
           "MAX_RATE"]

READ_EXTENSIONS = (".wav", ".wave", ".bwf", ".aif", ".aiff", ".aifc", ".flac", ".mp3", ".ogg")
LOSSY_EXTENSIONS = (".mp3", ".ogg")


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int
    file_dtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def open_audio(path: str):
    """The checked file, open for reading (a Pedalboard ``AudioFile``; the caller closes it)."""
    check_input_file(path, AudioInputError, "file", "an audio file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in READ_EXTENSIONS:
        raise AudioInputError(
            f"{path}: unknown audio format {ext or '(no extension)'}; readable: {', '.join(READ_EXTENSIONS)}")
    try:
        claimed = check_header(path)  # before the decoder: some damaged headers crash it
    except OSError as exc:
        raise AudioInputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        f = AudioFile(path)
    except Exception as exc:  # pedalboard raises ValueError/RuntimeError with its own wording
        raise AudioInputError(f"{path}: cannot be decoded as {ext[1:].upper()} audio ({exc})") from None
    frames = int(f.frames)
    # no codec stores more than 8192 frames per byte (FLAC of digital silence is near 1/1000 byte each)
    bound = os.path.getsize(path) * 8192 if claimed is None else claimed
    if frames > bound:
        f.close()
        raise AudioInputError(f"{path}: the decoder reports {frames} frames, more than the file can hold "
                              f"({bound}); the header is damaged")
    return f


def probe(path: str) -> AudioInfo:
    f = open_audio(path)
    try:
        info = AudioInfo(path, int(round(f.samplerate)), int(f.num_channels), int(f.frames), str(f.file_dtype))
    finally:
        f.close()
    _check_info(info)
    return info


def _check_info(info: AudioInfo) -> None:
    if info.frames <= 0:
        raise AudioInputError(f"{info.path}: contains no audio frames")
    if not MIN_RATE <= info.sample_rate <= MAX_RATE:
        raise AudioInputError(
            f"{info.path}: sample rate {info.sample_rate} Hz is outside the supported {MIN_RATE}-{MAX_RATE} Hz")
    if info.channels < 1:
        raise AudioInputError(f"{info.path}: has no channels")


class StreamReader:
    """Sequential reader serving ``get(start, stop)`` for non-decreasing ``start``."""

    def __init__(self, path: str, block: int = 1 << 16, start: int = 0, stop: int | None = None):
        self.info = probe(path)
        self.path = path
        self._f = open_audio(path)
        self.block = block
        self.offset = max(0, start)  # region start within the file
        end = self.info.frames if stop is None else min(stop, self.info.frames)
        if end <= self.offset:
            self._f.close()
            raise AudioInputError(f"{path}: the region [{start}, {stop}) holds no frames")
        self.frames = end - self.offset
        if self.offset:
            self._f.seek(self.offset)
        self._buf = np.zeros((self.info.channels, 0), np.float32)
        self._buf_start = 0  # relative frame of _buf[:, 0]
        self._read_pos = 0   # relative frames read so far

    @property
    def sample_rate(self) -> int:
        return self.info.sample_rate

    @property
    def channels(self) -> int:
        return self.info.channels

    def _fill(self, stop: int) -> None:
        parts = [self._buf]
        while self._read_pos < stop:
            n = min(max(self.block, stop - self._read_pos), self.frames - self._read_pos)
            try:
                x = self._f.read(n)
            except Exception as exc:
                raise AudioInputError(f"{self.path}: read failed at frame {self.offset + self._read_pos} ({exc})") from None
            if x.shape[-1] == 0:
                have = self.offset + self._read_pos
                if os.path.splitext(self.path)[1].lower() not in LOSSY_EXTENSIONS or self.frames - self._read_pos > self.info.sample_rate:
                    raise AudioInputError(
                        f"{self.path}: truncated or damaged: the header says {self.info.frames} frames but decoding "
                        f"stopped at frame {have}; repair or re-export it")
                # MP3/Ogg decoders may report a frame count slightly larger than they deliver: pad with silence.
                x = np.zeros((self.channels, stop - self._read_pos), np.float32)
            if not np.all(np.isfinite(x)):
                bad = int(np.argmax(~np.isfinite(x).all(axis=0)))
                raise AudioInputError(
                    f"{self.path}: contains NaN or infinite samples (first at frame {self.offset + self._read_pos + bad}); "
                    "repair the file before separating")
            parts.append(x.astype(np.float32, copy=False))
            self._read_pos += x.shape[-1]
        self._buf = np.concatenate(parts, axis=1) if len(parts) > 1 else self._buf

    def get(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) relative to the region start, shape (channels, stop-start)."""
        if start < self._buf_start:
            raise ValueError("StreamReader.get must be called with non-decreasing start")
        stop = min(stop, self.frames)
        self._fill(stop)
        drop = start - self._buf_start
        if drop > 0:
            self._buf = self._buf[:, drop:]
            self._buf_start = start
        return self._buf[:, : stop - start].copy()

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_all(path: str) -> tuple[np.ndarray, int]:
    """Whole file as (channels, frames) float32 (for small files, tests and previews)."""
    with StreamReader(path) as r:
        return r.get(0, r.frames), r.sample_rate


def _check_writable_audio(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio, np.float32)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"audio must be (channels, frames), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise AudioInputError("audio contains NaN or infinite samples; nothing was written")
    return np.ascontiguousarray(x)


@contextmanager
def open_writer(path: str, rate: int, channels: int, bit_depth: int = 24):
    """An ``AudioFile`` open for writing a hidden temporary next to ``path`` (format from its extension);
    renamed into place when the block exits without an error, removed otherwise."""
    ext = os.path.splitext(path)[1].lower() or ".wav"
    with atomic_path(path, suffix=ext) as tmp:
        with AudioFile(tmp, "w", samplerate=int(rate), num_channels=int(channels), bit_depth=int(bit_depth)) as f:
            yield f


def write_audio(path: str, audio: np.ndarray, rate: int, bit_depth: int = 24) -> str:
    """Write (channels, frames) float audio to ``path`` atomically; returns ``path``."""
    x = _check_writable_audio(audio)
    with open_writer(path, rate, x.shape[0], bit_depth) as f:
        f.write(x)
    return path


def resample(x: np.ndarray, rate: int, target: int, quality: str = "WindowedSinc16") -> np.ndarray:
    """(C, n) at ``rate`` -> (C, round(n * target / rate)) at ``target`` (Pedalboard's streaming resampler)."""
    n_out = int(round(x.shape[-1] * target / rate))
    if rate == target:
        return x
    r = StreamResampler(float(rate), float(target), x.shape[0], getattr(Resample.Quality, quality))
    y = np.concatenate([r.process(np.ascontiguousarray(x, np.float32)), r.process()], axis=1)
    if y.shape[1] < n_out:
        y = np.pad(y, ((0, 0), (0, n_out - y.shape[1])))
    return y[:, :n_out]
