"""Separation metrics, as the AudioSep evaluation computes them (spec §6).

* ``sdr``: SNR-style SDR without BSS-Eval projection: 10 log10(mean(ref^2) / mean((est-ref)^2)),
  both terms floored at 1e-10.
* ``si_sdr``: scale-invariant SDR with eps = float32 machine epsilon, as upstream.
* ``sdri`` = sdr(ref, est) - sdr(ref, mixture).
* ``rms``: RMS over the active part of a clip (the level measure of the mixer and few-shot learning).

Checked against fast_bss_eval / the textbook definition in tests/test_metrics.py.
"""
from __future__ import annotations

import numpy as np

__all__ = ["rms", "sdr", "si_sdr", "sdri"]


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64).ravel()
    est = np.asarray(est, np.float64).ravel()
    num = max(float(np.mean(ref ** 2)), 1e-10)
    den = max(float(np.mean((est - ref) ** 2)), 1e-10)
    return float(10 * np.log10(num / den))


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64).ravel()
    est = np.asarray(est, np.float64).ravel()
    eps = float(np.finfo(np.float32).eps)
    a = (eps + np.dot(ref, est)) / (np.dot(ref, ref) + eps)
    e_t = a * ref
    e_r = est - e_t
    return float(10 * np.log10((eps + np.sum(e_t ** 2)) / (eps + np.sum(e_r ** 2))))


def sdri(ref: np.ndarray, est: np.ndarray, mixture: np.ndarray) -> float:
    return sdr(ref, est) - sdr(ref, mixture)


def rms(x: np.ndarray) -> float:
    """RMS over the active part (frames above -60 dB of the peak), so one-shots are not under-weighted."""
    if x.size == 0:
        return 0.0
    peak = float(np.max(np.abs(x)))
    if peak <= 0:
        return 0.0
    act = np.abs(x) > peak * 1e-3
    return float(np.sqrt(np.mean(x[act] ** 2))) if act.any() else 0.0
