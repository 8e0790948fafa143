"""Plugin chains (Pedalboard built-ins and third-party VST3) with a crash-safe worker process.

    from plugin_bridge.plugins import render_chain
    out = render_chain([{"type": "highpass", "params": {"cutoff_frequency_hz": 80}},
                        {"type": "vst3", "path": "/path/Foo.vst3", "params": {"mix": 0.3}}],
                       audio, 48000)          # audio: float32 (channels, frames); same shape back

See ``plugin_bridge.plugins.chain`` for the step format and ``plugin_bridge.plugins.worker`` for
the isolation rules.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from plugin_bridge.errors import AudioInputError
from plugin_bridge.plugins.chain import (  # noqa: F401
    BUILTINS, ChainError, PluginError, _check_rate, needs_worker, render_builtin, validate_chain,
)
from plugin_bridge.plugins.worker import default_timeout, probe_vst3, run_in_worker  # noqa: F401

__all__ = ["render_chain", "validate_chain", "needs_worker", "probe_vst3", "ChainError", "PluginError",
           "BUILTINS"]


def render_chain(chain: Any, audio: np.ndarray, rate: int, *, isolate: bool | None = None,
                 timeout: float | None = None, cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """Process ``audio`` (float32, shape (channels, frames) or (frames,)) through ``chain``.

    Returns float32 audio of exactly the input's shape (effects tails beyond the end are cut, so
    stems stay sample-aligned).  The chain is validated first (``ChainError`` naming the field).
    A chain with any third-party plugin runs in a worker process (``isolate=None``: automatic;
    ``True`` forces the worker for built-in chains too).  Failures of a plugin raise
    ``PluginError``; the input array is never modified.
    """
    steps = validate_chain(chain)
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not 1000 <= int(rate) <= 768000:
        raise AudioInputError(f"sample rate must be an integer between 1000 and 768000 Hz, not {rate!r}")
    rate = int(rate)
    _check_rate(steps, rate)
    arr = np.asarray(audio)
    if arr.ndim not in (1, 2) or arr.shape[-1] == 0 or (arr.ndim == 2 and arr.shape[0] == 0):
        raise AudioInputError(f"audio must have shape (channels, frames) with at least one frame, not {arr.shape}")
    squeeze = arr.ndim == 1
    x = np.ascontiguousarray(arr[None, :] if squeeze else arr, dtype=np.float32)
    if x is arr:
        x = x.copy()
    if not np.isfinite(x).all():
        raise AudioInputError("audio contains NaN or infinite samples")
    if not any(s["enabled"] for s in steps):
        out = x
    elif isolate or needs_worker(steps):
        out = run_in_worker(steps, x, rate, timeout=timeout, cancel=cancel)
    else:
        out = render_builtin(steps, x, rate)
        if not np.isfinite(out).all():
            raise PluginError("the effect chain produced NaN or infinite samples")
    if out.shape != x.shape:  # defensive: Pedalboard keeps the length, but never hand back a misaligned stem
        raise PluginError(f"the effect chain returned shape {out.shape}, expected {x.shape}")
    return out[0] if squeeze else out
