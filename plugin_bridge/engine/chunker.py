"""Chunking and weighted overlap-add (the Demucs ``apply.py`` approach, streamed).

A file of ``length`` frames is cut into segments of at most ``chunk`` frames that overlap by ``overlap``
frames, tiled evenly (equal lengths, so the network never runs twice over most of a segment). Each
processed segment is weighted by a triangular window (raised to ``power``) and summed; the sum of weights
is divided out, so an identity process returns its input exactly, whatever the length, chunk and overlap.
Output is released in order as soon as no later segment can touch it, so memory is bounded by a couple of
segments, never by the file length.

Segment starts and lengths are multiples of ``align`` frames (except the file's last frames), so a
segment maps to a whole number of frames at the model's rate too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Segment", "plan_segments", "segment_weight", "OverlapAdd", "DEFAULT_CHUNK_SECONDS", "DEFAULT_OVERLAP"]

#: Default chunking, shared by the engine, CLI, sessions and presets.  15 s chunks overlapping by 10 %
#: (1.5 s) run the network on 1.11x the audio (10 s / 25 % ran it on 1.33x), and measured no worse: on
#: 70 s of concatenated dev mixtures the SDR was 5.84 dB against 5.80 (10 s / 25 %) and 5.75 (one pass).
DEFAULT_CHUNK_SECONDS = 15.0
DEFAULT_OVERLAP = 0.1


@dataclass(frozen=True)
class Segment:
    index: int
    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start


def plan_segments(length: int, chunk: int, overlap: int, align: int = 1) -> list[Segment]:
    """Segments covering [0, length), at most ``chunk`` frames long, consecutive ones sharing ``overlap``.

    The file is tiled evenly: as many segments as ``chunk``-long ones would need, each shortened to the
    same length, so no segment is mostly a repeat of its neighbour (a 16 s region at 15 s chunks is two
    8.75 s segments, 17.5 s of network work, not 15 s + 15 s).  The last one is pulled back to end at
    ``length`` (so every segment has the same length within ``align`` frames)."""
    if length <= 0:
        return []
    if chunk <= 0:
        raise ValueError("chunk must be positive")
    if not 0 <= overlap < chunk:
        raise ValueError(f"overlap ({overlap}) must be in [0, chunk={chunk})")
    align = max(1, int(align))
    chunk = max(align, chunk - chunk % align)
    stride = chunk - overlap
    stride = max(align, stride - stride % align)
    if length <= chunk:
        return [Segment(0, 0, length)]
    ov = chunk - stride  # the overlap actually kept (a whole number of align units)
    n = -(-(length - ov) // stride)  # segments needed at full length
    even = -(-(length - ov) // n)  # the stride that tiles the file with n equal segments
    stride = min(stride, -(-even // align) * align)
    chunk = stride + ov
    segs: list[Segment] = []
    start = 0
    while start + chunk < length:
        segs.append(Segment(len(segs), start, start + chunk))
        start += stride
    last = max(0, length - chunk)
    last -= last % align
    if last <= segs[-1].start:
        last = segs[-1].start + align if segs[-1].start + align < length else segs[-1].start
    segs.append(Segment(len(segs), last, length))
    return segs


def segment_weight(n: int, power: float = 1.0) -> np.ndarray:
    """Triangular weight, strictly positive everywhere (so any frame covered once is kept)."""
    half = np.arange(1, n // 2 + 1, dtype=np.float64)
    w = np.concatenate([half, np.arange(n - n // 2, 0, -1, dtype=np.float64)])
    w = w / w.max()
    return (w ** power).astype(np.float64)


class OverlapAdd:
    """Streams weighted overlap-add of segments for several outputs of shape (channels, frames).

    ``add(seg, arrays)`` must be called in segment order; it returns the finished block
    ``(start, [arrays...])`` that can no longer change (possibly empty).  ``finish()`` returns the rest.
    """

    def __init__(self, n_outputs: int, channels: int, length: int, power: float = 1.0):
        self.n_outputs = n_outputs
        self.channels = channels
        self.length = length
        self.power = power
        self.base = 0  # absolute frame of acc[..., 0]
        self.acc = [np.zeros((channels, 0), np.float64) for _ in range(n_outputs)]
        self.wsum = np.zeros(0, np.float64)

    def _grow(self, stop: int) -> None:
        need = stop - self.base - self.wsum.shape[0]
        if need > 0:
            self.acc = [np.concatenate([a, np.zeros((self.channels, need))], axis=1) for a in self.acc]
            self.wsum = np.concatenate([self.wsum, np.zeros(need)])

    def add(self, seg: Segment, outputs: list[np.ndarray], next_start: int | None) -> tuple[int, list[np.ndarray]]:
        if seg.start < self.base:
            raise ValueError("segments must be added in order")
        self._grow(seg.stop)
        w = segment_weight(seg.length, self.power)
        a, b = seg.start - self.base, seg.stop - self.base
        for acc, out in zip(self.acc, outputs):
            if out.shape != (self.channels, seg.length):
                raise ValueError(f"segment output shape {out.shape} != {(self.channels, seg.length)}")
            acc[:, a:b] += out * w
        self.wsum[a:b] += w
        ready_until = self.length if next_start is None else next_start
        return self._release(ready_until)

    def _release(self, until: int) -> tuple[int, list[np.ndarray]]:
        n = max(0, min(until, self.base + self.wsum.shape[0]) - self.base)
        start = self.base
        if n == 0:
            return start, [np.zeros((self.channels, 0), np.float32) for _ in range(self.n_outputs)]
        ws = self.wsum[:n]
        if np.any(ws <= 0):
            raise RuntimeError("overlap-add released frames that no segment covered")
        done = [(acc[:, :n] / ws).astype(np.float64) for acc in self.acc]
        self.acc = [acc[:, n:] for acc in self.acc]
        self.wsum = self.wsum[n:]
        self.base += n
        return start, done

    def finish(self) -> tuple[int, list[np.ndarray]]:
        return self._release(self.length)


def n_segments(length: int, chunk: int, overlap: int, align: int = 1) -> int:
    return len(plan_segments(length, chunk, overlap, align))


def align_unit(native_rate: int, model_rate: int) -> int:
    """Smallest frame count that is a whole number of frames at both rates."""
    return native_rate // math.gcd(native_rate, model_rate)
