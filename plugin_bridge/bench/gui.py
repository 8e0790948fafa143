"""``plugin-bridge bench --gui``: cold start of the desktop app, in fresh interpreters (window shown).

It lives outside ``gui/`` and the engine: it only starts ``python -c GUI_STARTUP_CODE`` subprocesses, so
the bench command neither imports Qt nor makes the engine know the app.
"""
from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["GUI_STARTUP_CODE", "gui_startup_seconds", "print_gui_startup"]


GUI_STARTUP_CODE = (
    "import sys, time\n"
    "t0 = time.perf_counter()\n"
    "from plugin_bridge.gui.app import create_app\n"
    "from plugin_bridge.gui.mainwindow import MainWindow\n"
    "app = create_app()\n"
    "w = MainWindow()\n"
    "w.show(); app.processEvents()\n"
    "print(time.perf_counter() - t0, 'torch' in sys.modules, w.isVisible())\n")


def gui_startup_seconds(runs: int = 3) -> list[float]:
    """Cold start of the desktop app in fresh interpreters (window shown), in seconds."""
    try:
        import PyQt6  # noqa: F401
    except ImportError:
        return []
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    out = []
    for _ in range(runs):
        r = subprocess.run([sys.executable, "-c", GUI_STARTUP_CODE], capture_output=True, text=True, env=env,
                           timeout=120)
        if r.returncode == 0:
            out.append(float(r.stdout.split()[0]))
    return out


def print_gui_startup(out=sys.stdout) -> None:
    times = gui_startup_seconds()
    if times:
        print(f"\n[desktop app start-up, window visible, offscreen] median {sorted(times)[len(times) // 2]:.2f} s "
              f"over {len(times)} cold starts (target < 2 s); model loads lazily", file=out, flush=True)
