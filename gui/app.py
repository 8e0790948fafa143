"""Start the desktop app: ``plugin-bridge gui [session]`` or ``python -m plugin_bridge.gui``.

Start-up stays well under 2 s: only Qt, numpy and the session model are imported here; the engine
(torch) is imported by the job worker on the first render, and PortAudio is initialised in the
background after the window is shown."""
from __future__ import annotations

import os
import sys
import threading
import time


def _warm_audio():
    try:
        import sounddevice  # noqa: F401  (PortAudio scans devices on import: ~0.3 s, off the UI thread)
    except Exception:
        pass


def create_app(argv: list[str] | None = None):
    from PyQt6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName("plugin-bridge")
    app.setOrganizationName("plugin-bridge")
    from plugin_bridge.gui.mainwindow import apply_theme

    apply_theme(app)
    return app


def start(session: str | None = None, separator_factory=None, argv: list[str] | None = None,
          check_recovery: bool = True, ask_hook=None, file_dialog_hook=None):
    """Create the app and the window, show it, and schedule (right after the first paint) the crash
    recovery prompt and the opening of ``session``.  Returns ``(app, window)``; ``main`` runs the
    event loop.  The hooks answer prompts and file dialogs (tests, scripts)."""
    t0 = time.perf_counter()
    app = create_app(argv)
    from PyQt6.QtCore import QTimer

    from plugin_bridge.gui.mainwindow import MainWindow

    win = MainWindow(separator_factory=separator_factory, ask_hook=ask_hook, file_dialog_hook=file_dialog_hook)
    win.show()
    if os.environ.get("PLUGIN_BRIDGE_STARTUP_TIMING"):
        print(f"window shown after {time.perf_counter() - t0:.3f} s", file=sys.stderr, flush=True)
    threading.Thread(target=_warm_audio, name="audio-warmup", daemon=True).start()

    def after_show():
        recovered = check_recovery and win.check_recovery_at_start()
        if session and not recovered:
            win.open_path(session)
    QTimer.singleShot(0, after_show)
    return app, win


def main(session: str | None = None, separator_factory=None, argv: list[str] | None = None,
         check_recovery: bool = True) -> int:
    app, _win = start(session, separator_factory, argv, check_recovery)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
