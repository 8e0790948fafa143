"""Official AudioSep checkpoints (``audiosep_base_4M_steps.ckpt`` and the like) -> a ``LoadedModel``.

* The checkpoint is read with :func:`plugin_bridge.checkpoints.load_checkpoint` (tensors only; no code
  from the file ever runs).
* All 332 ``ss_model.*`` tensors are accounted for, strictly: the 327 network tensors load into
  ``ResUNet(ResUNetConfig.audiosep())`` (our module names are upstream's), and the 5 torchlibrosa DFT
  constants ``ss_model.base.stft.*`` / ``ss_model.base.istft.*`` are checked for presence and shape,
  then dropped, because we compute the STFT with ``torch.stft`` (numerically equal, spec 2.2/2.6).
  Any missing or unexpected ``ss_model.*`` key, or a wrong shape, raises ``CheckpointError`` listing them.
  (Upstream loads with ``strict=False``, where a wrong prefix silently loads nothing.)
* The query encoder is the CLAP text tower (``models/encoders/clap.py``) taken from
  ``query_encoder.model.text_*`` in the same file, or from a separate LAION CLAP ``.pt``.
"""
from __future__ import annotations

import os

import torch

from plugin_bridge.checkpoints import extract_state_dict, load_checkpoint
from plugin_bridge.errors import CheckpointError
from plugin_bridge.models.registry import LoadedModel, load_state_strict
from plugin_bridge.models.resunet import ResUNet, ResUNetConfig

__all__ = ["load_audiosep_checkpoint", "build_audiosep_net", "DFT_CONSTANTS", "SS_PREFIX"]

SS_PREFIX = "ss_model."
# torchlibrosa 0.1.0 STFT/ISTFT kernels for n_fft=2048 (deterministic; not used by our torch.stft path)
DFT_CONSTANTS: dict[str, tuple[int, ...]] = {
    "ss_model.base.stft.conv_real.weight": (1025, 1, 2048),
    "ss_model.base.stft.conv_imag.weight": (1025, 1, 2048),
    "ss_model.base.istft.ola_window": (2048,),
    "ss_model.base.istft.conv_real.weight": (2048, 2048, 1),
    "ss_model.base.istft.conv_imag.weight": (2048, 2048, 1),
}


def _listing(names: list[str], limit: int = 25) -> str:
    return ", ".join(names[:limit]) + (f" ... (+{len(names) - limit} more)" if len(names) > limit else "")


def build_audiosep_net(state: dict[str, torch.Tensor], source: str = "checkpoint") -> ResUNet:
    """Strictly load the ``ss_model.*`` tensors of ``state`` into ``ResUNet(ResUNetConfig.audiosep())``."""
    ss = {k: v for k, v in state.items() if k.startswith(SS_PREFIX)}
    if not ss:
        prefixes = sorted({k.split(".", 1)[0] for k in state})[:10]
        raise CheckpointError(
            f"{source}: no 'ss_model.*' tensors, so this is not an AudioSep checkpoint "
            f"(top-level prefixes found: {prefixes})")
    cfg = ResUNetConfig.audiosep()
    with torch.device("meta"):
        expected = {SS_PREFIX + k: tuple(v.shape) for k, v in ResUNet(cfg).state_dict().items()}
    expected.update(DFT_CONSTANTS)
    missing = sorted(k for k in expected if k not in ss)
    unexpected = sorted(k for k in ss if k not in expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_listing(unexpected)}")
        raise CheckpointError(
            f"{source}: the ss_model weights do not match AudioSep ResUNet30 ({len(expected)} tensors expected); "
            + "; ".join(parts))
    bad = [f"{k} {tuple(ss[k].shape)} (expected {shape})" for k, shape in expected.items()
           if tuple(ss[k].shape) != shape]
    if bad:
        raise CheckpointError(f"{source}: ss_model tensor shapes do not match AudioSep ResUNet30: {_listing(bad, 10)}")
    net = ResUNet(cfg)
    tensors = {k[len(SS_PREFIX):]: (v.float() if v.is_floating_point() else v)
               for k, v in ss.items() if k not in DFT_CONSTANTS}
    load_state_strict(net, tensors, source)
    return net.eval()


def load_audiosep_checkpoint(path: str, tokenizer: str | None = None, clap_ckpt: str | None = None,
                             text_config: dict | None = None, hf_cache_dir: str | None = None) -> LoadedModel:
    """Load an official AudioSep checkpoint.

    ``tokenizer``: folder with roberta-base ``vocab.json`` + ``merges.txt`` (else the plugin-bridge data
    folder or the local Hugging Face cache).  ``clap_ckpt``: a LAION CLAP ``.pt`` for the text tower (needed
    only when the AudioSep file does not contain ``query_encoder.model.text_branch.*``).
    ``text_config``: RoBERTa config override (tests use a tiny text tower).
    """
    from plugin_bridge.models.encoders.clap import ClapTextEncoder, resolve_tokenizer_files

    from plugin_bridge.checkpoints import check_checkpoint_file

    check_checkpoint_file(path)  # a file that is no checkpoint at all is named as such first
    resolve_tokenizer_files(tokenizer, hf_cache_dir)  # fail fast, before reading a 1 GB file
    state = extract_state_dict(load_checkpoint(path), path)
    net = build_audiosep_net(state, path)
    has_text = any(k.startswith("query_encoder.model.text_branch.") for k in state)
    opts = dict(tokenizer=tokenizer, config=text_config, hf_cache_dir=hf_cache_dir)
    if clap_ckpt:
        encoder = ClapTextEncoder(checkpoint=clap_ckpt, **opts)
        opts["checkpoint"] = clap_ckpt
    elif has_text:
        encoder = ClapTextEncoder({k: v for k, v in state.items() if k.startswith("query_encoder.model.text_")},
                                  source=path, **opts)
        opts["checkpoint"] = path
    else:
        raise CheckpointError(
            f"{path}: the checkpoint holds the separator but no CLAP text tower "
            "(query_encoder.model.text_branch.*); also give the LAION CLAP checkpoint "
            "music_speech_audioset_epoch_15_esc_89.98.pt for the text encoder")
    del state
    if encoder.dim != net.cfg.condition_size:
        raise CheckpointError(f"{path}: text encoder gives {encoder.dim}-d vectors but the separator expects "
                              f"{net.cfg.condition_size}-d conditions")
    name = f"AudioSep ResUNet30 ({os.path.basename(path)})"
    return LoadedModel(net, encoder.id, name, is_random=False, source=path,
                       metadata={"format": "audiosep-lightning", "text_tower": encoder.weights_hash},
                       encoder_options=opts, _encoder=encoder)
