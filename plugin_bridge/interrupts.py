"""SIGINT / SIGTERM / SIGHUP for command-line jobs: stop between chunks, leave nothing half-written.

``SignalCancel`` is installed by ``plugin_bridge.cli.main`` around every command.  Until a command
says it can stop cleanly (``deferring`` is set, or the object is polled as a cancel flag by the
engine), a signal interrupts at once: ``Interrupted`` (a ``KeyboardInterrupt``) unwinds through the
writers' clean-up.  While deferring, the first signal only records itself and calls the registered
callbacks; the job stops at the next chunk boundary (``JobCancelled``); a second signal interrupts at
once.  ``exit_code`` is the shell convention: 128 + the signal number (130 INT, 143 TERM, 129 HUP).
"""
from __future__ import annotations

import signal
import threading
from typing import Callable

__all__ = ["SignalCancel", "Interrupted", "signal_name"]

SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum


class SignalCancel:
    def __init__(self):
        self.signum: int | None = None
        self.deferring = False
        self._callbacks: list[Callable[[], None]] = []
        self._old: dict = {}

    # context manager: install / restore the handlers (main thread only)
    def __enter__(self) -> "SignalCancel":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                try:
                    self._old[s] = signal.signal(s, self._handle)
                except (OSError, ValueError):
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            try:
                signal.signal(s, old)
            except (OSError, ValueError):
                pass
        self._old.clear()

    def _handle(self, signum, frame) -> None:
        if self.signum is not None or not self.deferring:
            self.signum = signum
            raise Interrupted(signum)
        self.signum = signum
        for cb in list(self._callbacks):
            cb()

    def on_signal(self, cb: Callable[[], None]) -> None:
        self._callbacks.append(cb)

    def __call__(self) -> bool:
        """Cancel flag for the engine (polled between chunks); polling turns deferring on."""
        self.deferring = True
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        return signal_name(self.signum or signal.SIGINT)
