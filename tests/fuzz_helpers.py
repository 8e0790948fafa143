"""Helpers shared by the hypothesis fuzz tests of sessions and presets."""


def json_paths(obj, prefix=()):
    """Every key path into a JSON value (the root included), to pick a place to mutate."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from json_paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from json_paths(v, prefix + (i,))


# --------------------------------------------------------------------------------------------------
# audio probing in a child process (a decoder crash must not take the test run down)
# --------------------------------------------------------------------------------------------------
_WORKER = r"""
import json, os, sys, time, traceback
from plugin_bridge.audio_io import StreamReader
from plugin_bridge.errors import PluginBridgeError
for line in sys.stdin:
    path = line.strip()
    t0 = time.monotonic()
    out = {"path": path}
    try:
        with StreamReader(path) as r:
            n, got = r.frames, 0
            while got < n:
                got += r.get(got, min(n, got + 65536)).shape[-1]
            out.update(ok=True, frames=n, channels=r.channels, rate=r.sample_rate)
    except PluginBridgeError as exc:
        out.update(ok=False, error=str(exc))
    except Exception as exc:
        out.update(ok=False, unexpected=traceback.format_exc())
    out["seconds"] = time.monotonic() - t0
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"""


class ProbeWorker:
    """One long-lived child process that opens and reads audio files with the engine's reader.

    ``check(path, timeout)`` returns the child's JSON answer, or ``{"crashed": returncode}`` when the
    child died on that file (it is restarted for the next one), or ``{"timeout": True}``."""

    def __init__(self):
        self.proc = None

    def _start(self):
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def check(self, path: str, timeout: float) -> dict:
        import json
        import selectors

        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(path + "\n")
        self.proc.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            self.close()
            return {"timeout": True}
        line = self.proc.stdout.readline()
        if not line:
            rc = self.proc.wait()
            self.proc = None
            return {"crashed": rc}
        return json.loads(line)

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def folder_state(folder) -> dict:
    """{relative path: (size, mtime_ns)} of every file under ``folder`` (to prove nothing changed)."""
    import os

    out = {}
    for root, _dirs, files in os.walk(folder):
        for n in files:
            p = os.path.join(root, n)
            st = os.stat(p)
            out[os.path.relpath(p, folder)] = (st.st_size, st.st_mtime_ns)
    return out
