"""Inference backends for the network core (magnitude + condition -> mask logits).

* ``TorchBackend``: PyTorch on CPU or CUDA (``device='auto'`` picks CUDA when available).
* ``OnnxBackend``: ONNX Runtime; the network is exported once (with torch) and cached on disk, keyed by
  the weights file's SHA-256 (a changed file gets a new export); a cached graph runs without torch, so
  together with the numpy + scipy.fft STFT (``spectral.py``) and the ONNX text encoder a CPU run never imports it.
  CUDA provider when ``onnxruntime-gpu`` is installed, else CPU.

Both take and return plain numpy arrays: mag (B, C, T, F) float32, cond (B, D) float32 ->
logits (B, C*K, T, F) float32.
"""
from __future__ import annotations

import copy
import os
import tempfile
import threading
import warnings

import numpy as np

from plugin_bridge.errors import CheckpointError, PluginBridgeError
from plugin_bridge.models.registry import model_fingerprint
from plugin_bridge.paths import cache_dir

__all__ = ["TorchBackend", "OnnxBackend", "make_backend", "resolve_device"]


def _may_have_cuda() -> bool:
    """Whether an NVIDIA GPU could be present, asked without importing torch (3 s on a small machine)."""
    import shutil

    return (os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia")
            or shutil.which("nvidia-smi") is not None)


def resolve_device(device: str = "auto") -> str:
    device = (device or "auto").lower()
    if device == "auto":
        if not _may_have_cuda():
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise PluginBridgeError("--device cuda was asked for, but PyTorch sees no CUDA GPU here; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise PluginBridgeError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


class TorchBackend:
    name = "torch"

    def __init__(self, model, device: str = "auto", threads: int | None = None):
        import torch

        model = _net_of(model)
        self.device = resolve_device(device)
        if threads:
            torch.set_num_threads(threads)
        self.model = model.to(self.device).eval()

    def logits(self, mag: np.ndarray, cond: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            m = torch.from_numpy(np.ascontiguousarray(mag, np.float32)).to(self.device)
            c = torch.from_numpy(np.ascontiguousarray(cond, np.float32)).to(self.device)
            return self.model.mask_logits(m, c).float().cpu().numpy()


def _net_of(model):
    """A ``LoadedModel`` -> its torch network (loaded on demand); a network -> itself."""
    return model.net if hasattr(model, "encoder_id") else model


def export_onnx(model, path: str) -> str:
    """Export the network core with dynamic batch and time axes (opset 18), atomically.

    The model is never moved: a model living on CUDA (shared with a TorchBackend) is exported from a
    CPU copy."""
    import torch

    class _LogitsModule(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, mag, cond):
            return self.model.mask_logits(mag, cond)

    if any(p.device.type != "cpu" for p in model.parameters()):
        model = copy.deepcopy(model).cpu()
    was_training = model.training
    model.eval()
    cfg = model.cfg
    T = cfg.time_multiple * 4
    g = torch.Generator().manual_seed(0)
    mag = torch.rand(2, cfg.input_channels, T, cfg.n_bins, generator=g)
    cond = torch.randn(2, cfg.condition_size, generator=g)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # the TorchScript-based exporter is deprecated but handles our dynamic time axis and needs
            # no onnxscript; its warnings are not actionable for users
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _LogitsModule(model), (mag, cond), tmp, input_names=["mag", "cond"], output_names=["logits"],
                dynamic_axes={"mag": {0: "B", 2: "T"}, "cond": {0: "B"}, "logits": {0: "B", 2: "T"}},
                opset_version=18, dynamo=False)
        os.replace(tmp, path)
    except Exception as exc:
        raise PluginBridgeError(f"ONNX export of the model failed ({exc}); use --backend torch") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        model.train(was_training)
    return path


class OnnxBackend:
    name = "onnx"

    def __init__(self, model, device: str = "auto", threads: int | None = None,
                 cache_root: str | None = None):
        """``model``: a ``LoadedModel`` (the cache key is its weights file's hash, so a cached graph runs
        without torch) or a torch ``ResUNet`` (keyed by a hash of its tensors)."""
        import onnxruntime as ort  # 0.3 s of import that only this backend needs

        root = cache_root or os.path.join(cache_dir(), "onnx")
        key = model.weights_key() if hasattr(model, "weights_key") else model_fingerprint(model)
        path = os.path.join(root, f"{model.cfg.name}-{key}.onnx")
        exported = False
        if not os.path.exists(path):
            export_onnx(_net_of(model), path)
            exported = True
        providers = ["CPUExecutionProvider"]
        want = (device or "auto").lower()
        avail = ort.get_available_providers()
        if want in ("auto", "cuda") and "CUDAExecutionProvider" in avail:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif want == "cuda":
            raise PluginBridgeError("ONNX Runtime has no CUDA provider here (install onnxruntime-gpu), use --device cpu")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or max(1, min(os.cpu_count() or 1, 8))
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # ONNX Runtime's worker threads spin after each run by default, waiting for the next one. Here the
        # STFT, masking and writing run between network calls on the same few cores, so spinning threads
        # only steal their time (`bench --repeat 5`, 2 threads: first-file median 46x real time without spinning against 42x with it).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(path, so, providers=providers)
        except Exception:
            if exported:
                raise
            # a damaged cache entry (disk trouble, another version's file): export again, once
            os.unlink(path)
            export_onnx(_net_of(model), path)
            self.session = ort.InferenceSession(path, so, providers=providers)
        self.providers = self.session.get_providers()
        self.device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        self.path = path
        self._lock = threading.Lock()

    def logits(self, mag: np.ndarray, cond: np.ndarray) -> np.ndarray:
        with self._lock:
            return self.session.run(["logits"], {"mag": np.ascontiguousarray(mag, np.float32),
                                                 "cond": np.ascontiguousarray(cond, np.float32)})[0]


def make_backend(name: str, model, device: str = "auto", threads: int | None = None):
    name = (name or "auto").lower()
    if name == "auto":
        # ONNX Runtime fuses the small element-wise ops that dominate a CPU forward (about 2x faster here);
        # on a GPU PyTorch is the better choice.  If the export or the runtime fails, fall back to PyTorch.
        if resolve_device(device) == "cuda":
            return TorchBackend(model, "cuda", threads)
        try:
            return OnnxBackend(model, "cpu", threads)
        except CheckpointError:
            raise  # damaged weights: no backend can run them
        except Exception as exc:  # noqa: BLE001 - any failure here must not stop the separation
            import warnings

            warnings.warn(f"ONNX Runtime backend unavailable ({exc}); using PyTorch on the CPU")
            return TorchBackend(model, "cpu", threads)
    if name in ("torch", "pytorch"):
        return TorchBackend(model, device, threads)
    if name in ("onnx", "onnxruntime", "ort"):
        return OnnxBackend(model, device, threads)
    raise PluginBridgeError(f"unknown backend {name!r}; use torch or onnx")
