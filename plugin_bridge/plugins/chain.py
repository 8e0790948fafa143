"""Plugin chains: a JSON-able list of steps, validated up front, rendered in-process or in a worker.

A chain is a list of step dicts.  Every step has a ``type`` and optional ``params`` and ``enabled``:

    [{"type": "highpass", "params": {"cutoff_frequency_hz": 80}},
     {"type": "compressor", "params": {"threshold_db": -18, "ratio": 4}},
     {"type": "vst3", "path": "/usr/lib/vst3/Foo.vst3", "params": {"mix": 0.5}, "state": "<base64>"},
     {"type": "gain", "params": {"gain_db": -3}, "enabled": false}]

Built-in types (Pedalboard's own effects, run in this process) and their parameters, with ranges:
see ``BUILTINS``.  Parameters left out take Pedalboard's defaults.

``vst3`` steps load a third-party plugin.  Any chain holding one runs in a separate worker
process (``plugin_bridge.plugins.worker``), so a plugin that crashes or hangs cannot take the
session down: it is reported as a ``PluginError`` and the worker is killed.

Errors:
* ``ChainError`` (a ``ConfigError``): the chain itself is malformed; ``.field`` names the bad field,
  e.g. ``chain[2].params.ratio``.
* ``PluginError`` (a ``PluginBridgeError``): a plugin failed at run time (cannot be loaded,
  crashed, hung past the timeout, produced NaN/Inf).
"""
from __future__ import annotations

import base64
import binascii
import copy
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from plugin_bridge.errors import ConfigError, PluginBridgeError

__all__ = ["BUILTINS", "ChainError", "PluginError", "ParamSpec", "validate_chain", "needs_worker",
           "build_builtin_board", "render_builtin", "TEST_STEPS_ENV", "TEST_STEP_TYPES"]

#: Env var that enables the test-only step types (never set it outside tests).
TEST_STEPS_ENV = "PLUGIN_BRIDGE_TEST_STEPS"
#: Test-only step types, honoured by the worker only: they crash / hang / fail on purpose.
TEST_STEP_TYPES = ("_test_abort", "_test_hang", "_test_raise")


class ChainError(ConfigError):
    """A plugin chain is malformed.  ``field`` names the offending field (e.g. ``chain[1].params.q``)."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


class PluginError(PluginBridgeError):
    """A plugin failed while loading or rendering (crash, hang, exception, non-finite output)."""


@dataclass(frozen=True)
class ParamSpec:
    lo: float
    hi: float
    default: float
    unit: str = ""


_HZ = (10.0, 24000.0)   # the upper bound is also checked against rate/2 at render time
_Q = ParamSpec(0.05, 30.0, 0.7071067690849304)

#: type -> (pedalboard class name, {param: ParamSpec})
BUILTINS: dict[str, tuple[str, dict[str, ParamSpec]]] = {
    "gain": ("Gain", {"gain_db": ParamSpec(-96.0, 48.0, 0.0, "dB")}),
    "highpass": ("HighpassFilter", {"cutoff_frequency_hz": ParamSpec(*_HZ, 50.0, "Hz")}),
    "lowpass": ("LowpassFilter", {"cutoff_frequency_hz": ParamSpec(*_HZ, 20000.0, "Hz")}),
    "lowshelf": ("LowShelfFilter", {"cutoff_frequency_hz": ParamSpec(*_HZ, 440.0, "Hz"),
                                    "gain_db": ParamSpec(-48.0, 48.0, 0.0, "dB"), "q": _Q}),
    "highshelf": ("HighShelfFilter", {"cutoff_frequency_hz": ParamSpec(*_HZ, 440.0, "Hz"),
                                      "gain_db": ParamSpec(-48.0, 48.0, 0.0, "dB"), "q": _Q}),
    "peak": ("PeakFilter", {"cutoff_frequency_hz": ParamSpec(*_HZ, 440.0, "Hz"),
                            "gain_db": ParamSpec(-48.0, 48.0, 0.0, "dB"), "q": _Q}),
    "compressor": ("Compressor", {"threshold_db": ParamSpec(-96.0, 0.0, 0.0, "dB"),
                                  "ratio": ParamSpec(1.0, 100.0, 1.0), "attack_ms": ParamSpec(0.0, 1000.0, 1.0, "ms"),
                                  "release_ms": ParamSpec(0.0, 10000.0, 100.0, "ms")}),
    "noisegate": ("NoiseGate", {"threshold_db": ParamSpec(-120.0, 0.0, -100.0, "dB"),
                                "ratio": ParamSpec(1.0, 100.0, 10.0), "attack_ms": ParamSpec(0.0, 1000.0, 1.0, "ms"),
                                "release_ms": ParamSpec(0.0, 10000.0, 100.0, "ms")}),
    "limiter": ("Limiter", {"threshold_db": ParamSpec(-60.0, 0.0, -10.0, "dB"),
                            "release_ms": ParamSpec(1.0, 10000.0, 100.0, "ms")}),
    "reverb": ("Reverb", {"room_size": ParamSpec(0.0, 1.0, 0.5), "damping": ParamSpec(0.0, 1.0, 0.5),
                          "wet_level": ParamSpec(0.0, 1.0, 0.33), "dry_level": ParamSpec(0.0, 1.0, 0.4),
                          "width": ParamSpec(0.0, 1.0, 1.0), "freeze_mode": ParamSpec(0.0, 1.0, 0.0)}),
    "delay": ("Delay", {"delay_seconds": ParamSpec(0.0, 30.0, 0.5, "s"), "feedback": ParamSpec(0.0, 1.0, 0.0),
                        "mix": ParamSpec(0.0, 1.0, 0.5)}),
}
_ALIASES = {"high_shelf": "highshelf", "low_shelf": "lowshelf", "peak_eq": "peak", "peaking": "peak",
            "noise_gate": "noisegate", "gate": "noisegate", "hpf": "highpass", "lpf": "lowpass"}

_STEP_KEYS = {"type", "params", "enabled", "name"}
_VST3_KEYS = _STEP_KEYS | {"path", "state"}


def _test_steps_enabled() -> bool:
    return os.environ.get(TEST_STEPS_ENV) == "1"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_chain(chain: Any, where: str = "chain") -> list[dict]:
    """Check a chain and return a normalised deep copy (canonical type names, ``params`` present,
    ``enabled`` present).  Raises ``ChainError`` naming the first bad field."""
    if chain is None:
        return []
    if not isinstance(chain, (list, tuple)):
        raise ChainError(f"{where} must be a list of steps, not {type(chain).__name__}", where)
    out = []
    for i, step in enumerate(chain):
        f = f"{where}[{i}]"
        if not isinstance(step, dict):
            raise ChainError(f"{f} must be an object with a 'type', not {type(step).__name__}", f)
        kind = step.get("type")
        if not isinstance(kind, str) or not kind.strip():
            raise ChainError(f"{f}.type is missing; choose one of: {', '.join(sorted(BUILTINS))}, vst3", f"{f}.type")
        kind = _ALIASES.get(kind.strip().lower(), kind.strip().lower())
        enabled = step.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ChainError(f"{f}.enabled must be true or false, not {enabled!r}", f"{f}.enabled")
        name = step.get("name", "")
        if not isinstance(name, str):
            raise ChainError(f"{f}.name must be a string", f"{f}.name")
        params = step.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ChainError(f"{f}.params must be an object mapping parameter names to values", f"{f}.params")
        norm: dict[str, Any] = {"type": kind, "enabled": enabled, "params": {}}
        if name:
            norm["name"] = name
        if kind in BUILTINS:
            _check_keys(step, _STEP_KEYS, f)
            specs = BUILTINS[kind][1]
            for key, value in params.items():
                pf = f"{f}.params.{key}"
                if key not in specs:
                    raise ChainError(f"{pf}: '{kind}' has no parameter {key!r}; its parameters are: "
                                     f"{', '.join(specs)}", pf)
                spec = specs[key]
                if not _is_number(value) or not math.isfinite(float(value)):
                    raise ChainError(f"{pf} must be a finite number, not {value!r}", pf)
                if not spec.lo <= float(value) <= spec.hi:
                    unit = f" {spec.unit}" if spec.unit else ""
                    raise ChainError(f"{pf} = {value}{unit} is out of range [{spec.lo:g}, {spec.hi:g}]{unit}", pf)
                norm["params"][key] = float(value)
        elif kind == "vst3":
            _check_keys(step, _VST3_KEYS, f)
            path = step.get("path")
            if not isinstance(path, str) or not path:
                raise ChainError(f"{f}.path is missing: give the .vst3 bundle of the plugin", f"{f}.path")
            path = os.path.abspath(os.path.expanduser(path))
            if not os.path.exists(path):
                raise ChainError(f"{f}.path: plugin not found: {path}", f"{f}.path")
            if not path.rstrip(os.sep).lower().endswith(".vst3"):
                raise ChainError(f"{f}.path: {path} is not a .vst3 plugin", f"{f}.path")
            norm["path"] = path
            for key, value in params.items():
                pf = f"{f}.params.{key}"
                if not isinstance(key, str) or not key:
                    raise ChainError(f"{pf}: parameter names must be non-empty strings", pf)
                if isinstance(value, float) and not math.isfinite(value):
                    raise ChainError(f"{pf} must be a finite number", pf)
                if not isinstance(value, (int, float, bool, str)):
                    raise ChainError(f"{pf} must be a number, boolean or string, not {type(value).__name__}", pf)
                norm["params"][key] = value
            state = step.get("state")
            if state is not None:
                if not isinstance(state, str):
                    raise ChainError(f"{f}.state must be a base64 string", f"{f}.state")
                try:
                    base64.b64decode(state.encode("ascii"), validate=True)
                except (binascii.Error, ValueError, UnicodeEncodeError):
                    raise ChainError(f"{f}.state is not valid base64", f"{f}.state") from None
                norm["state"] = state
        elif kind in TEST_STEP_TYPES and _test_steps_enabled():
            norm["params"] = copy.deepcopy(params)
        else:
            raise ChainError(f"{f}.type {step.get('type')!r} is unknown; choose one of: "
                             f"{', '.join(sorted(BUILTINS))}, vst3", f"{f}.type")
        out.append(norm)
    return out


def _check_keys(step: dict, allowed: set, f: str) -> None:
    extra = sorted(str(k) for k in step if k not in allowed)
    if extra:
        raise ChainError(f"{f}.{extra[0]}: unknown step field (allowed: {', '.join(sorted(allowed))})",
                         f"{f}.{extra[0]}")


def needs_worker(chain: list[dict]) -> bool:
    """True if any enabled step is not a Pedalboard built-in (third-party or test step)."""
    return any(s["enabled"] and s["type"] not in BUILTINS for s in chain)


def _check_rate(chain: list[dict], rate: int, where: str = "chain") -> None:
    for i, s in enumerate(chain):
        hz = s["params"].get("cutoff_frequency_hz") if s["type"] in BUILTINS else None
        if hz is not None and hz >= rate / 2:
            pf = f"{where}[{i}].params.cutoff_frequency_hz"
            raise ChainError(f"{pf} = {hz:g} Hz must be below half the sample rate ({rate / 2:g} Hz)", pf)


def build_builtin_board(chain: list[dict]):
    """A ``pedalboard.Pedalboard`` of the enabled built-in steps of a validated chain."""
    import pedalboard

    plugins = []
    for s in chain:
        if not s["enabled"]:
            continue
        cls_name, _ = BUILTINS[s["type"]]
        plugins.append(getattr(pedalboard, cls_name)(**s["params"]))
    return pedalboard.Pedalboard(plugins)


def render_builtin(chain: list[dict], audio: np.ndarray, rate: int) -> np.ndarray:
    """Render a validated built-in-only chain in this process."""
    board = build_builtin_board(chain)
    try:
        out = board(audio, float(rate))
    except Exception as exc:  # pedalboard raises plain RuntimeError/ValueError
        raise PluginError(f"built-in effect chain failed: {exc}") from None
    return np.ascontiguousarray(out, dtype=np.float32)
