"""Waveform overviews: min/max pyramids computed in a background thread and cached on disk.

An overview of a file holds, for each level ``k``, the minimum and maximum sample (over all channels)
of every block of ``BLOCK0 * FACTOR**k`` frames.  Level 0 is computed by streaming the file in large
chunks (bounded memory, ~1 s for an hour of audio); the other levels are reductions of level 0.

The cache file lives in ``<cache dir>/overviews/<sha1(path|mtime_ns|size)>.npz`` where the cache
dir is ``$PLUGIN_BRIDGE_CACHE`` or the platformdirs user cache dir.  A file that changes on disk
(mtime or size) gets a new key, so a stale overview is never shown.  No Qt in this module.
"""
from __future__ import annotations

import hashlib
import io
import os
import queue
import tempfile
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from plugin_bridge.audio_io import open_audio
from plugin_bridge.paths import cache_dir

__all__ = ["BLOCK0", "FACTOR", "Overview", "OverviewCache", "compute_overview", "read_samples",
           "sample_envelope"]

BLOCK0 = 256          # frames per block at level 0
FACTOR = 4            # each level reduces FACTOR blocks of the level below
CHUNK = BLOCK0 * 4096  # frames read at a time while computing
FORMAT_VERSION = 1


def _key(path: str) -> str:
    st = os.stat(path)
    raw = f"{FORMAT_VERSION}|{os.path.abspath(path)}|{st.st_mtime_ns}|{st.st_size}"
    return hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Overview:
    path: str
    sample_rate: int
    channels: int
    frames: int
    levels: list[np.ndarray]          # level k: float32 (2, n_blocks) rows = (min, max)

    @staticmethod
    def block(level: int) -> int:
        return BLOCK0 * FACTOR ** level

    def envelope(self, start: float, end: float, npx: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel (min, max) of file frames [start, end) split into ``npx`` equal columns.

        Columns outside the file are NaN.  Uses the coarsest level whose block is no longer than
        one column, so the cost is O(npx * FACTOR) whatever the zoom."""
        npx = max(int(npx), 1)
        fpp = (end - start) / npx
        level = 0
        while level + 1 < len(self.levels) and self.block(level + 1) <= fpp:
            level += 1
        arr = self.levels[level]
        bs = self.block(level)
        n = arr.shape[1]
        edges = start + np.arange(npx + 1, dtype=np.float64) * fpp
        lo = np.floor(edges[:-1] / bs).astype(np.int64)
        hi = np.ceil(edges[1:] / bs).astype(np.int64)
        hi = np.maximum(hi, lo + 1)
        valid = (hi > 0) & (lo < n) & (edges[1:] > 0) & (edges[:-1] < self.frames)
        lo_c = np.clip(lo, 0, n - 1)
        hi_c = np.clip(hi, 1, n)
        mins = np.full(npx, np.nan, np.float32)
        maxs = np.full(npx, np.nan, np.float32)
        if n == 0 or not valid.any():
            return mins, maxs
        # every column spans at most ceil(fpp / bs) + 2 blocks: gather them in one (npx, W) take
        W = min(int(np.ceil(fpp / bs)) + 2, n + 2)
        idx = lo_c[:, None] + np.arange(W)[None, :]
        inside = idx < hi_c[:, None]
        idx = np.minimum(idx, n - 1)
        mins[:] = np.where(inside, arr[0][idx], np.inf).min(axis=1)
        maxs[:] = np.where(inside, arr[1][idx], -np.inf).max(axis=1)
        mins[~valid] = np.nan
        maxs[~valid] = np.nan
        return mins, maxs

    # -- disk -------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        arrays = {f"l{k}": a for k, a in enumerate(self.levels)}
        meta = np.array([FORMAT_VERSION, self.sample_rate, self.channels, self.frames, len(self.levels)], np.int64)
        np.savez(buf, meta=meta, **arrays)
        return buf.getvalue()

    @classmethod
    def from_file(cls, path: str, npz_path: str) -> "Overview":
        with np.load(npz_path, allow_pickle=False) as z:
            meta = z["meta"]
            if int(meta[0]) != FORMAT_VERSION:
                raise ValueError("old overview format")
            levels = [z[f"l{k}"] for k in range(int(meta[4]))]
        return cls(path, int(meta[1]), int(meta[2]), int(meta[3]), levels)


def _reduce(arr: np.ndarray) -> np.ndarray:
    n = arr.shape[1]
    m = -(-n // FACTOR)
    pad = m * FACTOR - n
    if pad:
        arr = np.concatenate([arr, arr[:, -1:].repeat(pad, axis=1)], axis=1)
    a = arr.reshape(2, m, FACTOR)
    return np.stack([a[0].min(axis=1), a[1].max(axis=1)]).astype(np.float32)


def compute_overview(path: str, progress: Callable[[float], None] | None = None,
                     cancel: threading.Event | None = None) -> Overview:
    """Stream ``path`` and build its pyramid (levels until a level has <= 64 blocks)."""
    f = open_audio(path)
    try:
        rate, ch, frames = int(round(f.samplerate)), int(f.num_channels), int(f.frames)
        parts = []
        done = 0
        while done < frames:
            if cancel is not None and cancel.is_set():
                raise InterruptedError("overview cancelled")
            x = f.read(min(CHUNK, frames - done))
            n = x.shape[1]
            if n == 0:
                break
            mn = x.min(axis=0)
            mx = x.max(axis=0)
            pad = (-n) % BLOCK0
            if pad:
                mn = np.concatenate([mn, np.repeat(mn[-1:], pad)])
                mx = np.concatenate([mx, np.repeat(mx[-1:], pad)])
            parts.append(np.stack([mn.reshape(-1, BLOCK0).min(axis=1), mx.reshape(-1, BLOCK0).max(axis=1)]))
            done += n
            if progress:
                progress(done / frames)
    finally:
        f.close()
    l0 = np.concatenate(parts, axis=1).astype(np.float32) if parts else np.zeros((2, 0), np.float32)
    np.nan_to_num(l0, copy=False)
    levels = [l0]
    while levels[-1].shape[1] > 64:
        levels.append(_reduce(levels[-1]))
    return Overview(os.path.abspath(path), rate, ch, frames, levels)


def read_samples(path: str, start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) of ``path`` as float32 (C, n), zero-padded outside the file (for drawing
    individual samples when zoomed in past the overview's resolution)."""
    f = open_audio(path)
    try:
        ch, frames = int(f.num_channels), int(f.frames)
        out = np.zeros((ch, max(stop - start, 0)), np.float32)
        a, b = max(start, 0), min(stop, frames)
        if b > a:
            f.seek(a)
            x = f.read(b - a)
            out[:, a - start:a - start + x.shape[1]] = x
        return out
    finally:
        f.close()


def sample_envelope(x: np.ndarray, first: int, start: float, fpp: float, npx: int, frames: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel (min, max) over all channels, straight from samples (zoomed in past the overview).

    ``x`` (C, n) holds file frames [first, first + n); column ``i`` covers file frames
    [floor(start + i * fpp), floor(start + (i + 1) * fpp)) (at least one frame; the last column runs
    to the end of ``x``).  Columns wholly outside [0, frames) are NaN."""
    npx = max(int(npx), 1)
    edges = start + np.arange(npx + 1, dtype=np.float64) * fpp
    starts = np.clip(np.floor(edges[:-1]).astype(np.int64) - first, 0, x.shape[1] - 1)
    mins = np.minimum.reduceat(x.min(axis=0), starts).astype(np.float32)
    maxs = np.maximum.reduceat(x.max(axis=0), starts).astype(np.float32)
    outside = (edges[1:] <= 0) | (edges[:-1] >= frames)
    mins[outside] = np.nan
    maxs[outside] = np.nan
    return mins, maxs


class OverviewCache:
    """Thread-backed overview store.  ``request(path, cb)`` returns the overview at once when it is
    in memory, else schedules it (disk cache, or compute) and later calls ``cb(path, overview, error)``
    from the worker thread."""

    def __init__(self, directory: str | None = None):
        self.directory = os.path.join(directory or cache_dir(), "overviews")
        self._mem: dict[str, Overview] = {}
        self._keys: dict[str, str] = {}
        self._progress: dict[str, float] = {}
        self._pending: dict[str, list[Callable]] = {}
        self._q: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="overview-cache", daemon=True)
        self._thread.start()
        self.computed = 0   # overviews computed from audio (not read from the disk cache)
        self.loaded = 0     # overviews read from the disk cache

    def cache_path(self, path: str) -> str:
        return os.path.join(self.directory, _key(path) + ".npz")

    def get(self, path: str) -> Overview | None:
        path = os.path.abspath(path)
        with self._lock:
            ov = self._mem.get(path)
            if ov is None:
                return None
            try:
                if self._keys.get(path) != _key(path):
                    self._mem.pop(path, None)
                    return None
            except OSError:
                return None
            return ov

    def progress(self, path: str) -> float | None:
        return self._progress.get(os.path.abspath(path))

    def request(self, path: str, callback: Callable[[str, Overview | None, Exception | None], None] | None = None
                ) -> Overview | None:
        path = os.path.abspath(path)
        ov = self.get(path)
        if ov is not None:
            return ov
        with self._lock:
            first = path not in self._pending
            self._pending.setdefault(path, [])
            if callback is not None:
                self._pending[path].append(callback)
        if first:
            self._progress[path] = 0.0
            self._q.put(path)
        return None

    def wait(self, path: str, timeout: float = 30.0) -> Overview:
        """Blocking helper (scripts/tests)."""
        done = threading.Event()
        box: list = []

        def cb(p, ov, err):
            box.append((ov, err))
            done.set()

        ov = self.request(path, cb)
        if ov is not None:
            return ov
        if not done.wait(timeout):
            raise TimeoutError(f"overview of {path} not ready after {timeout} s")
        ov, err = box[0]
        if err:
            raise err
        return ov

    def close(self) -> None:
        self._stop.set()
        self._q.put(None)

    def _load_or_compute(self, path: str) -> Overview:
        cp = self.cache_path(path)
        if os.path.exists(cp):
            try:
                ov = Overview.from_file(path, cp)
                self.loaded += 1
                return ov
            except Exception:
                pass  # corrupt or old cache file: recompute
        ov = compute_overview(path, progress=lambda f: self._progress.__setitem__(path, f), cancel=self._stop)
        self.computed += 1
        try:
            os.makedirs(self.directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".ov-", suffix=".npz", dir=self.directory)
            with os.fdopen(fd, "wb") as fh:
                fh.write(ov.to_bytes())
            os.replace(tmp, cp)
        except OSError:
            pass  # the cache is an optimisation only
        return ov

    def _work(self) -> None:
        while not self._stop.is_set():
            path = self._q.get()
            if path is None:
                break
            ov, err = None, None
            try:
                key = _key(path)
                ov = self._load_or_compute(path)
                with self._lock:
                    self._mem[path] = ov
                    self._keys[path] = key
            except Exception as exc:  # unreadable audio: reported to the callbacks, never raised here
                err = exc
            with self._lock:
                cbs = self._pending.pop(path, [])
            self._progress.pop(path, None)
            for cb in cbs:
                try:
                    cb(path, ov, err)
                except Exception:
                    pass
