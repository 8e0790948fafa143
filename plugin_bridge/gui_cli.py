"""``plugin-bridge gui [session]``: start the desktop app (PyQt6 is imported only when it runs)."""
from __future__ import annotations

import importlib.util

from plugin_bridge.errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser("gui", help="open the desktop app",
                              description="Open the desktop app, optionally with a session, folder, audio file, "
                                          ".dawproject or .rpp.")
    p.add_argument("session", nargs="?", help="what to open (session file, folder of audio, audio file, "
                                               ".dawproject, .rpp)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    if importlib.util.find_spec("PyQt6") is None:  # the optional gui extra
        raise ConfigError("the desktop app needs PyQt6, which is not installed; install it with: "
                          "pip install 'plugin-bridge[gui]'")
    from plugin_bridge.gui.app import main

    return main(args.session)
