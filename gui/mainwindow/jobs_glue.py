"""Jobs panel glue: the window observes the session's ``JobQueue`` (progress and state come back as
queued Qt signals) and adds finished renders to the session on the UI thread.

A part of ``MainWindow`` (see ``window.py``): it reads and sets the window's attributes."""
from __future__ import annotations

import copy

from plugin_bridge.errors import PluginBridgeError
from plugin_bridge.gui.mainwindow.messages import pretty
from plugin_bridge.gui.thread import to_main


class _UiHistory:
    """What ``run_job`` sees as its history: ``add_render`` is posted to the UI thread (where it is one
    undo step together with muting the source, so playback of the mix does not double up) and returns
    at once.  The job's "done" update is emitted after the post, so the window applies the stems first
    and can still mark the job failed if they could not be added (``JobsGlue._on_job_update``)."""

    def __init__(self, apply_render):
        self._apply_render = apply_render

    def add_render(self, tracks, stems, label="Render stems", job_id=None):
        to_main(self._apply_render, list(tracks), list(stems), label, job_id)


class JobsGlue:
    def _start_jobs(self, s):
        """The session's job queue, its worker started; the window observes it through queued signals."""
        # lazy: session.jobs imports the engine (torch), which the window's start-up skips
        from plugin_bridge.session.jobs import JobQueue

        self.jobs = JobQueue(s, separator_factory=self._get_separator, history=_UiHistory(self._apply_render),
                             persist=False, on_progress=lambda p: self._jobProgress.emit(p),
                             on_update=lambda j: self._jobUpdate.emit(copy.copy(j)),
                             overrides={"backend": self.app_settings.backend, "device": self.app_settings.device})
        for j in s.jobs:  # jobs interrupted by a crash are pending again; let the user start them
            if j.status == "pending":
                j.status, j.error = "cancelled", "interrupted (the program closed); press Retry to run it again"
        self.jobs.start()

    def _get_separator(self, backend: str, device: str):
        """Called in the job worker thread: the engine (and torch) are imported here, lazily."""
        if self.separator_factory is not None:
            return self.separator_factory(backend, device)
        spec, tok = self.app_settings.model_spec()
        key = (spec, tok, backend, device)
        if key not in self._separators:
            from plugin_bridge.engine.separator import Separator
            from plugin_bridge.models.registry import load_model

            self._separators[key] = Separator(load_model(spec, tok), backend=backend, device=device)
        return self._separators[key]

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
        s = self.session
        try:
            r = s.region(job.region_id)
            where = f"{r.name or 'region'} on {s.track(r.track_id).name}"
        except PluginBridgeError:
            where = "deleted region"
        return f"{where}: " + ", ".join(q.display for q in job.queries)

    def cancel_job(self, job_id: str):
        if self.jobs:
            try:
                self.jobs.cancel(job_id)
            except PluginBridgeError as exc:
                self.show_error(pretty(exc))

    def retry_job(self, job_id: str):
        if self.jobs:
            self.jobs.retry(job_id)

    def _on_job_progress(self, p):
        self._job_eta[p.job_id] = (p.eta_seconds, p.stage)
        try:
            job = self.session.job(p.job_id)
        except PluginBridgeError:
            return
        self.job_panel.update_job(job, self._job_title(job), p.eta_seconds, p.stage)

    def _on_job_update(self, job):
        if job.status == "done" and job.id in self._render_errors:
            # its stems were posted here before this update and could not be added: the job failed
            err = self._render_errors.pop(job.id)
            self._edit(lambda: self.history.set_job(job.id, status="failed", error=err, stem_ids=[]))
            job = copy.copy(self.session.job(job.id))
        eta, stage = self._job_eta.get(job.id, (None, None))
        self.job_panel.update_job(job, self._job_title(job), eta, stage)
        if job.status == "failed":
            self.statusBar().showMessage(f"Render failed: {job.error}", 15000)
            self.last_error = job.error
        elif job.status == "done" and job.error:
            # finished, with something the user should know (e.g. a query far from the model's concepts)
            self.statusBar().showMessage(f"Rendered, with a warning: {job.error}", 30000)

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
