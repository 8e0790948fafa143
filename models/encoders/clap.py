"""CLAP text tower (RoBERTa-base + projection), the query encoder of official AudioSep weights.

Architecture (AudioSep spec 3.2/3.3): ``RobertaModel(add_pooling_layer=True)`` pooled output (768) ->
``Linear(768, 512) -> ReLU -> Linear(512, 512)`` -> L2 normalisation, 512-d.

Weights come from
* an AudioSep Lightning checkpoint: ``query_encoder.model.text_branch.*`` / ``...text_projection.{0,2}.*``;
* or a LAION CLAP ``.pt`` (``text_branch.*`` / ``text_projection.*``, possibly under ``state_dict`` and/or
  with a ``module.`` prefix).
The obsolete ``text_branch.embeddings.position_ids`` buffer (transformers < 4.31) is ignored; every other
tensor of the text tower must be present with the right shape (strict load).

Tokenizer: the roberta-base byte-level BPE files ``vocab.json`` + ``merges.txt``, which are in no
checkpoint.  Looked up, offline only, in (1) the folder the user gives (``--tokenizer DIR``), (2) the
plugin-bridge data folder ``<data>/tokenizers/roberta-base/``, (3) the local Hugging Face cache
(``huggingface_hub.try_to_load_from_cache``, which never touches the network).  Queries are tokenized
without padding (upstream pads to 512; the pooled output is padding-invariant, spec 3.2) and truncated
at 512 tokens.

The encoder id includes a hash of the text-tower weights, its config and the tokenizer files, so the
on-disk embedding cache never mixes vectors of different models.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import constants as hf_constants, try_to_load_from_cache
from torch import nn

from plugin_bridge.errors import CheckpointError, EncoderUnavailableError
from plugin_bridge.models.encoders.base import QueryEncoder
from plugin_bridge.paths import data_dir

__all__ = ["ClapTextEncoder", "ClapTextTower", "ROBERTA_BASE", "split_text_tower", "resolve_tokenizer_files",
           "user_tokenizer_dir"]

# RoBERTa-base as used by CLAP (spec 3.3).
ROBERTA_BASE = dict(
    vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
    eos_token_id=2, hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    initializer_range=0.02,
)
TOKENIZER_FILES = ("vocab.json", "merges.txt")
HF_REPOS = ("FacebookAI/roberta-base", "roberta-base")
_IGNORED = ("text_branch.embeddings.position_ids",)


def user_tokenizer_dir() -> str:
    """``<plugin-bridge data dir>/tokenizers/roberta-base`` (``PLUGIN_BRIDGE_DATA`` overrides the data dir)."""
    return os.path.join(data_dir(), "tokenizers", "roberta-base")


def _hf_cache_lookup(hf_cache_dir: str | None) -> tuple[str, str] | None:
    for repo in HF_REPOS:
        found = []
        for name in TOKENIZER_FILES:
            p = try_to_load_from_cache(repo, name, cache_dir=hf_cache_dir)
            if isinstance(p, str) and os.path.isfile(p):
                found.append(p)
        if len(found) == 2:
            return found[0], found[1]
    return None


def resolve_tokenizer_files(tokenizer_dir: str | None = None, hf_cache_dir: str | None = None) -> tuple[str, str]:
    """(vocab.json, merges.txt) paths, offline; EncoderUnavailableError says what is missing and where."""
    if tokenizer_dir:
        if not os.path.isdir(tokenizer_dir):
            raise EncoderUnavailableError(
                f"tokenizer folder {tokenizer_dir} does not exist; it must hold the roberta-base files "
                f"{' and '.join(TOKENIZER_FILES)}")
        missing = [n for n in TOKENIZER_FILES if not os.path.isfile(os.path.join(tokenizer_dir, n))]
        if missing:
            raise EncoderUnavailableError(
                f"tokenizer folder {tokenizer_dir} lacks {', '.join(missing)}; the CLAP text encoder needs the "
                f"roberta-base files {' and '.join(TOKENIZER_FILES)} (from https://huggingface.co/FacebookAI/"
                "roberta-base) in that folder")
        return tuple(os.path.join(tokenizer_dir, n) for n in TOKENIZER_FILES)  # type: ignore[return-value]
    udir = user_tokenizer_dir()
    if all(os.path.isfile(os.path.join(udir, n)) for n in TOKENIZER_FILES):
        return tuple(os.path.join(udir, n) for n in TOKENIZER_FILES)  # type: ignore[return-value]
    hit = _hf_cache_lookup(hf_cache_dir)
    if hit:
        return hit
    hf_where = hf_cache_dir or hf_constants.HF_HUB_CACHE
    raise EncoderUnavailableError(
        "the CLAP text encoder (AudioSep models) needs the roberta-base tokenizer files vocab.json and "
        "merges.txt, which are not part of any AudioSep or CLAP checkpoint. Missing: vocab.json, merges.txt "
        f"(not given with --tokenizer, not in {udir}, and no roberta-base snapshot in the Hugging Face cache "
        f"{hf_where}). Download both files from https://huggingface.co/FacebookAI/roberta-base and either "
        f"put them in {udir} or pass --tokenizer FOLDER.")


def _build_tokenizer(vocab: str, merges: str):
    from transformers import RobertaTokenizer

    try:
        with open(vocab, encoding="utf-8") as f:
            table = json.load(f)
        if not isinstance(table, dict):
            raise ValueError("vocab.json is not a token -> id table")
        with open(merges, encoding="utf-8") as f:
            n_merges = sum(1 for line in f if line.strip() and not line.startswith("#version"))
    except (OSError, ValueError) as exc:
        raise EncoderUnavailableError(f"unreadable tokenizer files {vocab} / {merges}: {exc}") from None
    for special in ("<s>", "</s>", "<pad>", "<unk>"):
        if special not in table:
            raise EncoderUnavailableError(f"{vocab} is not a RoBERTa vocabulary (no {special} token)")
    # Positional (vocab, merges) paths work for both the slow (transformers 4) and the tokenizers-backed
    # (transformers 5) RobertaTokenizer; keyword names differ between them.
    tok = RobertaTokenizer(vocab, merges)
    probe = tok("a")["input_ids"]
    if len(tok) < len(table) or probe[0] != table["<s>"] or probe[-1] != table["</s>"]:
        raise EncoderUnavailableError(f"the tokenizer built from {vocab} / {merges} is not usable "
                                      f"({len(tok)} tokens, {n_merges} merges)")
    return tok


def split_text_tower(tensors: dict, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Pick the text tower out of an AudioSep or LAION CLAP state dict: keys ``text_branch.*`` and
    ``text_projection.*`` with any prefix (``query_encoder.model.``, ``module.``) removed."""
    for prefix in ("query_encoder.model.", "module.", "", "model.", "module.model."):
        keys = [k for k in tensors if k.startswith(prefix + "text_branch.")]
        if keys:
            out = {}
            for k, v in tensors.items():
                if k.startswith(prefix + "text_branch.") or k.startswith(prefix + "text_projection."):
                    name = k[len(prefix):]
                    if name not in _IGNORED:
                        out[name] = v
            return out
    raise CheckpointError(
        f"{source}: holds no CLAP text tower (no 'query_encoder.model.text_branch.*' or 'text_branch.*' "
        "tensors); give the LAION CLAP checkpoint (music_speech_audioset_epoch_15_esc_89.98.pt) for the text encoder")


class ClapTextTower(nn.Module):
    """``text_branch`` (RobertaModel) + ``text_projection`` (Linear-ReLU-Linear): CLAP's key names."""

    def __init__(self, config: dict, proj_in: int, proj_hidden: int, proj_out: int):
        super().__init__()
        from transformers import RobertaConfig, RobertaModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        cfg = RobertaConfig(**config)
        self.text_branch = RobertaModel(cfg, add_pooling_layer=True)
        self.text_projection = nn.Sequential(nn.Linear(proj_in, proj_hidden), nn.ReLU(), nn.Linear(proj_hidden, proj_out))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.text_branch(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return F.normalize(self.text_projection(pooled), dim=-1)


def _hash_tensors(h, tensors: dict[str, torch.Tensor]) -> None:
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")


class ClapTextEncoder(QueryEncoder):
    """Text -> 512-d L2-normalised CLAP embedding (AudioSep's condition vector)."""

    dim = 512

    def __init__(self, state: dict[str, torch.Tensor] | None = None, *, checkpoint: str | None = None,
                 tokenizer: str | None = None, config: dict | None = None, hf_cache_dir: str | None = None,
                 use_cache: bool = True, source: str | None = None):
        """``state``: text-tower tensors (any of the accepted key layouts), or ``checkpoint``: a path to an
        AudioSep ``.ckpt`` or LAION CLAP ``.pt``.  ``config`` overrides RoBERTa-base numbers (tests use a
        tiny one).  ``tokenizer``: folder with vocab.json + merges.txt."""
        # tokenizer first: a missing file fails before any heavy work
        vocab, merges = resolve_tokenizer_files(tokenizer, hf_cache_dir)
        self.tokenizer = _build_tokenizer(vocab, merges)
        src = source or checkpoint or "text-tower weights"
        if state is None:
            if checkpoint is None:
                raise ValueError("give the text-tower tensors or a checkpoint path")
            from plugin_bridge.checkpoints import extract_state_dict, load_checkpoint

            state = extract_state_dict(load_checkpoint(checkpoint), checkpoint)
        tensors = split_text_tower(state, src)
        self.config = {**ROBERTA_BASE, **(config or {})}
        try:
            w0 = tensors["text_projection.0.weight"]
            w2 = tensors["text_projection.2.weight"]
        except KeyError as exc:
            raise CheckpointError(f"{src}: CLAP text projection tensor {exc.args[0]} is missing") from None
        if len(self.tokenizer) > self.config["vocab_size"]:
            raise EncoderUnavailableError(
                f"the tokenizer has {len(self.tokenizer)} tokens but the text encoder only "
                f"{self.config['vocab_size']}; use the roberta-base vocab.json/merges.txt")
        self.tower = ClapTextTower(self.config, int(w0.shape[1]), int(w0.shape[0]), int(w2.shape[0]))
        from plugin_bridge.models.registry import load_state_strict

        load_state_strict(self.tower, {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, src)
        self.tower.eval()
        self.dim = int(w2.shape[0])
        self.max_length = min(512, int(self.config["max_position_embeddings"]) - 2)
        h = hashlib.sha256()
        h.update(json.dumps(self.config, sort_keys=True).encode())
        _hash_tensors(h, dict(self.tower.state_dict()))
        for p in (vocab, merges):
            with open(p, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
        self.weights_hash = h.hexdigest()[:16]
        self.id = f"clap-roberta-{self.weights_hash}"
        self._lock = threading.Lock()
        super().__init__(use_cache=use_cache)

    def token_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"])

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        with self._lock, torch.inference_mode():
            for i, t in enumerate(texts):
                ids = torch.tensor([self.token_ids(t)], dtype=torch.long)
                out[i] = self.tower(ids, torch.ones_like(ids)).numpy()[0]
        return out
