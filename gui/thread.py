"""Work off the UI thread, results back on it.

``to_main(fn, *args)`` queues ``fn(*args)`` to run on the thread of the QApplication (the UI thread) and
returns at once, from any thread; calls run in the order they were posted.  ``run_task(work, done)``
runs ``work()`` in a daemon thread and then ``done(result, error)`` on the UI thread (``error`` is the
exception ``work`` raised, else None).  Nothing here ever waits for the UI thread, so a busy or modal
window cannot stall a worker.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from PyQt6.QtCore import QCoreApplication, QObject, Qt, pyqtSignal, pyqtSlot

__all__ = ["to_main", "run_task"]

log = logging.getLogger(__name__)


class _Relay(QObject):
    """Lives on the UI thread; a queued signal carries each posted call over to it."""
    posted = pyqtSignal(object)

    def __init__(self):
        super().__init__()
        self.posted.connect(self._run, Qt.ConnectionType.QueuedConnection)

    @pyqtSlot(object)
    def _run(self, call):   # a slot of the relay itself, so it runs on the relay's (the UI) thread
        fn, args, kwargs = call
        fn(*args, **kwargs)


_relay: _Relay | None = None
_relay_lock = threading.Lock()


def _get_relay() -> _Relay:
    global _relay
    with _relay_lock:
        if _relay is None:
            app = QCoreApplication.instance()
            if app is None:
                raise RuntimeError("to_main needs a QApplication (create it before posting work to the UI)")
            relay = _Relay()
            relay.moveToThread(app.thread())   # made on whichever thread posted first; it serves the UI thread
            _relay = relay
        return _relay


def to_main(fn: Callable[..., Any], *args, **kwargs) -> None:
    """Run ``fn(*args, **kwargs)`` on the UI thread, later (never inline, even from the UI thread)."""
    _get_relay().posted.emit((fn, args, kwargs))


def run_task(work: Callable[[], Any], done: Callable[[Any, BaseException | None], None] | None = None,
             name: str = "task") -> threading.Thread:
    """Run ``work()`` in a daemon thread named ``name``; ``done(result, error)`` then runs on the UI
    thread.  Returns the started thread (join it to wait for the work, not for ``done``)."""
    _get_relay()   # fail here, on the caller's thread, when there is no application

    def main():
        try:
            result, error = work(), None
        except Exception as exc:  # noqa: BLE001 - handed to ``done``, which shows it
            result, error = None, exc
        if done is not None:
            to_main(done, result, error)
        elif error is not None:
            log.error("%s failed", name, exc_info=error)

    th = threading.Thread(target=main, name=name, daemon=True)
    th.start()
    return th
