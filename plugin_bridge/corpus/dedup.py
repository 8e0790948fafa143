"""Spectral-correlation fingerprints for exact and near-duplicate detection.

Fingerprint = log-mel spectrogram (64 bands, 20 ms hop) of the first 5 s at 16 kHz, floored 80 dB below
its maximum.  Two clips are compared over their common first frames (only when their fingerprint lengths
are within 20 % of each other) with Pearson correlation, which ignores gain changes.  >= 0.99 is a
duplicate; 0.97–0.99 is logged for review.
"""
from __future__ import annotations

import numpy as np

from .common import SR

FP_SECONDS = 5.0
N_FFT = 1024
HOP = 320
N_MELS = 64
DUP_THRESHOLD = 0.99
REVIEW_THRESHOLD = 0.97
LEN_RATIO = 0.8

_MEL = None


def _mel_fb() -> np.ndarray:
    global _MEL
    if _MEL is None:
        def hz2mel(f):
            return 2595.0 * np.log10(1.0 + f / 700.0)

        def mel2hz(m):
            return 700.0 * (10 ** (m / 2595.0) - 1.0)
        freqs = np.linspace(0, SR / 2, N_FFT // 2 + 1)
        pts = mel2hz(np.linspace(hz2mel(30.0), hz2mel(SR / 2), N_MELS + 2))
        fb = np.zeros((N_MELS, len(freqs)), dtype=np.float32)
        for m in range(N_MELS):
            a, c, b = pts[m], pts[m + 1], pts[m + 2]
            up = (freqs - a) / max(c - a, 1e-6)
            down = (b - freqs) / max(b - c, 1e-6)
            fb[m] = np.maximum(0, np.minimum(up, down))
        _MEL = fb
    return _MEL


def fingerprint(x: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) float32 log-mel of the first FP_SECONDS of a 16 kHz mono signal."""
    x = np.asarray(x, dtype=np.float32)[: int(FP_SECONDS * SR)]
    if len(x) < N_FFT:
        x = np.pad(x, (0, N_FFT - len(x)))
    n = 1 + (len(x) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    frames = x[idx] * np.hanning(N_FFT).astype(np.float32)[None, :]
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = spec @ _mel_fb().T
    db = 10 * np.log10(mel + 1e-10)
    db = np.maximum(db, db.max() - 80.0)
    return db.astype(np.float32)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    if n == 0 or min(len(a), len(b)) < LEN_RATIO * max(len(a), len(b)):
        return 0.0
    u = a[:n].ravel().astype(np.float64)
    v = b[:n].ravel().astype(np.float64)
    u = u - u.mean()
    v = v - v.mean()
    d = np.sqrt((u * u).sum() * (v * v).sum())
    return float((u * v).sum() / d) if d > 0 else (1.0 if np.allclose(a[:n], b[:n]) else 0.0)


class FingerprintIndex:
    """All-pairs comparison of many fingerprints, bucketed by length."""

    def __init__(self, fps: list[np.ndarray]):
        self.fps = fps
        self.lens = np.array([len(f) for f in fps])
        self.maxlen = int(self.lens.max()) if len(fps) else 0
        self.P = np.zeros((len(fps), self.maxlen, N_MELS), dtype=np.float32)
        for i, f in enumerate(fps):
            self.P[i, : len(f)] = f

    def matches(self, i: int, threshold: float = REVIEW_THRESHOLD) -> list[tuple[int, float]]:
        """Indices j != i whose correlation with i is >= threshold."""
        L = self.lens[i]
        cand = np.flatnonzero((self.lens >= LEN_RATIO * L) & (self.lens * LEN_RATIO <= L))
        cand = cand[cand != i]
        if cand.size == 0:
            return []
        n = max(1, int(np.floor(LEN_RATIO * L)))
        n = min(n, int(self.lens[cand].min()), L)
        a = self.P[i, :n].ravel().astype(np.float32)
        a = a - a.mean()
        B = self.P[cand, :n].reshape(len(cand), -1)
        B = B - B.mean(axis=1, keepdims=True)
        num = B @ a
        den = np.sqrt((B * B).sum(axis=1) * (a * a).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(den > 0, num / den, 0.0)
        ok = np.flatnonzero(r >= threshold)
        return [(int(cand[k]), float(r[k])) for k in ok]


def find_duplicates(train_fps: list[np.ndarray], reserved_fps: list[np.ndarray]):
    """Greedy dedup in the given (priority) order.

    Returns (keep: list[bool], reasons: dict[i, (kind, j, r)], review: list[(i, kind, j, r)]) where kind is
    'reserved' (j indexes reserved_fps) or 'train' (j indexes train_fps).
    """
    n = len(train_fps)
    idx = FingerprintIndex(list(train_fps) + list(reserved_fps))
    keep = [True] * n
    reasons: dict[int, tuple[str, int, float]] = {}
    review: list[tuple[int, str, int, float]] = []
    for i in range(n):
        for j, r in sorted(idx.matches(i), key=lambda t: -t[1]):
            kind, jj = ("reserved", j - n) if j >= n else ("train", j)
            if kind == "train" and (jj > i or not keep[jj]):
                if r < DUP_THRESHOLD and jj > i:
                    pass  # logged when jj is visited
                continue
            if r >= DUP_THRESHOLD:
                if keep[i]:
                    keep[i] = False
                    reasons[i] = (kind, jj, r)
            else:
                review.append((i, kind, jj, r))
    return keep, reasons, review
