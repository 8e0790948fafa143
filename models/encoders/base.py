from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

from plugin_bridge.paths import cache_dir

__all__ = ["QueryEncoder", "EmbeddingCache"]


class EmbeddingCache:
    """One small .npy per (encoder id, text); writes are atomic, unreadable entries are recomputed."""

    def __init__(self, encoder_id: str, root: str | None = None):
        self.encoder_id = encoder_id
        self.root = os.path.join(root or cache_dir(), "embeddings",
                                 hashlib.sha256(encoder_id.encode()).hexdigest()[:16])

    def _path(self, text: str) -> str:
        h = hashlib.sha256((self.encoder_id + "\0" + text).encode("utf-8")).hexdigest()
        return os.path.join(self.root, h[:2], h + ".npy")

    def get(self, text: str) -> np.ndarray | None:
        p = self._path(text)
        try:
            v = np.load(p, allow_pickle=False)
        except (OSError, ValueError):
            return None
        return v if v.ndim == 1 and np.all(np.isfinite(v)) else None

    def put(self, text: str, vec: np.ndarray) -> None:
        p = self._path(text)
        try:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(p), suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.asarray(vec, np.float32), allow_pickle=False)
            os.replace(tmp, p)
        except OSError:
            pass  # a cache that cannot be written is not an error


class QueryEncoder:
    """Base class: subclasses set ``id`` and ``dim`` and implement ``_encode(texts) -> (N, dim)``."""

    id: str = "base"
    dim: int = 0

    def __init__(self, use_cache: bool = True):
        self.cache = EmbeddingCache(self.id) if use_cache else None

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = [normalise_query(t) for t in texts]
        out = np.zeros((len(texts), self.dim), np.float32)
        todo = []
        for i, t in enumerate(texts):
            v = self.cache.get(t) if self.cache else None
            if v is not None and v.shape == (self.dim,):
                out[i] = v
            else:
                todo.append(i)
        if todo:
            vecs = np.asarray(self._encode([texts[i] for i in todo]), np.float32)
            for i, v in zip(todo, vecs):
                out[i] = v
                if self.cache:
                    self.cache.put(texts[i], v)
        return out


def normalise_query(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError("a query must be text")
    t = " ".join(text.strip().split())
    if not t:
        from plugin_bridge.errors import ConfigError

        raise ConfigError("empty query text")
    return t
