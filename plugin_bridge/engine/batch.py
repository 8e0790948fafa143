"""Batch separation: many files through one warm engine, with resume, a summary and no partial output.

Engine-level (no Qt): ``plugin-bridge separate A.wav "takes/*.wav"``, ``plugin-bridge batch jobs.csv`` and
(later) the desktop app's job queue all build a list of :class:`BatchJob` and hand it to
:func:`run_batch` with one :class:`~plugin_bridge.engine.separator.Separator`.

* Manifests (:func:`read_manifest`): CSV with a header row, or JSON Lines (one object per line).  Fields:
  ``input`` (required; relative to the manifest's folder), ``queries`` (``;``-separated in CSV, a list or
  ``;``-separated text in JSON; falls back to the command line's ``-q``), ``negatives`` (same, by position;
  empty for none), ``region`` (``START-END`` seconds, either side may be empty, or ``[start, end]`` in
  JSON) and ``output`` (the output base name, default: the input's name).  A malformed row becomes one
  failed item, ``jobs.csv row 4: ...``; the other rows still run.
* Resume: next to each job's stems a sidecar ``<output>.pb-job.json`` records the model hash, the
  settings, the input's size and modification time and, once the stems are in place, each output's
  size and SHA-256.  A rerun skips a job whose sidecar matches and whose outputs verify; a job whose
  sidecar matches but whose outputs are missing or damaged (an interrupted run) is redone.  Outputs made
  by another model or other settings, or files the batch did not make, are never replaced without
  ``overwrite=True``.
* Nothing partial on disk: stems stream into hidden ``.pb-partial-<job key>-*`` files that are renamed
  into place only when the whole job succeeded; leftovers of a killed process (same job key) are removed
  before the job is run again.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from plugin_bridge.errors import ConfigError, PluginBridgeError
from plugin_bridge.fileio import file_sha256
from plugin_bridge.tables import format_table

__all__ = ["BatchJob", "BatchOptions", "JobResult", "read_manifest", "expand_inputs", "run_batch",
           "process_job", "job_outputs", "write_summary", "format_summary", "model_hash", "BatchProgress",
           "SIDECAR_SUFFIX"]

SIDECAR_SUFFIX = ".pb-job.json"
SIDECAR_FORMAT = "plugin-bridge/batch-job/1"
PARTIAL_PREFIX = ".pb-partial-"


@dataclass(frozen=True)
class BatchJob:
    input: str
    queries: tuple[tuple[str, str | None], ...] = ()   # (text, negative or None)
    region: tuple[float | None, float | None] = (None, None)  # seconds
    output: str | None = None                           # output base name (default: the input's name)
    where: str = ""                                     # "jobs.csv row 3" / "argument 2", for messages
    error: str | None = None                            # a malformed manifest row: why

    @property
    def label(self) -> str:
        return self.where or self.input

    @property
    def base(self) -> str:
        return self.output or os.path.splitext(os.path.basename(self.input))[0]


@dataclass(frozen=True)
class BatchOptions:
    out_dir: str
    fmt: str = "wav24"
    chunk_seconds: float | None = None
    overlap: float | None = None
    per_channel: bool = False
    residual: bool = True
    overwrite: bool = False

    def settings(self):
        from plugin_bridge.engine.separator import SeparationSettings

        kw = {}
        if self.chunk_seconds is not None:
            kw["chunk_seconds"] = self.chunk_seconds
        if self.overlap is not None:
            kw["overlap"] = self.overlap
        return SeparationSettings(per_channel=self.per_channel, residual=self.residual, **kw).validate()


@dataclass
class JobResult:
    input: str
    where: str
    status: str                # "done", "skipped" or "failed"
    message: str = ""
    outputs: list[str] = field(default_factory=list)
    audio_seconds: float = 0.0
    seconds: float = 0.0
    worker: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped")


# -- inputs ---------------------------------------------------------------------------------------------

_GLOB_CHARS = set("*?[")


def is_pattern(arg: str) -> bool:
    """A glob pattern, unless a file of exactly that name exists ('take[1].wav')."""
    return bool(_GLOB_CHARS & set(arg)) and not os.path.exists(arg)


def expand_inputs(args: Iterable[str], queries: list[tuple[str, str | None]]) -> list[BatchJob]:
    """Command-line inputs (files and quoted glob patterns, expanded in sorted order) -> jobs.  A pattern
    that matches nothing is one failed item; a file listed twice runs once."""
    jobs: list[BatchJob] = []
    seen: set[str] = set()
    for n, arg in enumerate(args, start=1):
        where = f"argument {n} ({arg})"
        if is_pattern(arg):
            hits = sorted(p for p in glob.glob(arg, recursive=True) if os.path.isfile(p))
            if not hits:
                jobs.append(BatchJob(arg, tuple(queries), where=where, error="no file matches this pattern"))
            paths = hits
        else:
            paths = [arg]
        for p in paths:
            key = os.path.abspath(p)
            if key in seen:
                continue
            seen.add(key)
            jobs.append(BatchJob(p, tuple(queries), where=p))
    return jobs


def _split_list(value, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(";")] if value.strip() else []
    if isinstance(value, list) and all(isinstance(v, str) or v is None for v in value):
        return [(v or "").strip() for v in value]
    raise ValueError(f"'{what}' must be text separated by ';' or a list of texts")


def _parse_time(s, what: str) -> float | None:
    if s is None or (isinstance(s, str) and not s.strip()):
        return None
    try:
        v = float(s)
    except (TypeError, ValueError):
        raise ValueError(f"region {what} {s!r} is not a number of seconds") from None
    if not v >= 0 or v == float("inf"):
        raise ValueError(f"region {what} {s!r} must be a finite, non-negative number of seconds")
    return v


def _parse_region(value) -> tuple[float | None, float | None]:
    if value is None or value == "":
        return (None, None)
    if isinstance(value, str):
        if "-" not in value:
            raise ValueError(f"region {value!r} must be START-END in seconds, e.g. 1.5-20 (either side may be empty)")
        a, b = value.split("-", 1)
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        a, b = value
    else:
        raise ValueError("region must be 'START-END' seconds or [start, end]")
    start, end = _parse_time(a, "start"), _parse_time(b, "end")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"region end {end:g} s is not after its start {start:g} s")
    return (start, end)


FIELDS = ("input", "queries", "negatives", "region", "output")


def _job_from_record(rec: dict, where: str, root: str, default_queries: list[tuple[str, str | None]]) -> BatchJob:
    unknown = sorted(set(rec) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    inp = rec.get("input")
    if not isinstance(inp, str) or not inp.strip():
        raise ValueError("'input' is missing or empty")
    inp = inp.strip()
    path = inp if os.path.isabs(inp) else os.path.join(root, inp)
    texts = [t for t in _split_list(rec.get("queries"), "queries")]
    negs = _split_list(rec.get("negatives"), "negatives")
    if any(not t for t in texts):
        raise ValueError("an empty query in 'queries'")
    if texts:
        if len(negs) > len(texts):
            raise ValueError(f"{len(negs)} negatives for {len(texts)} queries")
        negs += [""] * (len(texts) - len(negs))
        queries = [(t, n or None) for t, n in zip(texts, negs)]
    else:
        if negs:
            raise ValueError("'negatives' given without 'queries'")
        if not default_queries:
            raise ValueError("no 'queries' in this row and none given with -q")
        queries = list(default_queries)
    out = rec.get("output")
    if out is not None and not isinstance(out, str):
        raise ValueError("'output' must be text")
    out = (out or "").strip() or None
    if out and (os.path.isabs(out) or ".." in out.replace("\\", "/").split("/")):
        raise ValueError(f"output name {out!r} must stay inside the output folder")
    return BatchJob(path, tuple(queries), _parse_region(rec.get("region")), out, where)


def read_manifest(path: str, default_queries: list[tuple[str, str | None]] = ()) -> list[BatchJob]:
    """A CSV (header row) or JSON Lines manifest -> jobs; malformed rows are jobs with ``error`` set.
    A manifest that cannot be read at all raises ``ConfigError``."""
    name = os.path.basename(path)
    root = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such manifest") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the manifest ({exc})") from None
    default_queries = list(default_queries)
    jobs: list[BatchJob] = []
    ext = os.path.splitext(path)[1].lower()
    if ext in (".jsonl", ".ndjson", ".json"):
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            where = f"{name} line {n}"
            try:
                rec = json.loads(line)
            except ValueError as exc:
                jobs.append(BatchJob("", where=where, error=f"not valid JSON ({exc})"))
                continue
            try:
                if not isinstance(rec, dict):
                    raise ValueError("each line must be a JSON object")
                jobs.append(_job_from_record(rec, where, root, default_queries))
            except ValueError as exc:
                inp = rec.get("input") if isinstance(rec, dict) else None
                jobs.append(BatchJob(inp if isinstance(inp, str) else "", where=where, error=str(exc)))
    elif ext in (".csv", ".tsv", ".txt"):
        rows = list(csv.reader(text.splitlines(), delimiter="\t" if ext == ".tsv" else ","))
        rows = [(n, r) for n, r in enumerate(rows, start=1) if any(c.strip() for c in r)]
        if not rows:
            raise ConfigError(f"{path}: the manifest is empty")
        header = [h.strip().lower() for h in rows[0][1]]
        if "input" not in header:
            raise ConfigError(f"{path} row {rows[0][0]}: the header must name the columns, with at least "
                              f"'input' (known: {', '.join(FIELDS)})")
        bad = sorted(set(header) - set(FIELDS))
        if bad:
            raise ConfigError(f"{path} row {rows[0][0]}: unknown column(s) {', '.join(bad)}; known: {', '.join(FIELDS)}")
        for n, r in rows[1:]:
            where = f"{name} row {n}"
            if r and r[0].lstrip().startswith("#"):
                continue
            try:
                if len(r) > len(header):
                    raise ValueError(f"{len(r)} cells for {len(header)} columns (quote cells that contain commas)")
                rec = {h: c for h, c in zip(header, r) if c.strip()}
                jobs.append(_job_from_record(rec, where, root, default_queries))
            except ValueError as exc:
                jobs.append(BatchJob(r[header.index("input")].strip() if len(r) > header.index("input") else "",
                                     where=where, error=str(exc)))
    else:
        raise ConfigError(f"{path}: unknown manifest type {ext or '(no extension)'}; use .csv or .jsonl")
    if not jobs:
        raise ConfigError(f"{path}: the manifest lists no jobs")
    return jobs


# -- identity of a result ---------------------------------------------------------------------------------

def model_hash(model) -> str:
    """What made the stems: the model file's SHA-256 (cached on the model object), or for a model with
    no file (random weights) its name and config."""
    h = getattr(model, "_batch_hash", None)
    if h:
        return h
    src = getattr(model, "source", "") or ""
    if getattr(model, "_weights_hash", None):
        h = "sha256:" + model._weights_hash
    elif src and os.path.isfile(src):
        h = "sha256:" + file_sha256(src)
    else:
        h = "nofile:" + hashlib.sha256((str(getattr(model, "name", "")) + model.cfg.to_json()).encode()).hexdigest()
    try:
        model._batch_hash = h
    except AttributeError:
        pass
    return h


def job_outputs(job: BatchJob, opts: BatchOptions) -> tuple[list[str], list[str], str | None]:
    """(output names without extension, full paths of stems + residual, residual name)."""
    from plugin_bridge.engine.separator import Query, unique_names
    from plugin_bridge.engine.writer import OutputFormat

    ext = OutputFormat(opts.fmt).extension
    base = job.base
    names = unique_names([f"{base}_{Query(t, n).token}" for t, n in job.queries])
    res = f"{base}_residual" if opts.residual else None
    paths = [os.path.join(opts.out_dir, n + ext) for n in names + ([res] if res else [])]
    return names, paths, res


def job_key(job: BatchJob, opts: BatchOptions) -> str:
    return hashlib.sha256(os.path.abspath(os.path.join(opts.out_dir, job.base)).encode()).hexdigest()[:12]


def _recipe(job: BatchJob, opts: BatchOptions, mhash: str) -> dict:
    st = os.stat(job.input)
    return {"model": mhash, "input": os.path.abspath(job.input), "input_size": st.st_size,
            "input_mtime_ns": st.st_mtime_ns, "queries": [list(q) for q in job.queries],
            "region": list(job.region), "format": opts.fmt, "settings": asdict(opts.settings())}


def sidecar_path(job: BatchJob, opts: BatchOptions) -> str:
    return os.path.join(opts.out_dir, job.base + SIDECAR_SUFFIX)


def _read_sidecar(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        return d if isinstance(d, dict) and d.get("format") == SIDECAR_FORMAT else None
    except (OSError, ValueError):
        return None


def _outputs_verify(side: dict, paths: list[str]) -> bool:
    rec = side.get("outputs") or {}
    if sorted(rec) != sorted(os.path.basename(p) for p in paths):
        return False
    for p in paths:
        want = rec[os.path.basename(p)]
        try:
            if os.path.getsize(p) != want.get("size") or file_sha256(p) != want.get("sha256"):
                return False
        except OSError:
            return False
    return True


def sweep_partials(job: BatchJob, opts: BatchOptions) -> list[str]:
    """Remove hidden temporaries a killed run of this job left behind."""
    gone = []
    for p in glob.glob(os.path.join(glob.escape(opts.out_dir), f"{PARTIAL_PREFIX}{job_key(job, opts)}-*")):
        try:
            os.unlink(p)
            gone.append(p)
        except OSError:
            pass
    return gone


# -- one job ----------------------------------------------------------------------------------------------

def process_job(separator, job: BatchJob, opts: BatchOptions, progress: Callable | None = None,
                cancel=None, worker: str = "") -> JobResult:
    """Run (or skip) one job on a warm ``separator``; every failure becomes a failed ``JobResult`` with a
    one-line message naming the item (nothing partial is left on disk)."""
    from plugin_bridge.audio_io import probe
    from plugin_bridge.engine.separator import Query
    from plugin_bridge.fileio import atomic_write_text

    t0 = time.monotonic()
    res = JobResult(job.input, job.label, "failed", worker=worker)
    pending = None
    if job.error:
        res.message = f"{job.label}: {job.error}"
        return res
    try:
        info = probe(job.input)
        names, paths, res_name = job_outputs(job, opts)
        side_path = sidecar_path(job, opts)
        recipe = _recipe(job, opts, model_hash(separator.model))
        side = _read_sidecar(side_path)
        same = side is not None and side.get("recipe") == recipe
        existing = [p for p in paths if os.path.lexists(p)]
        if same and side.get("complete") and _outputs_verify(side, paths):
            res.status, res.outputs = "skipped", list(paths)
            res.message = "complete outputs from the same model and settings"
            res.audio_seconds = _region_seconds(job, info)
            return res
        if existing and not same and not opts.overwrite:
            why = "from another model, settings or input" if side is not None else "not made by this batch"
            raise PluginBridgeError(
                f"{os.path.basename(existing[0])} already exists ({why}); use --overwrite to replace it")
        if os.path.abspath(side_path) == os.path.abspath(job.input):
            raise ConfigError("the sidecar would overwrite the source audio")
        sweep_partials(job, opts)
        start = int(round(job.region[0] * info.sample_rate)) if job.region[0] is not None else 0
        stop = int(round(job.region[1] * info.sample_rate)) if job.region[1] is not None else None
        from plugin_bridge.engine.writer import check_output_dir

        check_output_dir(opts.out_dir)
        # written before the stems: a run killed after this point is recognised as ours and redone
        atomic_write_text(side_path, json.dumps({"format": SIDECAR_FORMAT, "recipe": recipe, "complete": False},
                                                indent=1))
        pending = side_path
        queries = [Query(t, n) for t, n in job.queries]
        out = separator.separate_file(job.input, queries, opts.out_dir, fmt=opts.fmt, settings=opts.settings(),
                                      progress=progress, cancel=cancel, region=(start, stop), names=names,
                                      residual_name=res_name, basename=job.base, overwrite=True,
                                      partial_prefix=f"{PARTIAL_PREFIX}{job_key(job, opts)}-")
        outputs = out.stem_paths + ([out.residual_path] if out.residual_path else [])
        atomic_write_text(side_path, json.dumps({
            "format": SIDECAR_FORMAT, "recipe": recipe, "complete": True,
            "outputs": {os.path.basename(p): {"size": os.path.getsize(p), "sha256": file_sha256(p)}
                        for p in outputs}}, indent=1))
        pending = None
        res.status, res.outputs = "done", outputs
        res.audio_seconds = out.frames / out.sample_rate
        res.message = "; ".join(out.warnings)
    except PluginBridgeError as exc:
        res.message = _one_line(exc, job)
    except OSError as exc:
        res.message = f"{job.label}: {exc.strerror or exc}"
    finally:
        if pending:  # failed (or cancelled) after the marker was written: no stem of it is in place
            try:
                os.unlink(pending)
            except OSError:
                pass
        res.seconds = time.monotonic() - t0
    return res


def _region_seconds(job: BatchJob, info) -> float:
    end = info.duration if job.region[1] is None else min(job.region[1], info.duration)
    return max(0.0, end - (job.region[0] or 0.0))


def _one_line(exc: Exception, job: BatchJob) -> str:
    msg = " ".join(str(exc).split())
    # engine messages start with the file's path; name the manifest row too when there is one
    if job.where and job.where != job.input:
        return f"{job.where}: {msg}"
    return msg if job.input in msg else f"{job.label}: {msg}"


# -- many jobs ----------------------------------------------------------------------------------------------

class BatchProgress:
    """One status line: the current file's progress and the whole batch's, with ETAs (stderr)."""

    def __init__(self, total_audio: float, n_jobs: int, stream=None, quiet: bool = False):
        self.total = max(total_audio, 1e-9)
        self.n = n_jobs
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())  # the rewritten line: terminals only
        self.done_audio = 0.0
        self.work_audio = 0.0   # audio actually processed (skips excluded), for the rate
        self.t0 = time.monotonic()
        self.i = 0
        self.name = ""
        self.cur = 0.0

    def start(self, i: int, name: str, audio_seconds: float) -> None:
        self.i, self.name, self.cur = i, name, audio_seconds

    def file_progress(self, p) -> None:
        frac_all = min(1.0, (self.done_audio + p.fraction * self.cur) / self.total)
        elapsed = time.monotonic() - self.t0
        processed = self.work_audio + p.fraction * self.cur
        eta_all = elapsed / processed * (self.total - self.done_audio - p.fraction * self.cur) if processed > 0 else None
        self._line(p.fraction, p.eta_seconds, frac_all, eta_all)

    def finish_file(self, result: JobResult) -> None:
        self.done_audio += self.cur
        if result.status == "done":
            self.work_audio += self.cur
        if not self.quiet:
            if self.live:
                self.stream.write("\r\x1b[K")
            tag = {"done": "ok  ", "skipped": "skip", "failed": "FAIL"}[result.status]
            text = result.message if result.status == "failed" else os.path.basename(result.input)
            self.stream.write(f"[{self.i}/{self.n}] {tag} {text}\n")
            self.stream.flush()

    def _line(self, frac, eta, frac_all, eta_all) -> None:
        if self.quiet or not self.live:
            return
        e1 = f"{eta:4.0f}s" if eta is not None else "   ?"
        e2 = f"{eta_all:5.0f}s" if eta_all is not None else "    ?"
        name = self.name if len(self.name) <= 32 else "..." + self.name[-29:]
        self.stream.write(f"\r\x1b[K[{self.i}/{self.n}] {name}  {frac * 100:5.1f}% ETA {e1}  |  "
                          f"all {frac_all * 100:5.1f}% ETA {e2}")
        self.stream.flush()


def _probe_seconds(job: BatchJob) -> float:
    from plugin_bridge.audio_io import probe

    if job.error:
        return 0.0
    try:
        return _region_seconds(job, probe(job.input))
    except PluginBridgeError:
        return 0.0


def run_batch(separator, jobs: list[BatchJob], opts: BatchOptions, quiet: bool = False, stream=None,
              cancel=None, on_result: Callable[[JobResult], None] | None = None) -> list[JobResult]:
    """Run every job in order on one warm ``separator``; a failed job never stops the others."""
    durations = [_probe_seconds(j) for j in jobs]
    bar = BatchProgress(sum(durations), len(jobs), stream, quiet)
    results = []
    for i, (job, dur) in enumerate(zip(jobs, durations), start=1):
        bar.start(i, os.path.basename(job.input) or job.label, dur)
        r = process_job(separator, job, opts, progress=bar.file_progress, cancel=cancel)
        bar.finish_file(r)
        results.append(r)
        if on_result:
            on_result(r)
    return results


# -- summary ------------------------------------------------------------------------------------------------

SUMMARY_FIELDS = ("input", "where", "status", "message", "outputs", "audio_seconds", "seconds", "worker")


def _summary_rows(results: list[JobResult]) -> list[dict]:
    rows = []
    for r in results:
        d = {k: getattr(r, k) for k in SUMMARY_FIELDS}
        d["audio_seconds"] = round(r.audio_seconds, 3)
        d["seconds"] = round(r.seconds, 3)
        rows.append(d)
    return rows


def format_summary(results: list[JobResult]) -> str:
    rows = [[r.status, os.path.basename(r.input) or r.where, f"{r.audio_seconds:.1f}", f"{r.seconds:.1f}",
             (r.message if r.status == "failed" else str(len(r.outputs)) + " file(s)")[:100]] for r in results]
    n = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    audio = sum(r.audio_seconds for r in results if r.status == "done")
    wall = sum(r.seconds for r in results if r.status == "done")
    speed = f", {audio:.1f} s of audio at {audio / wall:.1f}x real time" if wall > 0 else ""
    return (format_table(["status", "input", "audio s", "wall s", "outputs / error"], rows)
            + f"\n{n['done']} done, {n['skipped']} skipped (already complete), {n['failed']} failed{speed}")


def write_summary(path: str, results: list[JobResult]) -> None:
    """The summary as CSV (``.csv``) or JSON (anything else), written atomically."""
    import io

    from plugin_bridge.fileio import atomic_write_text

    rows = _summary_rows(results)
    if path.lower().endswith(".csv"):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(SUMMARY_FIELDS))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "outputs": ";".join(r["outputs"])})
        atomic_write_text(path, buf.getvalue())
    else:
        atomic_write_text(path, json.dumps(rows, indent=1) + "\n")
