"""Plugin chains of stem lanes: the chain editor, and the one place a chain re-render runs.

A re-render is the job queue's re-render job (``session.jobs.make_rerender_job`` / ``run_job``) run off the
UI thread by ``gui.thread.run_task``; the track edit it makes is recorded in the worker and applied on the
UI thread as one undo step.  Switching it to ``JobQueue.enqueue_rerender`` (so it shows in the jobs panel
with progress and cancel) changes only ``rerender_chain``.

A part of ``MainWindow`` (see ``window.py``): it reads and sets the window's attributes."""
from __future__ import annotations

from plugin_bridge.errors import PluginBridgeError
from plugin_bridge.gui.mainwindow.messages import pretty
from plugin_bridge.gui.thread import run_task


class _TrackEdits:
    """The history a worker-side re-render sees: it records ``set_track`` calls for the UI thread."""

    def __init__(self):
        self.edits: list[tuple[str, dict]] = []

    def set_track(self, track_id: str, **changes) -> None:
        self.edits.append((track_id, changes))


class Chains:
    def edit_chain(self, track_id: str):
        """Open the chain editor of a stem lane (non-blocking); OK stores the chain in the session as
        one undo step.  Use "Re-render with chain" to hear it."""
        from plugin_bridge.gui.chain_editor import ChainEditor

        t = self.session.track(track_id)
        rate = t.sample_rate or self.session.sample_rate
        dlg = ChainEditor(t.chain, f"Plugin chain — {t.name}", self, sample_rate=rate)

        def accepted():
            from plugin_bridge.plugins.chain import validate_chain

            chain = validate_chain(dlg.chain)     # canonical form (checked by the dialog already)
            if chain != (self.session.track(track_id).chain or []):
                self._edit(lambda: self.history.set_chain(track_id, chain))
        return self._show_dialog(dlg, accepted)


    def rerender_chain(self, track_id: str, wait: bool = False) -> str | None:
        """Run the track's chain over its unprocessed stem off the UI thread; the processed file
        (``<base>_fxN``) replaces the lane's audio as one undo step (the unprocessed file stays on disk, so
        undo and a later re-render with another chain start from it).  An empty chain goes back to the
        unprocessed file at once and returns its path.  Failures (bad parameter, crashing plugin) are a
        message; nothing changes.  ``wait`` blocks until the file is written (scripts and tests); the
        lane changes when the UI thread next runs its event loop."""
        t = self.session.track(track_id)
        raw = t.extra.get("raw_path") or t.path
        if not t.chain:
            if raw != t.path:
                self._edit(lambda: self.history.set_track(track_id, path=raw))
                self.statusBar().showMessage(f"{t.name}: plugin chain removed", 5000)
            return raw
        try:
            from plugin_bridge.plugins import validate_chain

            validate_chain(t.chain)
        except Exception as exc:  # noqa: BLE001
            self.show_error(f"Plugin chain of {t.name}: {pretty(exc)}")
            return None
        # lazy, as in set_session: session.jobs imports the engine (torch), which the window's start-up skips
        from plugin_bridge.session.jobs import make_rerender_job, run_job

        job = make_rerender_job(self.session, track_id)
        edits = _TrackEdits()
        self.statusBar().showMessage(f"Rendering plugin chain for {t.name}...")
        self._chain_busy += 1

        def done(_result, err):
            self._chain_busy -= 1
            if err is not None:
                self.show_error(f"Plugin chain failed for {t.name}: {pretty(err)}")
                return
            for tid, changes in edits.edits:
                try:
                    self.session.track(tid)
                except PluginBridgeError:
                    return  # the lane was removed meanwhile; the file stays on disk
                self._edit(lambda: self.history.set_track(tid, **changes))
            self.statusBar().showMessage(f"{t.name}: plugin chain applied", 5000)
        th = run_task(lambda: run_job(self.session, job, None, edits), done, name="chain-render")
        if wait:
            th.join()
        return None
