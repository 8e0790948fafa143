"""Crash-safe plugin worker: renders a chain (or probes a VST3) in a separate process.

Parent side: ``run_in_worker(chain, audio, rate)`` / ``probe_vst3(path)``.  The job goes through a
private temporary folder: ``job.json`` (operation, chain, rate), ``in.npy`` (float32, channels x
frames), and the worker answers with ``out.npy`` + ``result.json``.  The worker is a fresh
interpreter (``python -m plugin_bridge.plugins.worker JOBDIR``) in its own process group, so:

* a plugin that segfaults or aborts kills only the worker -> ``PluginError`` naming the step and
  the signal, with the tail of the worker's stderr;
* a plugin that hangs is killed (the whole process group, SIGKILL) when the timeout passes ->
  ``PluginError``; cancelling (``cancel``) kills it the same way -> ``JobCancelled``;
* the temporary folder is always removed, and no worker process is left behind.

Child side: ``main(jobdir)`` (started as ``python -c`` so the module is imported only once).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

from plugin_bridge.errors import JobCancelled
from plugin_bridge.plugins.chain import BUILTINS, ChainError, PluginError, TEST_STEP_TYPES

__all__ = ["run_in_worker", "probe_vst3", "default_timeout", "TIMEOUT_ENV", "main"]

#: Overrides the default worker timeout (seconds).
TIMEOUT_ENV = "PLUGIN_BRIDGE_PLUGIN_TIMEOUT"


def default_timeout(frames: int, rate: int) -> float:
    """Seconds a worker may take: 30 s start-up allowance + 4x the audio's duration (env override)."""
    env = os.environ.get(TIMEOUT_ENV)
    if env:
        try:
            return max(0.1, float(env))
        except ValueError:
            pass
    return 30.0 + 4.0 * frames / max(1, rate)


# --------------------------------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------------------------------
def _describe_step(chain: list[dict], index: int | None) -> str:
    if index is None or not 0 <= index < len(chain):
        return "the plugin worker"
    s = chain[index]
    if s["type"] == "vst3":
        return f"chain[{index}] (vst3 {os.path.basename(s['path'].rstrip(os.sep))})"
    return f"chain[{index}] ({s['type']})"


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
        pass


def _stderr_tail(path: str, limit: int = 1500) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-12:])


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


_CHILD = "import sys; from plugin_bridge.plugins.worker import main; main(sys.argv[1])"


def _run_job(job: dict, audio: np.ndarray | None, timeout: float, cancel: Callable[[], bool] | None,
             chain: list[dict]) -> tuple[dict, np.ndarray | None]:
    with tempfile.TemporaryDirectory(prefix="pb-plugin-") as d:
        if audio is not None:
            np.save(os.path.join(d, "in.npy"), np.ascontiguousarray(audio, dtype=np.float32))
        with open(os.path.join(d, "job.json"), "w", encoding="utf-8") as f:
            json.dump(job, f)
        err_path = os.path.join(d, "stderr.txt")
        env = dict(os.environ)
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), pkg_root) if p)
        with open(err_path, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-c", _CHILD, d],
                                    stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
                                    start_new_session=True, close_fds=True)
        start = time.monotonic()
        try:
            while True:
                try:
                    proc.wait(timeout=0.05)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if cancel is not None and cancel():
                    _kill_group(proc)
                    raise JobCancelled("plugin processing was cancelled; nothing was written")
                if time.monotonic() - start > timeout:
                    _kill_group(proc)
                    step = _read_json(os.path.join(d, "step.json")) or {}
                    raise PluginError(
                        f"{_describe_step(chain, step.get('index'))} did not finish within {timeout:g} s "
                        f"(the plugin hung or is far too slow); the worker was killed and the audio left "
                        f"unprocessed. Raise the limit with {TIMEOUT_ENV}=SECONDS if the plugin is just slow.")
        finally:
            if proc.poll() is None:  # an exception (KeyboardInterrupt...) while waiting
                _kill_group(proc)
            else:  # reap anything the plugin may have spawned into the worker's group
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        rc = proc.returncode
        result = _read_json(os.path.join(d, "result.json"))
        step = _read_json(os.path.join(d, "step.json")) or {}
        who = _describe_step(chain, step.get("index"))
        if rc < 0:
            try:
                sig = signal.Signals(-rc).name
            except ValueError:
                sig = f"signal {-rc}"
            tail = _stderr_tail(err_path)
            raise PluginError(f"{who} crashed the plugin worker ({sig}); the session is unaffected and the "
                              f"audio was left unprocessed." + (f"\nworker output:\n{tail}" if tail else ""))
        if not isinstance(result, dict):
            tail = _stderr_tail(err_path)
            raise PluginError(f"{who}: the plugin worker exited with status {rc} without a result"
                              + (f"\nworker output:\n{tail}" if tail else ""))
        if not result.get("ok"):
            if result.get("kind") == "config":
                raise ChainError(result.get("message", "invalid chain"), result.get("field", ""))
            raise PluginError(result.get("message", f"{who} failed"))
        out = None
        if audio is not None:
            try:
                out = np.load(os.path.join(d, "out.npy"))
            except (OSError, ValueError) as exc:
                raise PluginError(f"the plugin worker's output could not be read: {exc}") from None
        return result, out


def run_in_worker(chain: list[dict], audio: np.ndarray, rate: int, *, timeout: float | None = None,
                  cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """Render a validated chain in a separate process.  Returns float32 (channels, frames)."""
    audio = np.asarray(audio, dtype=np.float32)
    if timeout is None:
        timeout = default_timeout(audio.shape[-1], rate)
    job = {"op": "render", "chain": chain, "rate": int(rate)}
    _, out = _run_job(job, audio, float(timeout), cancel, chain)
    if out is None or out.shape != audio.shape:
        raise PluginError(f"the plugin chain returned audio of shape {None if out is None else out.shape}, "
                          f"expected {audio.shape}")
    return out


def probe_vst3(path: str, *, timeout: float = 60.0) -> dict:
    """Load a VST3 in a worker and describe it: ``{"name", "parameters": {name: {min, max,
    default_normalized, units, value}}, "state": base64}``.  A plugin that crashes while loading gives ``PluginError``."""
    from plugin_bridge.plugins.chain import validate_chain

    chain = validate_chain([{"type": "vst3", "path": path}])
    result, _ = _run_job({"op": "probe", "chain": chain}, None, timeout, None, chain)
    return result["info"]


# --------------------------------------------------------------------------------------------------
# child side
# --------------------------------------------------------------------------------------------------
def _atomic_json(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def _param_value(v: Any):
    return v if isinstance(v, (int, float, bool, str)) or v is None else str(v)


def _load_vst3(step: dict, index: int):
    import base64

    import pedalboard

    try:
        plugin = pedalboard.load_plugin(step["path"])
    except Exception as exc:
        raise PluginError(f"chain[{index}].path: cannot load {step['path']}: {exc}") from None
    if not isinstance(plugin, pedalboard.VST3Plugin):
        raise PluginError(f"chain[{index}].path: {step['path']} is not a VST3 plugin")
    if step.get("state"):
        try:
            plugin.raw_state = base64.b64decode(step["state"])
        except Exception as exc:
            raise _ConfigFailure(f"chain[{index}].state was refused by the plugin: {exc}", f"chain[{index}].state")
    names = list(plugin.parameters.keys())
    for key, value in step["params"].items():
        pf = f"chain[{index}].params.{key}"
        if key not in plugin.parameters:
            raise _ConfigFailure(f"{pf}: plugin {plugin.name!r} has no parameter {key!r}; its parameters are: "
                                 f"{', '.join(names) or '(none)'}", pf)
        try:
            setattr(plugin, key, value)
        except Exception as exc:
            raise _ConfigFailure(f"{pf}: {exc}", pf)
        _refine(plugin, key, value)
    return plugin


def _refine(plugin, key: str, value: Any) -> None:
    """Pedalboard rounds a parameter's normalised value to 1/1000 of its range (9.5 dB on a +-24 dB
    range lands on 9.504 dB).  For a float parameter, try the exact linear normalised value and keep
    it only if the plugin then reports a value closer to the one asked for (a non-linear parameter
    keeps Pedalboard's setting)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    try:
        prm = plugin.parameters[key]
        lo, hi, _ = prm.range
        if prm.type is not float or lo is None or hi is None or not hi > lo:
            return
        err = abs(float(getattr(plugin, key)) - value)
        if err <= 1e-7 * (hi - lo):
            return
        old = prm.raw_value
        prm.raw_value = min(1.0, max(0.0, (value - lo) / (hi - lo)))
        if abs(float(getattr(plugin, key)) - value) >= err:
            prm.raw_value = old
    except Exception:  # any oddity of a plugin's parameter: keep Pedalboard's own setting
        return


class _ConfigFailure(Exception):
    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def _process(plugin, audio: np.ndarray, rate: int) -> np.ndarray:
    try:
        return plugin(audio, float(rate))
    except Exception as exc:
        if audio.shape[0] == 1 and "channel" in str(exc):
            # a stereo-only plugin given mono: process a dual-mono copy and fold back
            stereo = np.repeat(audio, 2, axis=0)
            out = plugin(stereo, float(rate))
            return out.mean(axis=0, keepdims=True)
        raise


def _render(jobdir: str, job: dict) -> dict:
    import pedalboard

    chain, rate = job["chain"], int(job["rate"])
    audio = np.load(os.path.join(jobdir, "in.npy"))
    for i, step in enumerate(chain):
        if not step["enabled"]:
            continue
        _atomic_json(os.path.join(jobdir, "step.json"), {"index": i})
        kind = step["type"]
        if kind in TEST_STEP_TYPES:
            if os.environ.get("PLUGIN_BRIDGE_TEST_STEPS") != "1":
                raise _ConfigFailure(f"chain[{i}].type {kind!r} is unknown", f"chain[{i}].type")
            pid_file = step["params"].get("pid_file")
            if pid_file:  # tests check that the worker and anything it started are gone afterwards
                helper = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)
                _atomic_json(pid_file, {"worker": os.getpid(), "helper": helper.pid})
            if kind == "_test_abort":
                os.abort()
            if kind == "_test_hang":
                while True:
                    time.sleep(1)
            raise RuntimeError(step["params"].get("message", "test step failed on purpose"))
        if kind in BUILTINS:
            plugin = getattr(pedalboard, BUILTINS[kind][0])(**step["params"])
        else:
            plugin = _load_vst3(step, i)
        try:
            audio = _process(plugin, audio, rate)
        except Exception as exc:
            raise PluginError(f"{_describe_step(chain, i)} failed while processing: {exc}") from None
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if not np.isfinite(audio).all():
            raise PluginError(f"{_describe_step(chain, i)} produced NaN or infinite samples")
    tmp = os.path.join(jobdir, "out.tmp.npy")
    np.save(tmp, audio)
    os.replace(tmp, os.path.join(jobdir, "out.npy"))
    return {"ok": True}


def _probe(job: dict) -> dict:
    import base64

    step = job["chain"][0]
    plugin = _load_vst3(step, 0)
    params = {}
    for name, p in plugin.parameters.items():
        lo, hi, _ = p.range
        params[name] = {"min": _param_value(lo), "max": _param_value(hi), "default_normalized": _param_value(p.default_raw_value),
                        "units": p.units or "", "value": _param_value(getattr(plugin, name))}
    return {"ok": True, "info": {"name": plugin.name, "parameters": params,
                                 "state": base64.b64encode(plugin.raw_state).decode("ascii")}}


def main(jobdir: str) -> int:
    result_path = os.path.join(jobdir, "result.json")
    job: dict = {}
    try:
        with open(os.path.join(jobdir, "job.json"), encoding="utf-8") as f:
            job = json.load(f)
        result = _probe(job) if job.get("op") == "probe" else _render(jobdir, job)
    except _ConfigFailure as exc:
        result = {"ok": False, "kind": "config", "message": str(exc), "field": exc.field}
    except PluginError as exc:
        result = {"ok": False, "kind": "plugin", "message": str(exc)}
    except Exception as exc:  # anything else a plugin throws
        step = _read_json(os.path.join(jobdir, "step.json")) or {}
        who = _describe_step(job.get("chain", []), step.get("index"))
        result = {"ok": False, "kind": "plugin", "message": f"{who} failed: {type(exc).__name__}: {exc}"}
    _atomic_json(result_path, result)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: some plugins crash or hang in their destructors, and the result is
    # already safely on disk.
    os._exit(0)


if __name__ == "__main__":  # pragma: no cover - exercised through run_in_worker
    if len(sys.argv) != 2:
        print("usage: python -m plugin_bridge.plugins.worker JOBDIR", file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
