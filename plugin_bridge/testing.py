"""Small deterministic stand-ins used by tests and plumbing checks (no model download, fast).

* ``HashEncoder``: a query encoder whose vector is a deterministic function of the text.
* ``ConstantMaskBackend``: a backend returning the same mask logits everywhere (e.g. identity mask).
* ``fast_separator()``: a Separator over the random-weight default architecture with ``HashEncoder``.
"""
from __future__ import annotations

import hashlib

import numpy as np


class HashEncoder:
    id = "hash-test"

    def __init__(self, dim: int = 384):
        self.dim = dim

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little")
            v = np.random.RandomState(seed).randn(self.dim).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out


class ConstantMaskBackend:
    """Logits that give mask magnitude sigmoid(mag_logit) and no phase rotation."""

    name = "constant"
    device = "cpu"

    def __init__(self, mag_logit: float = 30.0, K: int = 3):
        self.mag_logit = mag_logit
        self.K = K

    def logits(self, mag, cond):
        B, C, T, F = mag.shape
        out = np.zeros((B, C * self.K, T, F), np.float32)
        out[:, 0::self.K] = self.mag_logit
        if self.K == 3:
            out[:, 1::3] = 30.0  # cos = 1, sin = 0
        return out


def fast_model(seed: int = 0):
    from plugin_bridge.models.registry import random_model

    m = random_model(seed=seed)
    m._encoder = HashEncoder(m.cfg.condition_size)
    return m


def fast_separator(backend="torch", seed: int = 0):
    from plugin_bridge.engine.separator import Separator

    return Separator(fast_model(seed), backend=backend, device="cpu")
