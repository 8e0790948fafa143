"""Readable messages for the user: an exception becomes one sentence, never a traceback."""
from __future__ import annotations

from plugin_bridge.errors import PluginBridgeError


def pretty(exc: BaseException) -> str:
    if isinstance(exc, PluginBridgeError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or exc}".strip(": ")
    return f"Unexpected problem ({type(exc).__name__}: {exc}). Your session is unchanged."
