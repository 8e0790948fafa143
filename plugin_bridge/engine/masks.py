"""Combining per-query masks: negative queries and energy sharing between several queries.

Masks are complex tensors M = |M| e^{j phi} on the model's grid, shape (Q, C, T, F).

* Negative query: the stem keeps ``|M_pos| * (1 - |M_neg|)`` (phase of the positive mask), so what the
  negative query claims is removed from that stem.
* Sharing: where the magnitudes of all queries add up to more than 1 in a time-frequency bin, they are
  divided by their sum, so the stems together never claim more than the mix holds and the residual
  (mix - sum of stems) never has to carry negative energy.
"""
from __future__ import annotations

import torch

__all__ = ["combine_masks"]


def combine_masks(pos: torch.Tensor, neg: torch.Tensor | None = None,
                  has_neg: list[bool] | None = None, share: bool = True) -> torch.Tensor:
    """pos: (Q, C, T, F) complex; neg: same shape (rows ignored where has_neg is False)."""
    out = pos
    if neg is not None and has_neg is not None and any(has_neg):
        keep = torch.ones(pos.shape[0], *pos.shape[1:], dtype=pos.real.dtype)
        for q, flag in enumerate(has_neg):
            if flag:
                keep[q] = torch.clamp(1.0 - neg[q].abs(), 0.0, 1.0)
        out = out * keep
    if share and out.shape[0] > 1:
        total = out.abs().sum(dim=0, keepdim=True)
        scale = torch.where(total > 1.0, 1.0 / torch.clamp(total, min=1e-12), torch.ones_like(total))
        out = out * scale
    return out
