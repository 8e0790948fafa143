"""Torch vs ONNX Runtime: the stems the Separator produces must agree within 1e-4.

Two architectures: the default (embedded-model) configuration and a small AudioSep-family one
(32 kHz, linear magnitude input, complex mask, 512-d condition), both with random weights; several
lengths (single and multi-chunk), sample rates and channel counts.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from plugin_bridge.engine.backends import OnnxBackend, TorchBackend, make_backend
from plugin_bridge.models.registry import model_fingerprint
from plugin_bridge.engine.separator import Query, SeparationSettings, Separator
from plugin_bridge.errors import PluginBridgeError
from plugin_bridge.models.registry import LoadedModel
from plugin_bridge.models.resunet import ResUNet, ResUNetConfig
from plugin_bridge.testing import HashEncoder, fast_model

SMALL_AUDIOSEP = ResUNetConfig(
    name="audiosep-small-test", sample_rate=32000, n_fft=512, hop=160, input_channels=1, condition_size=512,
    encoder_channels=(8, 16, 24), encoder_pools=((2, 2), (2, 2), (1, 2)), bottleneck_channels=24,
    mask="complex", input_transform="linear")


def small_audiosep_model(seed: int = 3) -> LoadedModel:
    torch.manual_seed(seed)
    net = ResUNet(SMALL_AUDIOSEP).eval()
    # non-trivial BN statistics so the linear-magnitude input is normalised like a trained model
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
    m = LoadedModel(net, "hash-test", SMALL_AUDIOSEP.name, is_random=True, source="test")
    m._encoder = HashEncoder(512)
    return m


def test_audio(rate: int, channels: int, seconds: float, seed: int = 0) -> np.ndarray:
    n = int(round(rate * seconds))
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    x = np.stack([0.3 * np.sin(2 * np.pi * (440 + 110 * c) * t) + 0.1 * rng.standard_normal(n)
                  for c in range(channels)])
    return x.astype(np.float32)


test_audio.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("onnx"))
    out = {}
    for name, m in (("default", fast_model(seed=1)), ("audiosep-small", small_audiosep_model())):
        torch_sep = Separator(m, backend=TorchBackend(m.net, "cpu", threads=2))
        onnx_sep = Separator(m, backend=OnnxBackend(m.net, "cpu", threads=2, cache_root=root))
        out[name] = (m, torch_sep, onnx_sep)
    return out, root


CASES = [
    # (model, rate, channels, seconds, chunk_seconds)
    ("default", 48000, 2, 1.3, 10.0),
    ("default", 44100, 1, 2.7, 1.0),    # several chunks, non-integer rate ratio
    ("default", 16000, 1, 0.4, 10.0),   # the model's own rate, very short
    ("audiosep-small", 32000, 1, 1.7, 10.0),
    ("audiosep-small", 48000, 2, 2.2, 0.75),
    ("audiosep-small", 22050, 3, 0.9, 10.0),
]


@pytest.mark.parametrize("model,rate,channels,seconds,chunk", CASES)
def test_onnx_stems_match_torch(models, model, rate, channels, seconds, chunk):
    m, ts, os_ = models[0][model]
    x = test_audio(rate, channels, seconds)
    queries = [Query("dialogue"), Query("birds", negative="wind")]
    settings = SeparationSettings(chunk_seconds=chunk, overlap=0.25)
    st, rt = ts.separate_array(x, rate, queries, settings)
    so, ro = os_.separate_array(x, rate, queries, settings)
    assert st.shape == so.shape == (2, channels, x.shape[1])
    err = float(np.max(np.abs(st - so)))
    print(f"{model} {rate} Hz x{channels} {seconds}s chunk {chunk}: max stem diff {err:.2e}")
    assert err <= 1e-4, f"{model} {rate} Hz x{channels} {seconds}s: max stem diff {err:.2e}"
    assert float(np.max(np.abs(rt - ro))) <= 1e-4
    # the comparison is meaningful: the stems are neither silent nor the unchanged mix
    assert 0.01 < float(np.sqrt(np.mean(st ** 2))) < float(np.sqrt(np.mean(x ** 2)))
    # stems + residual == mix for both backends
    assert float(np.max(np.abs(so.sum(0) + ro - x))) < 1e-5


def test_onnx_export_is_cached_per_weights(models):
    (out, root) = models
    m, _, onnx_sep = out["default"]
    path = onnx_sep.backend.path
    assert os.path.dirname(path) == root and os.path.basename(path).startswith(m.cfg.name + "-")
    mtime = os.stat(path).st_mtime_ns
    again = OnnxBackend(m.net, "cpu", threads=1, cache_root=root)
    assert again.path == path and os.stat(path).st_mtime_ns == mtime  # reused, not re-exported
    other = fast_model(seed=2)
    assert model_fingerprint(other.net) != model_fingerprint(m.net)
    assert OnnxBackend(other.net, "cpu", threads=1, cache_root=root).path != path


def test_damaged_cached_export_is_rebuilt(models, tmp_path):
    m, ts, _ = models[0]["default"]
    first = OnnxBackend(m.net, "cpu", threads=1, cache_root=str(tmp_path))
    with open(first.path, "wb") as f:
        f.write(b"not an onnx file")
    b = OnnxBackend(m.net, "cpu", threads=1, cache_root=str(tmp_path))
    mag = np.random.default_rng(0).random((1, 1, 20, m.cfg.n_bins), dtype=np.float32)
    cond = HashEncoder(m.cfg.condition_size).encode(["x"])
    assert np.max(np.abs(b.logits(mag, cond) - ts.backend.logits(mag, cond))) < 1e-4


def test_backend_choice_errors():
    m = fast_model()
    with pytest.raises(PluginBridgeError, match="unknown backend"):
        make_backend("tensorrt", m.net)
    if not torch.cuda.is_available():
        with pytest.raises(PluginBridgeError, match="no CUDA GPU"):
            make_backend("torch", m.net, device="cuda")
    assert make_backend("torch", m.net, device="auto").device in ("cpu", "cuda")
