"""Jobs panel glue: the window observes its job queues (``JobQueue``; progress and state come back as
queued Qt signals): the session's runs separations and chain re-renders, the window's own runs teaching
(see ``JobsGlue``).  The session edits a job makes are applied on the UI thread.

A part of ``MainWindow`` (see ``window.py``): it reads and sets the window's attributes."""
from __future__ import annotations

import copy

from PyQt6.QtWidgets import QMessageBox

from plugin_bridge.errors import PluginBridgeError
from plugin_bridge.gui.mainwindow.messages import pretty
from plugin_bridge.gui.thread import to_main
from plugin_bridge.session.history import History
from plugin_bridge.session.model import Session


class _UiHistory:
    """What the job queue sees as its history.  Job records (not undo steps) are edited at once, in the
    worker, through the window's ``History`` under the session lock, without notifications (the queue's
    updates reach the window as signals).  A render's ``add_render`` and a re-render's ``set_track`` are
    posted to the UI thread (each one undo step there) and return at once: the worker never waits for
    the window.  The job's "done" update is emitted after the post, so the window applies the edit first
    and can still mark the job failed if it could not (``JobsGlue._on_job_update``)."""

    def __init__(self, history: History, apply_render, apply_track):
        self._history, self._apply_render, self._apply_track = history, apply_render, apply_track

    def add_job(self, job, notify=True):
        return self._history.add_job(job, notify=False)

    def set_job(self, job_id, notify=True, **changes):
        self._history.set_job(job_id, False, **changes)

    def retry_job(self, job_id, notify=True):
        return self._history.retry_job(job_id, False)

    def add_render(self, tracks, stems, label="Render stems", job_id=None):
        to_main(self._apply_render, list(tracks), list(stems), label, job_id)

    def set_track(self, track_id, **changes):
        with self._history.session.lock:
            job_id = next((j.id for j in self._history.session.jobs
                           if j.kind == "rerender" and j.track_id == track_id and j.status == "running"), None)
        to_main(self._apply_track, track_id, changes, job_id)


class JobsGlue:
    """Two queues of the one job system (``session.jobs.JobQueue``), observed the same way: ``self.jobs``,
    the open session's (separations and chain re-renders; its job log is saved with the session), and
    ``self.teach_jobs``, the window's own (teaching a sound: it needs no session and its result goes to
    the user's learned store, so opening, closing or switching sessions never cancels it)."""

    def _new_queue(self, s: Session, history):
        # lazy: session.jobs imports the engine, which the window's start-up skips
        from plugin_bridge.session.jobs import JobQueue

        q = JobQueue(s, separator_factory=self._separator, persist=False, history=history,
                     on_progress=lambda p: self._jobProgress.emit(p),
                     on_update=lambda j: self._jobUpdate.emit(copy.copy(j)),
                     overrides={"backend": self.app_settings.backend, "device": self.app_settings.device})
        q.start()
        return q

    def _start_jobs(self, s: Session, history: History):
        """The job queue of ``s``, its worker started; the window observes it through queued signals."""
        for j in s.jobs:  # jobs interrupted by a crash are pending again; let the user start them
            if j.status == "pending":
                history.set_job(j.id, notify=False, status="cancelled",
                                error="interrupted (the program closed); press Retry to run it again")
        self.jobs = self._new_queue(s, _UiHistory(history, self._apply_render, self._apply_track))

    def _teach_queue(self):
        """The window's queue for teaching, over a session of its own (started on first use; stopped
        when the window closes)."""
        if self.teach_jobs is None:
            scratch = Session(name="Teaching")
            self.teach_jobs = self._new_queue(scratch, History(scratch))
        return self.teach_jobs

    def _may_stop_teaching(self) -> bool:
        """Quitting cancels a teach that has not finished: ask first.  False (No, or no answer) keeps
        the window open."""
        busy = [j for j in (self.teach_jobs.session.jobs if self.teach_jobs else [])
                if j.status in ("pending", "running")]
        if not busy:
            return True
        names = ", ".join("@" + j.settings.get("name", "") for j in busy)
        ans = self.ask("Teaching a sound", f"Teaching {names} has not finished.\n\n"
                       "Quit anyway? The teach is cancelled and nothing is saved.",
                       QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        return ans == QMessageBox.StandardButton.Yes

    def _queues(self) -> list:
        return [q for q in (self.jobs, self.teach_jobs) if q is not None]

    def _find_job(self, job_id: str):
        """(queue, job record) of ``job_id`` in the session's or the teach queue; (None, None) if neither has it."""
        for q in self._queues():
            try:
                return q, q.session.job(job_id)
            except PluginBridgeError:
                continue
        return None, None

    def _job_result(self, job_id: str):
        q, _job = self._find_job(job_id)
        return q.results.get(job_id) if q is not None else None

    def _all_jobs(self) -> list:
        """Every job of both queues, oldest first (the order the jobs panel shows them in, newest on top)."""
        jobs = [j for q in self._queues() for j in q.session.jobs]
        return sorted(jobs, key=lambda j: j.created or "")

    def _separator(self, backend: str, device: str):
        """Called in the job worker thread: the injected factory, else the model of the settings."""
        if self.separator_factory is not None:
            return self.separator_factory(backend, device)
        from plugin_bridge.session.jobs import model_separator  # loaded with the queue (see _start_jobs)

        return model_separator(*self.app_settings.model_spec(), backend, device)

    def run_current(self):
        r = self._current_region()
        if r is None or self.jobs is None:
            self.show_error("Select a region first: drag across a track.")
            return None
        self.query_panel.commit()
        r = self._current_region()
        if not r.queries:
            self.show_error("Type at least one query (e.g. \"dialogue\") or apply a preset, then Run.")
            return None
        try:
            job = self.jobs.enqueue(r.id)
        except Exception as exc:  # noqa: BLE001
            self.show_error(pretty(exc))
            return None
        self.job_panel.update_job(job, self._job_title(job))
        return job

    def _job_title(self, job) -> str:
        s = self.jobs.session if self.jobs is not None else self.session
        if job.kind == "learn":
            return f"Teach @{job.settings.get('name', '')}"
        if job.kind == "rerender":
            try:
                return f"Plugin chain on {s.track(job.track_id).name}"
            except PluginBridgeError:
                return "Plugin chain on a deleted track"
        try:
            r = s.region(job.region_id)
            where = f"{r.name or 'region'} on {s.track(r.track_id).name}"
        except PluginBridgeError:
            where = "deleted region"
        return f"{where}: " + ", ".join(q.display for q in job.queries)

    def cancel_job(self, job_id: str):
        q, _job = self._find_job(job_id)
        if q is not None:
            try:
                q.cancel(job_id)
            except PluginBridgeError as exc:
                self.show_error(pretty(exc))

    def retry_job(self, job_id: str):
        q, _job = self._find_job(job_id)
        if q is not None:
            q.retry(job_id)

    def _on_job_progress(self, p):
        _q, job = self._find_job(p.job_id)
        if job is None or job.status not in ("pending", "running"):
            return   # a late report of a job that ended (or of a closed session's queue)
        self._job_eta[p.job_id] = (p.eta_seconds, p.stage)
        self.job_panel.update_job(job, self._job_title(job), p.eta_seconds, p.stage)

    def _on_job_update(self, job):
        if job.status == "done" and job.id in self._render_errors:
            # its edit was posted here before this update and could not be applied: the job failed
            err = self._render_errors.pop(job.id)
            self._edit(lambda: self.history.set_job(job.id, status="failed", error=err, stem_ids=[]))
            job = copy.copy(self.session.job(job.id))
        if job.status in ("pending", "running"):
            eta, stage = self._job_eta.get(job.id, (None, None))
        else:
            eta, stage = self._job_eta.pop(job.id, (None, None))   # kept only while a job runs
        self.job_panel.update_job(job, self._job_title(job), eta, stage)
        if job.status == "failed":
            msg = job.error
            if job.kind == "rerender":
                msg = f"Plugin chain failed for {self._job_title(job)[len('Plugin chain on '):]}: {job.error}"
            self.statusBar().showMessage(f"Job failed: {msg}" if job.kind != "separate"
                                         else f"Render failed: {msg}", 15000)
            self.last_error = msg
        elif job.status == "done" and job.error:
            # finished, with something the user should know (e.g. a query far from the model's concepts)
            self.statusBar().showMessage(f"Rendered, with a warning: {job.error}", 30000)
        elif job.status == "done" and job.kind == "rerender":
            self.statusBar().showMessage(f"{self._job_title(job)}: applied", 5000)
        elif job.status == "done" and job.kind == "learn":
            self._refresh_learned()

    def _apply_render(self, tracks, stems, label, job_id):
        """On the UI thread: a finished job's stems join the session as one undo step."""
        try:
            parent = tracks[0].parent_id if tracks else None
            with self.history.transaction(label, kind="render"):
                self.history.add_render(tracks, stems, label=label, job_id=job_id)
                if parent and not self.session.track(parent).mute:
                    self.history.set_mute(parent, True)  # stems + residual replace the source in the mix
        except Exception as exc:  # noqa: BLE001 - the job's "done" update marks it failed
            if job_id is None:
                self.show_error(f"Render failed: {pretty(exc)}")
            else:
                self._render_errors[job_id] = pretty(exc)

    def _apply_track(self, track_id, changes, job_id):
        """On the UI thread: a re-render points its lane at the processed file, one undo step.  A lane
        removed meanwhile keeps nothing (the file stays on disk)."""
        try:
            self.history.set_track(track_id, **changes)
        except Exception as exc:  # noqa: BLE001 - the job's "done" update marks it failed
            if job_id is None:
                self.show_error(pretty(exc))
            else:
                self._render_errors[job_id] = pretty(exc)
