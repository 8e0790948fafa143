"""Combining per-query masks: negative queries and energy sharing between several queries.

Masks are complex tensors M = |M| e^{j phi} on the model's grid, shape (Q, C, T, F).

* Negative query: the stem keeps ``|M_pos| * (1 - |M_neg|)`` (phase of the positive mask), so what the
  negative query claims is removed from that stem.
* Sharing: where the magnitudes of all queries add up to more than 1 in a time-frequency bin, they are
  divided by their sum, so the stems together never claim more than the mix holds and the residual
  (mix - sum of stems) never has to carry negative energy.
"""
from __future__ import annotations

import numpy as np

__all__ = ["combine_masks", "magnitude", "complex_masks"]


def magnitude(spec: np.ndarray) -> np.ndarray:
    """|X| with the power clamped at 1e-10, exactly as upstream feeds the network (float32)."""
    return np.sqrt(np.maximum(spec.real ** 2 + spec.imag ** 2, np.float32(1e-10))).astype(np.float32, copy=False)


def complex_masks(logits: np.ndarray, K: int) -> np.ndarray:
    """Network logits (B, C*K, T, F) -> complex masks (B, C, T, F): sigmoid magnitude times the unit phasor
    of (tanh, tanh) (the numpy twin of ``resunet.masks_from_logits``)."""
    B, CK, T, Fb = logits.shape
    x = logits.reshape(B, CK // K, K, T, Fb)
    mag = 1.0 / (1.0 + np.exp(-x[:, :, 0]))
    if K == 1:
        return mag.astype(np.complex64)
    r = np.tanh(x[:, :, 1])
    i = np.tanh(x[:, :, 2])
    norm = np.maximum(np.sqrt(r * r + i * i), np.float32(1e-10))
    return (mag * (r / norm) + 1j * (mag * (i / norm))).astype(np.complex64)


def combine_masks(pos: np.ndarray, neg: np.ndarray | None = None,
                  has_neg: list[bool] | None = None, share: bool = True) -> np.ndarray:
    """pos: (Q, C, T, F) complex; neg: same shape (rows ignored where has_neg is False)."""
    out = pos
    if neg is not None and has_neg is not None and any(has_neg):
        keep = np.ones(pos.shape, dtype=pos.real.dtype)
        for q, flag in enumerate(has_neg):
            if flag:
                keep[q] = np.clip(1.0 - np.abs(neg[q]), 0.0, 1.0)
        out = out * keep
    if share and out.shape[0] > 1:
        total = np.abs(out).sum(axis=0, keepdims=True)
        scale = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-12), 1.0).astype(out.real.dtype)
        out = out * scale
    return out
