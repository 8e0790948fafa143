"""Render jobs: a region x a set of queries -> stem tracks placed sample-exactly in the session, and
chain re-render jobs, in one queue.

A separation job reads the region plus ``context_seconds`` of audio before and after it (clipped at
the file ends) so the separator hears onsets, and streams it through ``Separator.separate_stream``
into the job's sink (``_StemFiles``), which drops the context, runs each query's plugin chain
(``plugin_bridge.plugins.render_chain``) and writes each final stem once in the requested format, WAV
stems with their BWF ``bext`` chunk (``export.bwf.BwfWriter``).  Stem files are named here, and only
here, from a template (tokens {session} {track} {region} {label} {query} {index} {token} {preset}),
sanitised and unique in ``<session>_stems/``.  Every query gives one stem track under the source
track, at the region's start, plus a residual track (unless the residual is discarded), so stems +
residual == the region's audio (exactly, up to float32 rounding, with ``wav32f``; within quantisation
for integer formats; not when plugin chains change the stems).

Atomicity: every stem is written under a hidden temporary name beside its final name and renamed into
place only once the whole job succeeded; a cancelled or failed job leaves no file.  A region that
extends past the ends of its track's audio is clipped to the audio.

A re-render job (``JobQueue.enqueue_rerender``) runs a track's plugin chain over its unprocessed file
into a new ``<base>_fxN`` file and points the track at it (see ``_run_rerender``).  A learn job
(``JobQueue.enqueue_learn``) fits a query vector for the separator from a folder of clips
(``engine.learn.learn_query``) and saves it as @NAME with the user's learned queries (``_run_learn``).

``JobQueue`` runs jobs of every kind one after another in a worker thread, reports progress/ETA, cancels
one job or all, records failures with a readable message and carries on, and persists job state in the
session (a job interrupted by a crash is pending again when the session is reopened).  Every change it
makes to the session goes through a ``History``: job records with ``add_job`` / ``set_job`` /
``retry_job`` (not undo steps), a render's stems with ``add_render`` and a re-render's track with
``set_track`` (one undo step each).  A render also records, with ``set_track`` (no undo step), the file
facts its one probe found that the session's track lacked (``JobPlan.new_facts``: a track of an older
session file); ``plan_job`` itself never changes the session.
"""
from __future__ import annotations

import copy
import functools
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from plugin_bridge.audio_io import StreamReader, probe, read_all
from plugin_bridge.engine.separator import Query, SeparationSettings, Separator, is_cancelled, slug
from plugin_bridge.engine.writer import OutputFormat, StemWriterSet, check_output_dir
from plugin_bridge.errors import JobCancelled, OutputError, PluginBridgeError
from plugin_bridge.export.bwf import BwfWriter
from plugin_bridge.models.registry import load_model, query_warnings
from plugin_bridge.plugins import render_chain, validate_chain
from plugin_bridge.session.history import History
from plugin_bridge.learned import LearnedQuery, LearnedStore
from plugin_bridge.session.model import (
    DEFAULT_SETTINGS, JOB_KINDS, TRACK_FILE_FACTS, JobRecord, QuerySpec, Region, Session, SessionError, Stem, Track,
    now_iso,
)

__all__ = ["JobPlan", "JobResult", "JobQueue", "plan_job", "run_job", "make_job", "make_rerender_job",
           "make_learn_job", "SEPARATE", "RERENDER", "LEARN", "stem_file_names", "sanitize_filename",
           "effective_settings", "model_separator", "default_separator_factory", "JobProgress"]

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
    #: the file facts (``TRACK_FILE_FACTS``) the session's track lacks, as probed: the job records them
    new_facts: dict = field(default_factory=dict)

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
    """Where the job reads and places its stems; the plan's track is a copy with the probed file info
    and ``new_facts`` what of it the session lacks (the session is not changed)."""
    track = copy.deepcopy(session.track(region.track_id))
    info = probe(track.path)  # always: a take replaced under the same name must not be cut by stale numbers
    new_facts = {}
    for attr, what, unit in zip(TRACK_FILE_FACTS, ("sample rate", "channel count", "length"), (" Hz", " ch", " frames")):
        c, r = getattr(track, attr), getattr(info, attr)
        if c is None:
            new_facts[attr] = r
        elif c != r:
            raise SessionError(f"track {track.name!r}: the file {track.path} now has {what} {r}{unit} but the session "
                               f"recorded {c}{unit}; the file was replaced - add it again as a new track",
                               f"tracks.{attr}")
        setattr(track, attr, r)
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
                   timeline_start, new_facts)


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


def stem_file_names(session: Session, track: Track, region: Region, queries: list[QuerySpec], template: str,
                    residual_label: str | None, out_dir: str, ext: str, preset: str | None = None) -> list[str]:
    """File names (without folder) for each query (+ the residual when ``residual_label`` is not None),
    unique among themselves and against files already in ``out_dir``."""
    from plugin_bridge.session.presets import check_name_template

    check_name_template(template, "name_template")
    ri = [r.id for r in session.regions_on(track.id)]
    region_name = region.name or f"R{ri.index(region.id) + 1 if region.id in ri else 1}"
    items = [(q.label or q.token or q.text, q.text, f"{i + 1:02d}", q.token or q.label or slug(q.text))
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
                                                 label=label, query=slug(text), index=idx, token=token,
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
    detail: str = ""            # e.g. a learn job's "Step 3/100  loss 0.1234"


@dataclass
class JobResult:
    job_id: str
    stems: list[Stem]
    tracks: list[Track]
    warnings: list[str] = field(default_factory=list)
    learned: LearnedQuery | None = None     # what a learn job saved


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


class _StemFiles:
    """The job's ``StemSink``: keeps the region (drops the context read before and after it), runs
    each stem's plugin chain and writes every final file once, BWF ``bext`` chunk included, under a
    temporary name; ``close()`` renames them all into place, ``abort()`` removes them.

    A stem without a chain streams straight to its file.  ``render_chain`` needs the whole signal
    (effects have state and tails), so a stem with a chain is held in memory (float32, region length)
    and rendered and written in ``close()``."""

    def __init__(self, writers, plan: JobPlan, chains: list[list], cancel, progress):
        self.writers, self.plan, self.chains, self.cancel, self.progress = writers, plan, chains, cancel, progress
        self.held = [np.zeros((plan.channels, plan.length), np.float32) if ch else None for ch in chains]
        self.written = 0
        self._empty = np.zeros((plan.channels, 0), np.float32)

    def write(self, start: int, blocks: list[np.ndarray]) -> None:
        pre = self.plan.pre
        a, b = max(start, pre), min(start + blocks[0].shape[-1], pre + self.plan.length)
        if b <= a:
            return
        out = []
        for held, blk in zip(self.held, blocks):
            part = blk[:, a - start:b - start]
            if held is not None:
                held[:, a - pre:b - pre] = part
                part = self._empty
            out.append(part)
        self.writers.write(out)
        self.written += b - a

    def close(self) -> list[str]:
        try:
            if self.written != self.plan.length:
                raise OutputError(f"the separator delivered {self.written} frames for a {self.plan.length}-frame "
                                  "region")
            n_chains = sum(h is not None for h in self.held)
            for k, i in enumerate(i for i, h in enumerate(self.held) if h is not None):
                if is_cancelled(self.cancel):
                    raise JobCancelled("render cancelled; no stems were written")
                self.progress(k / n_chains)
                y = render_chain(self.chains[i], self.held[i], self.plan.rate, cancel=self.cancel)
                self.held[i] = None
                for a in range(0, self.plan.length, _BLOCK):
                    self.writers.write([y[:, a:a + _BLOCK] if j == i else self._empty for j in range(len(self.held))])
            if is_cancelled(self.cancel):
                raise JobCancelled("render cancelled; no stems were written")
            for p in self.writers.paths:
                if os.path.exists(p):  # appeared meanwhile: never overwrite
                    raise OutputError(f"{p} appeared while rendering; not overwritten")
            return self.writers.commit()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self.held = []
        self.writers.abort()


#: Job kinds (``JobRecord.kind``): a separation has its region in ``region_id``, a re-render its track in
#: ``track_id``, a learn job its request (name, clips, background, steps, seconds) in ``settings``.
SEPARATE, RERENDER, LEARN = JOB_KINDS


def make_rerender_job(session: Session, track_id: str) -> JobRecord:
    """A pending job that renders the track's plugin chain over its unprocessed audio."""
    session.track(track_id)
    return JobRecord(kind=RERENDER, track_id=track_id)


def make_learn_job(name: str, clips: str, background: str | None = None, steps: int = 100,
                   seconds: float = 2.0) -> JobRecord:
    """A pending job that teaches the sound of the clips in the folder ``clips`` as @NAME (``background``:
    a folder of clips that must not be taken).  The name must be free among the learned queries."""
    name = " ".join(str(name).strip().lstrip("@").split())
    if not name:
        raise SessionError('give the sound a name, e.g. "generator hum"', "name")
    if not str(clips or "").strip():
        raise SessionError("choose the folder with clips of the sound", "clips")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 5000:
        raise SessionError("steps must be a whole number from 1 to 5000", "steps")
    if not 0.5 <= float(seconds) <= 10:
        raise SessionError("seconds must be between 0.5 and 10", "seconds")
    _check_free_name(LearnedStore(), name)
    return JobRecord(kind=LEARN, settings={"name": name, "clips": clips, "background": background or None,
                                           "steps": steps, "seconds": float(seconds)})


def _check_free_name(store: LearnedStore, name: str) -> None:
    if name.lower() in (n.lower() for n in store.names()):
        raise SessionError(f"a learned query named '@{name}' already exists; choose another name", "name")


def _run_learn(job: JobRecord, separator, progress, cancel) -> JobResult:
    """Fit the query of a learn job on the separator's (frozen) model and save it; nothing is saved when
    the run is cancelled or fails.  Interferers: ``engine.learn.interferers`` (the background clips, else
    the corpus of ``$PLUGIN_BRIDGE_CORPUS``, else the shipped clips and synthesised noise)."""
    # lazy: engine.learn imports torch (about 1.6 s, python -X importtime), which opening a session -
    # the first import of this module in the GUI - must not pay
    from plugin_bridge.engine.learn import LearnSettings, interferers, learn_query, load_clips

    req = job.settings
    name = req["name"]
    store = LearnedStore()
    _check_free_name(store, name)

    def report(frac, eta, stage, detail=""):
        if progress:
            progress(JobProgress(job.id, frac, eta, stage, detail))

    report(0.0, None, "reading clips")
    model = separator.model
    rate = model.cfg.sample_rate
    clips = load_clips(req["clips"], rate)
    inter, desc = interferers(rate, req.get("background"))
    t0 = time.monotonic()

    def step(k, n, loss):
        report(k / n, (time.monotonic() - t0) / k * (n - k), "learning", f"Step {k}/{n}  loss {loss:.4f}")

    res = learn_query(model, clips, inter, name, LearnSettings(steps=int(req["steps"]), seconds=float(req["seconds"])),
                      progress=step, cancel=lambda: is_cancelled(cancel), interferer_desc=desc)
    lq = res.learned(name, model)
    store.save(lq)
    report(1.0, 0.0, "done")
    return JobResult(job.id, [], [], learned=lq)


def _run_rerender(session: Session, job: JobRecord, history, progress, cancel) -> JobResult:
    """Run the track's chain over its unprocessed file (``extra["raw_path"]``, else its file) into a
    new ``<base>_fxN<ext>`` (float WAV for .wav, FLAC 24 otherwise; written once, atomically), then
    point the track at it as one undo step (the unprocessed file stays, so undo and a later re-render
    start from it).  An empty chain points the track back at the unprocessed file.  A bad chain or a
    failing plugin raises (nothing written, nothing changed)."""
    track_id = job.track_id
    with session.lock:
        t = session.track(track_id)
        raw = t.extra.get("raw_path") or t.path
        chain = copy.deepcopy(t.chain or [])

    def report(frac, stage):
        if progress:
            progress(JobProgress(job.id, frac, None, stage))

    if not chain:
        if raw != t.path:
            history.set_track(track_id, path=raw)
        report(1.0, "done")
        return JobResult(job.id, [], [])
    chain = validate_chain(chain)
    base, ext = os.path.splitext(raw)
    k = 1
    while os.path.exists(f"{base}_fx{k}{ext}"):
        k += 1
    out = f"{base}_fx{k}{ext}"
    report(0.0, "plugins")
    x, rate = read_all(raw)  # header checks first: a damaged stem is a readable error
    y = render_chain(chain, x, rate, cancel=cancel)
    if is_cancelled(cancel):
        raise JobCancelled("re-render cancelled; nothing was written")
    # keep the stem's format: float WAV keeps any gain above full scale unclipped
    w = StemWriterSet([out], rate, y.shape[0], OutputFormat("wav32f" if ext.lower() == ".wav" else "flac24"))
    try:
        for a in range(0, y.shape[1], _BLOCK):
            w.write([y[:, a:a + _BLOCK]])
        w.commit()
    except BaseException:
        w.abort()
        raise
    with session.lock:
        try:
            extra = dict(session.track(track_id).extra, raw_path=raw)
        except PluginBridgeError:
            return JobResult(job.id, [], [], [f"the track was removed meanwhile; {out} stays on disk"])
    history.set_track(track_id, path=out, extra=extra)
    report(1.0, "done")
    return JobResult(job.id, [], [])


def run_job(session: Session, job: JobRecord, separator, history=None,
            progress: Callable[[JobProgress], None] | None = None, cancel=None,
            overrides: dict | None = None) -> JobResult:
    """Run ``job`` of any kind: a separation adds its stem tracks + stem records to the session as one
    undo step of ``history`` (a fresh ``History`` of the session when None), a re-render changes its track,
    a learn job saves a learned query (``separator``: the model it learns for; a re-render needs none).
    Raises ``JobCancelled`` (no files left) or a ``PluginBridgeError``."""
    history = history if history is not None else History(session)
    if job.kind == RERENDER:
        return _run_rerender(session, job, history, progress, cancel)
    if job.kind == LEARN:
        return _run_learn(job, separator, progress, cancel)
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
    warnings: list[str] = []
    t0 = time.monotonic()
    chains = [q.chain for q in queries] + ([cfg.get("residual_chain") or []] if keep_residual else [])
    split = 0.9 if any(chains) else 1.0  # the share of the progress bar that separation takes

    def report(frac, eta, stage):
        if progress:
            progress(JobProgress(job.id, min(1.0, max(0.0, frac)), eta, stage))

    def sep_progress(p):
        eta = None if p.eta_seconds is None else p.eta_seconds + (1 - split) * p.elapsed
        report(split * p.fraction, eta, "separating")

    sep_settings = SeparationSettings(chunk_seconds=float(cfg["chunk_seconds"]), overlap=float(cfg["overlap"]),
                                      residual=keep_residual)
    eq = [Query(q.text, q.negative if q.negative and q.negative.strip() else None, q.token or None)
          for q in queries]
    model = getattr(separator, "model", None)
    if model is not None:
        warnings.extend(query_warnings(model, [q.text for q in queries]))
    names = stem_file_names(session, plan.track, region, queries, cfg["name_template"],
                            cfg.get("residual_label", "Residual") if keep_residual else None, out_dir,
                            fmt.extension, job.preset)
    paths = [os.path.join(out_dir, n) for n in names]
    open_file = None
    if fmt.extension == ".wav":
        tags = _bext_fields(session, plan, queries, keep_residual)

        def open_file(i: int, tmp: str) -> BwfWriter:
            return BwfWriter(tmp, plan.rate, plan.channels, fmt.bit_depth, **tags[i])
    reader = StreamReader(plan.track.path, start=plan.read_start, stop=plan.read_end)
    try:
        if reader.frames != plan.read_end - plan.read_start:
            raise OutputError(f"{plan.track.path} holds {reader.frames} frames of the "
                              f"{plan.read_end - plan.read_start} the job reads")
        writers = StemWriterSet(paths, plan.rate, plan.channels, fmt, open_file=open_file)
        sink = _StemFiles(writers, plan, chains, cancel, lambda f: report(split + (1 - split) * f, None, "plugins"))
        try:
            finals = separator.separate_stream(reader, eq, sep_settings, sink, sep_progress, cancel)
        except BaseException:
            sink.abort()  # the separator aborts the sink itself; this also covers one that died before
            raise
    finally:
        reader.close()
    if any(writers.clipped):
        warnings.append(f"{sum(writers.clipped)} samples were clipped at full scale; use wav32f to keep them")

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
    if plan.new_facts:  # e.g. a track of an older session file: the saved session keeps what the probe found
        history.set_track(plan.track.id, **plan.new_facts)
    history.add_render(tracks, stems, label=f"Render {region.name or 'region'} on {plan.track.name}", job_id=job.id)
    report(1.0, 0.0, "done")
    log.info("job %s rendered %d files in %.1f s", job.id, len(finals), time.monotonic() - t0)
    return JobResult(job.id, stems, tracks, warnings)


def _bext_fields(session, plan, queries, keep_residual: bool) -> list[dict]:
    """The BWF ``bext`` fields of every WAV stem: TimeReference = where the region starts on the
    session timeline (in samples at the file's own rate), Description = the query, so DAWs place it
    on import."""
    rate = plan.rate
    tref = plan.timeline_start if rate == session.sample_rate else int(round(plan.timeline_start * rate / session.sample_rate))
    descs = [q.text + (f" (not: {q.negative})" if q.negative else "") for q in queries]
    if keep_residual:
        descs.append(f"residual (everything not extracted) of {plan.track.name}")
    return [{"description": d, "time_reference": int(tref)} for d in descs]


def _model_id(separator) -> str | None:
    m = getattr(separator, "model", None)
    for attr in ("id", "name", "model_id"):
        v = getattr(m, attr, None)
        if isinstance(v, str):
            return v
    return None


# --------------------------------------------------------------------------------------------------
# queue
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def model_separator(spec: str | None = None, tokenizer: str | None = None, backend: str = "auto",
                    device: str = "auto") -> Separator:
    """The Separator over the model ``spec`` (None: the default; ``registry.load_model``), cached per
    (spec, tokenizer, backend, device): the one separator factory of the queue and the window."""
    return Separator(load_model(spec, tokenizer), backend=backend, device=device)


def default_separator_factory(backend: str = "auto", device: str = "auto") -> Separator:
    """The queue's default factory: the default model's separator."""
    return model_separator(None, None, backend, device)


def _readable(exc: BaseException) -> str:
    if isinstance(exc, PluginBridgeError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory; try a shorter chunk length"
    return f"internal error ({type(exc).__name__}: {exc})"


class JobQueue:
    """Runs the session's pending jobs, of every kind, in order.

    Every session edit goes through ``history`` (a ``History`` of the session; a fresh one when None):
    job records with ``add_job`` / ``set_job`` (per-chunk progress with ``notify=False``) / ``retry_job``,
    results with ``add_render`` / ``set_track``.  A GUI passes an object with these methods that applies
    them on its UI thread.  ``on_progress(JobProgress)`` and ``on_update(JobRecord)`` are plain callbacks
    called from the worker thread.  ``persist()`` is called after every state change (default:
    ``history.save()`` when the session has a file)."""

    def __init__(self, session: Session, separator_factory: Callable[[str, str], Any] | None = None,
                 history=None, persist: Callable[[], None] | bool | None = True,
                 on_progress: Callable[[JobProgress], None] | None = None,
                 on_update: Callable[[JobRecord], None] | None = None, overrides: dict | None = None):
        self.session = session
        self.factory = separator_factory or default_separator_factory
        self.history = history if history is not None else History(session)
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
        if self.session.path:
            self.history.save()

    def _persist(self) -> None:
        if self.persist:
            try:
                self.persist()
            except PluginBridgeError as exc:
                log.warning("could not save job state: %s", exc)

    def _set(self, job: JobRecord, **changes) -> None:
        self.history.set_job(job.id, **changes)
        self._changed(job)

    def _changed(self, job: JobRecord) -> None:
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
        return self._add(make_job(self.session, region_id, queries, preset, settings))

    def enqueue_rerender(self, track_id: str) -> str:
        """Queue a re-render of the track's plugin chain (see ``_run_rerender``); returns the job id."""
        return self._add(make_rerender_job(self.session, track_id)).id

    def enqueue_learn(self, name: str, clips: str, background: str | None = None, steps: int = 100,
                      seconds: float = 2.0) -> str:
        """Queue teaching a sound (see ``make_learn_job`` and ``_run_learn``); returns the job id."""
        return self._add(make_learn_job(name, clips, background, steps, seconds)).id

    def _add(self, job: JobRecord) -> JobRecord:
        job = self.history.add_job(job)
        self._changed(job)
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
        if self.history.retry_job(job_id):
            self._changed(self.session.job(job_id))
            with self._cv:
                self._cv.notify_all()

    def run_one(self, job: JobRecord) -> JobResult | None:
        ev = threading.Event()
        self._cancel[job.id] = ev
        self._running = job.id
        self._set(job, status="running", error=None, progress=0.0)

        def prog(p: JobProgress):
            self.progress[job.id] = p
            self.history.set_job(job.id, notify=False, progress=p.fraction)
            if self.on_progress:
                self.on_progress(p)

        cancel = lambda: ev.is_set() or self._cancel_all.is_set()  # noqa: E731
        try:
            sep = None
            if job.kind == SEPARATE:
                cfg = effective_settings(self.session, job)
                sep = self.factory(self.overrides.get("backend") or cfg["backend"],
                                   self.overrides.get("device") or cfg["device"])
            elif job.kind == LEARN:
                sep = self.factory("torch", "cpu")  # learning needs gradients: torch, on the CPU
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

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        """Block until the job is no longer pending or running; False on timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self.session.job(job_id).status in ("pending", "running"):
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(0.05 if left is None else min(0.05, left))
        return True

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
