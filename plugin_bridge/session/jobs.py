"""Render jobs: a region x a set of queries -> stem tracks placed sample-exactly in the session.

A job reads the region plus ``context_seconds`` of audio before and after it (clipped at the file
ends) so the separator hears onsets, separates with ``Separator.separate_file`` into float32 scratch
files, trims the context away, optionally runs each query's plugin chain
(``plugin_bridge.plugins.render_chain`` when that module exists), and writes the final stems in the
requested format.  Stem files are named from a template (tokens {session} {track} {region} {label}
{query} {index} {token} {preset}), sanitised and unique in ``<session>_stems/``.  Every query gives one
stem track under the source track, at the region's start, plus a residual track (unless the residual
is discarded), so stems + residual == the region's audio (exactly, up to float32 rounding, with
``wav32f``; within quantisation for integer formats; not when plugin chains change the stems).

Atomicity: all outputs of a job are written in a hidden work folder ``.pb-job-<id>`` inside the stems
folder and moved into place only once every stem is complete; a cancelled or failed job leaves no
file.  A region that extends past the ends of its track's audio is clipped to the audio.

``JobQueue`` runs jobs one after another in a worker thread, reports progress/ETA, cancels one job or
all, records failures with a readable message and carries on, and persists job state in the session
(a job interrupted by a crash is pending again when the session is reopened).
"""
from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from plugin_bridge.errors import JobCancelled, OutputError, PluginBridgeError
from plugin_bridge.session.model import (
    DEFAULT_SETTINGS, JobRecord, QuerySpec, Region, Session, SessionError, Stem, Track, now_iso,
)

__all__ = ["JobPlan", "JobResult", "JobQueue", "plan_job", "run_job", "make_job", "stem_file_names",
           "sanitize_filename", "effective_settings", "default_separator_factory", "JobProgress"]

log = logging.getLogger(__name__)
_BLOCK = 1 << 16
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


# --------------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobPlan:
    track: Track
    region: Region
    rate: int                # the file's rate (stems are written at it)
    channels: int
    read_start: int          # file frames read, context included
    read_end: int
    start: int               # file frames of the (clipped) region
    end: int
    timeline_start: int      # session frame where the stems start

    @property
    def pre(self) -> int:
        return self.start - self.read_start

    @property
    def length(self) -> int:
        return self.end - self.start


def effective_settings(session: Session, job: JobRecord | None = None, overrides: dict | None = None) -> dict:
    s = dict(DEFAULT_SETTINGS)
    s.update(session.settings)
    if job is not None:
        s.update(job.settings)
    if overrides:
        s.update({k: v for k, v in overrides.items() if v is not None})
    return s


def plan_job(session: Session, region: Region, context_seconds: float = 1.0) -> JobPlan:
    from plugin_bridge.audio_io import probe

    track = session.track(region.track_id)
    info = probe(track.path)  # always: a take replaced under the same name must not be cut by stale numbers
    cached = (track.sample_rate, track.channels, track.frames)
    real = (info.sample_rate, info.channels, info.frames)
    for name, c, r, unit in zip(("sample rate", "channel count", "length"), cached, real, (" Hz", " ch", " frames")):
        if c is not None and c != r:
            raise SessionError(f"track {track.name!r}: the file {track.path} now has {name} {r}{unit} but the session "
                               f"recorded {c}{unit}; the file was replaced - add it again as a new track",
                               "tracks.sample_rate" if name == "sample rate" else
                               "tracks.channels" if name == "channel count" else "tracks.frames")
    track.sample_rate, track.channels, track.frames = real
    a, b = session.session_to_file_frames(track, region.start, region.end)
    start, end = max(0, a), min(track.frames, b)
    if end <= start:
        raise SessionError(f"region {region.name or region.id} ({region.start}-{region.end}) lies outside the audio "
                           f"of track {track.name!r}", "region")
    ctx = int(round(max(0.0, float(context_seconds)) * track.sample_rate))
    read_start, read_end = max(0, start - ctx), min(track.frames, end + ctx)
    timeline_start = track.offset + session.file_to_session_frames(track, start)
    if start == a:
        timeline_start = region.start  # exact when unclipped (no rounding through another rate)
    return JobPlan(track, region, track.sample_rate, track.channels, read_start, read_end, start, end,
                   timeline_start)


# --------------------------------------------------------------------------------------------------
# naming
# --------------------------------------------------------------------------------------------------
def sanitize_filename(name: str, max_len: int = 120) -> str:
    s = re.sub(r'[\\/:*?"<>|\x00-\x1f\x7f]+', "_", name)
    s = re.sub(r"\s+", "_", s.strip())
    s = re.sub(r"_{2,}", "_", s).strip("._ ")
    s = s[:max_len].rstrip("._ ")
    if not s:
        s = "stem"
    if s.split(".")[0].upper() in _RESERVED:
        s = "_" + s
    return s


def _slug(text: str) -> str:
    from plugin_bridge.engine.separator import slug

    return slug(text)


def stem_file_names(session: Session, track: Track, region: Region, queries: list[QuerySpec], template: str,
                    residual_label: str | None, out_dir: str, ext: str, preset: str | None = None) -> list[str]:
    """File names (without folder) for each query (+ the residual when ``residual_label`` is not None),
    unique among themselves and against files already in ``out_dir``."""
    from plugin_bridge.session.presets import check_name_template

    check_name_template(template, "name_template")
    ri = [r.id for r in session.regions_on(track.id)]
    region_name = region.name or f"R{ri.index(region.id) + 1 if region.id in ri else 1}"
    items = [(q.label or q.token or q.text, q.text, f"{i + 1:02d}", q.token or q.label or _slug(q.text))
             for i, q in enumerate(queries)]
    if residual_label is not None:
        items.append((residual_label or "Residual", "residual", "R", "REST"))
    names: list[str] = []
    taken = set()
    try:
        taken = {n.lower() for n in os.listdir(out_dir)}
    except OSError:
        pass
    for label, text, idx, token in items:
        base = sanitize_filename(template.format(session=session.name, track=track.name, region=region_name,
                                                 label=label, query=_slug(text), index=idx, token=token,
                                                 preset=preset or ""))
        cand, k = base, 2
        while (cand + ext).lower() in taken:
            cand = f"{base}-{k}"
            k += 1
        taken.add((cand + ext).lower())
        names.append(cand + ext)
    return names


# --------------------------------------------------------------------------------------------------
# running one job
# --------------------------------------------------------------------------------------------------
@dataclass
class JobProgress:
    job_id: str
    fraction: float
    eta_seconds: float | None
    stage: str = "separating"


@dataclass
class JobResult:
    job_id: str
    stems: list[Stem]
    tracks: list[Track]
    warnings: list[str] = field(default_factory=list)


def _render_chain_fn():
    try:
        import importlib

        mod = importlib.import_module("plugin_bridge.plugins")
    except ModuleNotFoundError as exc:
        if exc.name and "plugin_bridge.plugins".startswith(exc.name):
            return None
        raise
    return getattr(mod, "render_chain", None)


def _is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def make_job(session: Session, region_id: str, queries: list[QuerySpec] | None = None, preset=None,
             settings: dict | None = None) -> JobRecord:
    """A pending JobRecord for a region (queries default to the region's; a ``presets.Preset`` fills
    queries when none are given and contributes its inference/output settings)."""
    region = session.region(region_id)
    qs = copy.deepcopy(queries if queries is not None else region.queries)
    st: dict = {}
    pname = None
    if preset is not None:
        pname = preset.name
        st.update(preset.job_settings())
        if not qs:
            qs = preset.to_queries()
    if settings:
        st.update({k: v for k, v in settings.items() if v is not None})
    if not qs:
        raise SessionError(f"region {region.name or region.id} has no queries; add one or choose a preset", "queries")
    return JobRecord(region_id=region.id, queries=qs, settings=st, preset=pname or region.preset)


def run_job(session: Session, job: JobRecord, separator, history=None,
            progress: Callable[[JobProgress], None] | None = None, cancel=None,
            overrides: dict | None = None) -> JobResult:
    """Render ``job`` and add its stem tracks + stem records to the session (through ``history`` as one
    undo step when given).  Raises ``JobCancelled`` (no files left) or a ``PluginBridgeError``."""
    from plugin_bridge.engine.separator import Query, SeparationSettings
    from plugin_bridge.engine.writer import OutputFormat, StemWriterSet, check_output_dir

    cfg = effective_settings(session, job, overrides)
    with session.lock:
        region = copy.deepcopy(session.region(job.region_id))
        plan = plan_job(session, region, cfg["context_seconds"])
    queries = job.queries
    if not queries:
        raise SessionError("the job has no queries", "queries")
    fmt = OutputFormat(cfg["format"])
    keep_residual = cfg.get("residual", "keep") != "discard"
    out_dir = session.stems_dir
    check_output_dir(out_dir)
    work = os.path.join(out_dir, f".pb-job-{job.id}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    warnings: list[str] = []
    t0 = time.monotonic()

    def report(frac, eta, stage):
        if progress:
            progress(JobProgress(job.id, min(1.0, max(0.0, frac)), eta, stage))

    try:
        sep_settings = SeparationSettings(chunk_seconds=float(cfg["chunk_seconds"]), overlap=float(cfg["overlap"]),
                                          residual=keep_residual)
        eq = [Query(q.text, q.negative if q.negative and q.negative.strip() else None, q.token or None)
              for q in queries]

        def sep_progress(p):
            eta = None if p.eta_seconds is None else p.eta_seconds + 0.1 * p.elapsed
            report(0.9 * p.fraction, eta, "separating")

        model = getattr(separator, "model", None)
        if model is not None:
            from plugin_bridge.models.registry import query_warnings

            warnings.extend(query_warnings(model, [q.text for q in queries]))
        res = separator.separate_file(
            plan.track.path, eq, work, fmt="wav32f", settings=sep_settings, progress=sep_progress, cancel=cancel,
            region=(plan.read_start, plan.read_end), names=[f"q{i}" for i in range(len(eq))],
            residual_name="residual" if keep_residual else None)
        scratch = list(res.stem_paths) + ([res.residual_path] if keep_residual else [])
        if res.frames != plan.read_end - plan.read_start:
            raise OutputError(f"separator returned {res.frames} frames for a {plan.read_end - plan.read_start}-frame "
                              "region")
        names = stem_file_names(session, plan.track, region, queries, cfg["name_template"],
                                cfg.get("residual_label", "Residual") if keep_residual else None, out_dir,
                                fmt.extension, job.preset)
        chains = [q.chain for q in queries] + ([cfg.get("residual_chain") or []] if keep_residual else [])
        render_chain = _render_chain_fn() if any(chains) else None
        if any(chains) and render_chain is None:
            warnings.append("plugin chains were skipped: the plugin host module is not installed")
        staged = [os.path.join(work, n) for n in names]
        writers = StemWriterSet(staged, plan.rate, plan.channels, fmt)
        try:
            _trim_copy(scratch, writers, plan, chains if render_chain else None, render_chain, cancel,
                       lambda f: report(0.9 + 0.1 * f, None, "writing"))
            writers.commit()
        except BaseException:
            writers.abort()
            raise
        if _is_cancelled(cancel):
            raise JobCancelled("render cancelled; no stems were written")
        if fmt.extension == ".wav":
            _tag_bwf(staged, session, plan, queries, keep_residual)
        for w in writers.clipped:
            if w:
                warnings.append(f"{sum(writers.clipped)} samples were clipped at full scale; use wav32f to keep them")
                break
        # every file is complete: move them into place
        finals = []
        for s in staged:
            dest = os.path.join(out_dir, os.path.basename(s))
            if os.path.exists(dest):  # appeared meanwhile: never overwrite
                raise OutputError(f"{dest} appeared while rendering; not overwritten")
            os.replace(s, dest)
            finals.append(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # session objects
    tracks, stems = [], []
    created = now_iso()
    used = {"format": fmt.name, "chunk_seconds": cfg["chunk_seconds"], "overlap": cfg["overlap"],
            "context_seconds": cfg["context_seconds"], "backend": cfg["backend"], "device": cfg["device"],
            "preset": job.preset, "source_frames": [plan.start, plan.end], "model": _model_id(separator)}
    labels = [q.display for q in queries] + ([cfg.get("residual_label", "Residual")] if keep_residual else [])
    for i, (path, label) in enumerate(zip(finals, labels)):
        is_res = keep_residual and i == len(finals) - 1
        q = None if is_res else queries[i]
        t = Track(name=f"{plan.track.name} - {label}", path=path, colour=(q.colour if q else None) or plan.track.colour,
                  kind="residual" if is_res else "stem", parent_id=plan.track.id, offset=plan.timeline_start,
                  sample_rate=plan.rate, channels=plan.channels, frames=plan.length,
                  extra={"region_id": region.id, "job_id": job.id})
        tracks.append(t)
        stems.append(Stem(region_id=region.id, query_index="residual" if is_res else i, path=path, track_id=t.id,
                          settings=dict(used, query=(None if q is None else {"text": q.text, "negative": q.negative})),
                          created=created, complete=True, job_id=job.id, label=label))
    label = f"Render {region.name or 'region'} on {plan.track.name}"
    if history is not None:
        history.add_render(tracks, stems, label=label, job_id=job.id)
    else:
        with session.lock:
            idx = max([i for i, t in enumerate(session.tracks) if t.id == plan.track.id or t.parent_id == plan.track.id],
                      default=len(session.tracks) - 1) + 1
            session.tracks[idx:idx] = tracks
            session.stems.extend(stems)
    report(1.0, 0.0, "done")
    log.info("job %s rendered %d files in %.1f s", job.id, len(finals), time.monotonic() - t0)
    return JobResult(job.id, stems, tracks, warnings + list(res.warnings))


def _tag_bwf(paths, session, plan, queries, keep_residual: bool) -> None:
    """Give every WAV stem a BWF ``bext`` chunk: TimeReference = where the region starts on the session
    timeline (in samples at the file's own rate), Description = the query, so DAWs place it on import."""
    from plugin_bridge.export.bwf import add_bext

    rate = plan.rate
    tref = plan.timeline_start if rate == session.sample_rate else int(round(plan.timeline_start * rate / session.sample_rate))
    descs = [q.text + (f" (not: {q.negative})" if q.negative else "") for q in queries]
    if keep_residual:
        descs.append(f"residual (everything not extracted) of {plan.track.name}")
    for path, desc in zip(paths, descs):
        add_bext(path, description=desc, time_reference=int(tref))


def _model_id(separator) -> str | None:
    m = getattr(separator, "model", None)
    for attr in ("id", "name", "model_id"):
        v = getattr(m, attr, None)
        if isinstance(v, str):
            return v
    return None


def _trim_copy(scratch: list[str], writers, plan: JobPlan, chains, render_chain, cancel, progress) -> None:
    from pedalboard.io import AudioFile

    files = [AudioFile(p) for p in scratch]
    try:
        for f in files:
            if plan.pre:
                f.seek(plan.pre)
        if chains is not None:  # plugin chains need the whole stem
            blocks = []
            for f, ch in zip(files, chains):
                x = f.read(plan.length).astype(np.float32)
                x = _fit(x, plan.length, plan.channels)
                if ch:
                    y = np.asarray(render_chain(ch, x, plan.rate), np.float32)
                    if y.ndim == 1:
                        y = y[None]
                    x = _fit(y, plan.length, plan.channels)
                blocks.append(x)
            if _is_cancelled(cancel):
                raise JobCancelled("render cancelled; no stems were written")
            writers.write(blocks)
            progress(1.0)
            return
        done = 0
        while done < plan.length:
            if _is_cancelled(cancel):
                raise JobCancelled("render cancelled; no stems were written")
            n = min(_BLOCK, plan.length - done)
            writers.write([_fit(f.read(n), n, plan.channels) for f in files])
            done += n
            progress(done / plan.length)
    finally:
        for f in files:
            f.close()


def _fit(x: np.ndarray, n: int, channels: int) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.shape[0] != channels:
        x = np.broadcast_to(x[:1], (channels, x.shape[1])) if x.shape[0] == 1 else x[:channels]
    if x.shape[1] < n:
        x = np.pad(x, ((0, 0), (0, n - x.shape[1])))
    return np.ascontiguousarray(x[:, :n])


# --------------------------------------------------------------------------------------------------
# queue
# --------------------------------------------------------------------------------------------------
_SEP_CACHE: dict = {}


def default_separator_factory(backend: str = "auto", device: str = "auto"):
    """Separator over the default model, cached per (backend, device)."""
    key = (backend, device)
    if key not in _SEP_CACHE:
        from plugin_bridge.engine.separator import Separator
        from plugin_bridge.models.registry import load_model

        _SEP_CACHE[key] = Separator(load_model(None), backend=backend, device=device)
    return _SEP_CACHE[key]


def _readable(exc: BaseException) -> str:
    if isinstance(exc, PluginBridgeError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory; try a shorter chunk length"
    return f"internal error ({type(exc).__name__}: {exc})"


class JobQueue:
    """Runs the session's pending jobs in order.

    ``on_progress(JobProgress)`` and ``on_update(JobRecord)`` are plain callbacks called from the
    worker thread.  ``persist()`` is called after every state change (default: ``history.save()`` if
    a history is given, else ``session.save()`` when the session has a file)."""

    def __init__(self, session: Session, separator_factory: Callable[[str, str], Any] | None = None,
                 history=None, persist: Callable[[], None] | bool | None = True,
                 on_progress: Callable[[JobProgress], None] | None = None,
                 on_update: Callable[[JobRecord], None] | None = None, overrides: dict | None = None):
        self.session = session
        self.factory = separator_factory or default_separator_factory
        self.history = history
        self.on_progress = on_progress
        self.on_update = on_update
        self.overrides = dict(overrides or {})
        if persist is True:
            persist = self._default_persist
        self.persist = persist or None
        self.results: dict[str, JobResult] = {}
        self.progress: dict[str, JobProgress] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._cancel_all = threading.Event()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._running: str | None = None

    # -- state ------------------------------------------------------------------------------------
    def _default_persist(self) -> None:
        if self.history is not None and self.session.path:
            self.history.save()
        elif self.session.path:
            self.session.save()

    def _persist(self) -> None:
        if self.persist:
            try:
                self.persist()
            except PluginBridgeError as exc:
                log.warning("could not save job state: %s", exc)

    def _set(self, job: JobRecord, **changes) -> None:
        with self.session.lock:
            for k, v in changes.items():
                setattr(job, k, v)
        self._persist()
        if self.on_update:
            self.on_update(job)

    def pending(self) -> list[JobRecord]:
        return [j for j in self.session.jobs if j.status == "pending"]

    @property
    def running_job(self) -> str | None:
        return self._running

    # -- API --------------------------------------------------------------------------------------
    def enqueue(self, region_id: str, queries: list[QuerySpec] | None = None, preset=None,
                settings: dict | None = None) -> JobRecord:
        job = make_job(self.session, region_id, queries, preset, settings)
        with self.session.lock:
            self.session.jobs.append(job)
        self._persist()
        if self.on_update:
            self.on_update(job)
        with self._cv:
            self._cv.notify_all()
        return job

    def cancel(self, job_id: str) -> None:
        job = self.session.job(job_id)
        if job.status == "pending":
            self._set(job, status="cancelled", error="cancelled by the user", finished=now_iso())
        ev = self._cancel.get(job_id)
        if ev is not None:
            ev.set()

    def cancel_all(self) -> None:
        self._cancel_all.set()
        for j in list(self.session.jobs):
            if j.status == "pending":
                self._set(j, status="cancelled", error="cancelled by the user", finished=now_iso())
        for ev in list(self._cancel.values()):
            ev.set()

    def interrupt(self) -> None:
        """Stop the running job at its next chunk (it is recorded as cancelled); pending jobs stay
        pending.  Safe to call from a signal handler."""
        self._cancel_all.set()

    def retry(self, job_id: str) -> None:
        job = self.session.job(job_id)
        if job.status in ("failed", "cancelled"):
            self._set(job, status="pending", error=None, progress=0.0, finished=None)
            with self._cv:
                self._cv.notify_all()

    def run_one(self, job: JobRecord) -> JobResult | None:
        ev = threading.Event()
        self._cancel[job.id] = ev
        self._running = job.id
        self._set(job, status="running", error=None, progress=0.0)

        def prog(p: JobProgress):
            self.progress[job.id] = p
            job.progress = p.fraction
            if self.on_progress:
                self.on_progress(p)

        cancel = lambda: ev.is_set() or self._cancel_all.is_set()  # noqa: E731
        try:
            sep = self.factory(self.overrides.get("backend") or effective_settings(self.session, job)["backend"],
                               self.overrides.get("device") or effective_settings(self.session, job)["device"])
            res = run_job(self.session, job, sep, self.history, prog, cancel, self.overrides)
        except (JobCancelled, KeyboardInterrupt) as exc:
            self._set(job, status="cancelled", error="cancelled by the user", finished=now_iso())
            if isinstance(exc, KeyboardInterrupt):
                raise
            return None
        except BaseException as exc:  # noqa: BLE001 - the queue must go on
            if not isinstance(exc, PluginBridgeError):
                log.exception("job %s failed", job.id)
            self._set(job, status="failed", error=_readable(exc), finished=now_iso())
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return None
        finally:
            self._cancel.pop(job.id, None)
            self._running = None
        self.results[job.id] = res
        self._set(job, status="done", progress=1.0, stem_ids=[s.id for s in res.stems], finished=now_iso(),
                  error=("; ".join(res.warnings) or None))
        return res

    def run_pending(self) -> list[JobRecord]:
        """Run every pending job in this thread, in order; returns the jobs that were attempted."""
        self._cancel_all.clear()
        done = []
        while not self._cancel_all.is_set():
            nxt = self.pending()
            if not nxt:
                break
            self.run_one(nxt[0])
            done.append(nxt[0])
        return done

    # worker thread
    def start(self) -> None:
        """Start the worker thread; it runs pending jobs as they arrive until ``stop()``."""
        if self._thread and self._thread.is_alive():
            return
        self._stop = False
        self._cancel_all.clear()
        self._thread = threading.Thread(target=self._loop, name="plugin-bridge-jobs", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not self.pending():
                    self._cv.wait(0.5)
                if self._stop:
                    return
            self._cancel_all.clear()
            nxt = self.pending()
            if nxt:
                self.run_one(nxt[0])
            with self._cv:
                self._cv.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is pending or running; False on timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self.pending() or self._running:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(0.05 if left is None else min(0.05, left))
        return True

    def stop(self, cancel: bool = False, timeout: float | None = 30.0) -> None:
        if cancel:
            for ev in list(self._cancel.values()):
                ev.set()
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread:
            self._thread.join(timeout)
