"""Plugin chains of stem lanes: the chain editor, and queueing a chain re-render as a job of the
window's queue (its track edit is applied on the UI thread as one undo step, ``jobs_glue``).

A part of ``MainWindow`` (see ``window.py``): it reads and sets the window's attributes."""
from __future__ import annotations

from plugin_bridge.errors import PluginBridgeError
from plugin_bridge.gui.mainwindow.messages import pretty


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
        """Queue a re-render of the track's chain over its unprocessed stem (``JobQueue.enqueue_rerender``):
        it shows in the jobs panel with progress, cancel, retry and errors like a separation; the processed
        file (``<base>_fxN``) replaces the lane's audio as one undo step (the unprocessed file stays on disk,
        so undo and a later re-render with another chain start from it); an empty chain goes back to the
        unprocessed file.  A re-render of the lane already waiting is not queued twice (it reads the chain when
it starts).  Returns the job id (None when it could not be queued).  ``wait`` blocks until the
        job ended (scripts and tests); the lane changes when the UI thread next runs its event loop."""
        if self.jobs is None:
            return None
        waiting = next((j.id for j in self.jobs.session.jobs
                        if j.kind == "rerender" and j.track_id == track_id and j.status == "pending"), None)
        if waiting is not None:   # it reads the chain when it starts: the newest edit is included
            self.statusBar().showMessage("A re-render of this lane is already waiting; it uses the current chain",
                                         5000)
            return waiting
        try:
            job_id = self.jobs.enqueue_rerender(track_id)
        except PluginBridgeError as exc:
            self.show_error(pretty(exc))
            return None
        job = self.jobs.session.job(job_id)
        self.job_panel.update_job(job, self._job_title(job))
        if wait:
            self.jobs.wait(job_id)
        return job_id
