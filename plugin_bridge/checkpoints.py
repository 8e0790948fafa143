"""Safe loading of PyTorch checkpoints (``.ckpt`` / ``.pt`` / ``.pth``): tensors only, never code.

``torch.load(..., weights_only=True)`` only rebuilds tensors and plain containers.  Lightning
checkpoints (the official AudioSep file among them) may also reference harmless classes: Lightning
callbacks' state, hyper-parameter containers (``AttributeDict``, omegaconf ``DictConfig``,
``argparse.Namespace``), numpy scalars and dtypes.  ``weights_only`` refuses those.  In that case we
list every global the pickle refers to (``torch.serialization.get_unsafe_globals_in_checkpoint``, a
static scan that runs nothing) and:

* if **all** of them come from an allow-listed namespace of harmless metadata classes, we load again
  with an *inert stand-in class* registered under each name (``torch.serialization.safe_globals``).
  The real classes are never imported and their code never runs: the stand-in only records the
  arguments and state it is given, so e.g. a numpy scalar becomes an ``InertGlobal`` object;
* otherwise (``os.system``, ``builtins.eval``, ``subprocess.Popen``, any unknown module ...) we raise
  :class:`~plugin_bridge.errors.CheckpointError` naming the offending globals, without executing anything.

Zip-format checkpoints (every ``torch.save`` since torch 1.6) are memory-mapped (``mmap=True``) so a
1 GB checkpoint does not have to be read into RAM at once.
"""
from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from typing import Any

import torch

from plugin_bridge.errors import CheckpointError
from plugin_bridge.fileio import check_input_file

__all__ = ["load_checkpoint", "check_checkpoint_file", "extract_state_dict", "InertGlobal", "SAFE_NAMESPACES", "SAFE_EXACT",
           "classify_globals"]

# Modules whose classes may appear in a Lightning checkpoint as metadata.  Stand-ins replace them, so
# listing a namespace here never lets its code run; it only says "we accept finding this name".
SAFE_NAMESPACES: tuple[str, ...] = (
    "pytorch_lightning",
    "lightning",
    "lightning_fabric",
    "lightning_utilities",
    "omegaconf",
    "numpy",
    "torchmetrics",
)
# Individual harmless names outside those namespaces.
SAFE_EXACT: frozenset[str] = frozenset({
    "argparse.Namespace",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
    "pathlib.PurePosixPath",
    "pathlib.PureWindowsPath",
    "typing.Any",
})


class InertGlobal:
    """Stand-in for an allow-listed class or function found in a checkpoint.

    Calling, instantiating or building it only stores what it was given; nothing else happens.
    ``qualname`` says which global it replaced.
    """

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.qualname}>"


def _stub_for(name: str) -> type:
    return type("Inert_" + name.replace(".", "_"), (InertGlobal,), {"qualname": name, "__module__": __name__})


def _is_safe_name(name: str) -> bool:
    if name in SAFE_EXACT:
        return True
    module = name.rsplit(".", 1)[0] if "." in name else ""
    return any(module == ns or module.startswith(ns + ".") for ns in SAFE_NAMESPACES)


def classify_globals(names) -> tuple[list[str], list[str]]:
    """Split global names into (allow-listed, refused)."""
    ok, bad = [], []
    for n in sorted(set(names)):
        (ok if _is_safe_name(n) else bad).append(n)
    return ok, bad


def _torch_load(path: str, mmap: bool) -> Any:
    with warnings.catch_warnings():
        # "Detected pickle protocol N ...": informational; the restricted unpickler still decides
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def check_checkpoint_file(path: str) -> bool:
    """Cheap checks before anything is loaded (no unpickling): the file exists, is not empty and is a
    torch.save zip archive (True) or a pickle stream (False); else one-line ``CheckpointError``."""
    path = os.fspath(path)
    check_input_file(path, CheckpointError, "checkpoint file", "a checkpoint file")
    is_zip = zipfile.is_zipfile(path)
    if not is_zip:
        with open(path, "rb") as f:
            if f.read(1) != b"\x80" or not _is_pickle_stream(path):  # pickles since protocol 2 start with PROTO
                raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (neither a torch.save zip archive nor a "
                                      "pickle); give a .safetensors model or an AudioSep .ckpt")
    return is_zip


def load_checkpoint(path: str) -> Any:
    """Load a torch checkpoint without unpickling code.  Returns the saved object (usually a dict)."""
    path = os.fspath(path)
    is_zip = check_checkpoint_file(path)
    try:
        return _torch_load(path, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        first_error = exc
    except Exception as exc:  # damaged zip, truncated stream, not a pickle at all ...
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_short(exc)})") from None

    # weights_only refused something: find out what, statically.
    reason = _unpickler_reason(first_error)
    if not is_zip:
        raise CheckpointError(
            f"{path}: refused to load: the checkpoint (legacy, non-zip format) refers to code that is not "
            f"plain tensor data ({reason}). Re-save it with a current torch.save, or use a "
            "checkpoint from a trusted source converted to .safetensors.")
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # a damaged pickle stream
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_short(exc)})") from None
    ok, bad = classify_globals(names)
    if bad:
        raise CheckpointError(
            f"{path}: refused to load: the checkpoint would call code outside plain tensor data: "
            f"{', '.join(bad)}. Nothing was executed. Only checkpoints whose extra objects come from "
            f"{', '.join(SAFE_NAMESPACES)} are accepted.")
    if not ok:  # refused for a reason other than globals
        raise CheckpointError(f"{path}: refused to load ({_short(first_error)})")
    stubs = [(_stub_for(n), n) for n in ok]
    try:
        with torch.serialization.safe_globals(stubs):
            return _torch_load(path, mmap=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: its metadata objects ({', '.join(ok)}) are stored in a way the "
            f"safe loader cannot rebuild ({_short(exc)}); nothing was executed.") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_short(exc)})") from None


def extract_state_dict(obj: Any, path: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor dict inside a loaded checkpoint: ``obj['state_dict']`` (Lightning / LAION CLAP),
    ``obj['model']``, or ``obj`` itself when it is already a name -> tensor mapping."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    for key in ("state_dict", "model", "model_state_dict"):
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors and len(tensors) == len(obj):
        return obj
    raise CheckpointError(
        f"{path}: no state_dict found (top-level keys: {sorted(map(str, obj))[:12]})")


def _is_pickle_stream(path: str) -> bool:
    """Whether the file starts with one well-formed pickle (a static parse: nothing is built or run)."""
    import pickletools

    try:
        with open(path, "rb") as f:
            for _op in pickletools.genops(f):
                pass
        return True
    except Exception:  # noqa: BLE001 - any parse failure means: not a pickle
        return False


_BOILERPLATE = ("Weights only load failed", "In PyTorch 2.6", "Please file an issue", "Check the documentation",
                "Re-running `torch.load`", "WeightsUnpickler error")


def _unpickler_reason(exc: BaseException) -> str:
    """The reason in torch's weights-only error, without its paragraph of advice."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(_BOILERPLATE) and "arbitrary code execution" not in ln]
    return _short(Exception(" ".join(keep) if keep else str(exc)))


def _short(exc: BaseException, limit: int = 300) -> str:
    s = " ".join(str(exc).split())
    return s if len(s) <= limit else s[:limit] + " ..."
