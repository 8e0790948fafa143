"""gui/thread.py: work off the UI thread, results posted back to it; the job worker never waits for the window."""
from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("pytestqt")


@pytest.fixture
def app():
    from plugin_bridge.gui.app import create_app

    return create_app()


def test_to_main_runs_posted_calls_on_the_ui_thread_in_order(app, qtbot):
    from plugin_bridge.gui.thread import to_main

    ran = []

    def post():
        for i in range(3):
            to_main(lambda i=i: ran.append((i, threading.current_thread() is threading.main_thread())))
    th = threading.Thread(target=post)
    th.start()
    th.join(5)
    assert ran == []                                   # nothing ran on the worker, nothing waited for the UI
    qtbot.waitUntil(lambda: len(ran) == 3, timeout=3000)
    assert ran == [(0, True), (1, True), (2, True)]


def test_run_task_hands_result_or_error_to_the_ui_thread(app, qtbot):
    from plugin_bridge.gui.thread import run_task

    got = []
    run_task(lambda: 6 * 7, lambda r, e: got.append((r, e, threading.current_thread() is threading.main_thread())))

    def boom():
        raise ValueError("bad parameter")
    run_task(boom, lambda r, e: got.append((r, type(e).__name__, str(e))))
    qtbot.waitUntil(lambda: len(got) == 2, timeout=3000)
    assert (42, None, True) in got and (None, "ValueError", "bad parameter") in got


def test_job_worker_does_not_wait_for_a_busy_window(app, qtbot):
    """The UI thread is busy (not running its event loop) while the worker hands over a render: the
    worker returns at once; the window adds the stems when its event loop runs."""
    from plugin_bridge.gui.mainwindow.jobs_glue import _UiHistory
    from plugin_bridge.session.history import History
    from plugin_bridge.session.model import Session

    applied = []
    ui = _UiHistory(History(Session()), lambda *a: applied.append(a), None)
    took = []

    def worker():
        t0 = time.monotonic()
        ui.add_render([], [], "Render stems", "job-1")
        took.append(time.monotonic() - t0)
    th = threading.Thread(target=worker)
    th.start()
    th.join(5)                                         # the UI thread is blocked in join: it cannot answer
    assert not th.is_alive() and took[0] < 1.0 and applied == []
    qtbot.waitUntil(lambda: applied == [([], [], "Render stems", "job-1")], timeout=3000)
