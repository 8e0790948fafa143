"""``plugin-bridge session ...`` and ``plugin-bridge presets ...`` (and ``export`` via export_cli)."""
from __future__ import annotations

import os
import re
import sys

from plugin_bridge.errors import ConfigError
from plugin_bridge.fileio import check_writable_output
from plugin_bridge.session import export_cli


def register(sub) -> None:
    s = sub.add_parser("session", help="create, edit and render sessions (tracks, regions, queries)",
                       description="Work with plugin-bridge sessions (*.pbsession.json) without the GUI.")
    ss = s.add_subparsers(dest="session_command", metavar="ACTION")
    s.set_defaults(func=lambda a: (s.print_help(), 2)[1])

    n = ss.add_parser("new", help="make a session from a folder of audio files or one audio file")
    n.add_argument("source", help="folder of audio files (one track each), an audio file, .dawproject or .rpp")
    n.add_argument("-o", "--output", required=True, help="session file to write (X.pbsession.json)")
    n.add_argument("--force", "--overwrite", dest="force", action="store_true",
                   help="overwrite an existing session file")
    n.set_defaults(func=cmd_new)

    a = ss.add_parser("add-region", help="add a region with queries to a track (queued for `session run`)")
    a.add_argument("session")
    a.add_argument("--track", required=True, help="track name")
    a.add_argument("--start", required=True, help="start in samples at the session rate, or seconds with 's' (1.5s)")
    a.add_argument("--end", required=True, help="end (exclusive) in samples, or seconds with 's'")
    a.add_argument("-q", "--query", action="append", default=[], metavar="TEXT", help="query text; repeat")
    a.add_argument("-n", "--negative", action="append", default=None, metavar="TEXT",
                   help="negative query for the query at the same position ('' for none)")
    a.add_argument("-l", "--label", action="append", default=None, metavar="LABEL",
                   help="label (used in stem names) for the query at the same position")
    a.add_argument("--preset", default=None, help="take the queries (if no -q) and settings from this preset")
    a.add_argument("--name", default="", help="region name")
    a.add_argument("--no-queue", action="store_true", help="only add the region, do not queue a render job")
    a.set_defaults(func=cmd_add_region)

    r = ss.add_parser("run", help="render all pending jobs of a session (progress; prints stem paths)")
    r.add_argument("session")
    r.add_argument("--preset", default=None,
                   help="preset for regions without queries, and settings for jobs queued now")
    r.add_argument("--backend", default=None, choices=["auto", "torch", "onnx"])
    r.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    r.add_argument("--format", default=None, choices=["wav16", "wav24", "wav32f", "flac16", "flac24"])
    r.add_argument("--retry-failed", action="store_true", help="also re-run failed and cancelled jobs")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_run)

    sh = ss.add_parser("show", help="list a session's tracks, regions and jobs")
    sh.add_argument("session")
    sh.set_defaults(func=cmd_show)

    p = sub.add_parser("presets", help="list, show, import and export query presets")
    ps = p.add_subparsers(dest="presets_command", metavar="ACTION")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    pl = ps.add_parser("list", help="list factory and user presets")
    pl.set_defaults(func=cmd_presets_list)
    pw = ps.add_parser("show", help="print a preset as JSON")
    pw.add_argument("name")
    pw.set_defaults(func=cmd_presets_show)
    pi = ps.add_parser("import", help="validate a preset file and add it to your presets")
    pi.add_argument("file")
    pi.add_argument("--overwrite", action="store_true", help="replace your preset of the same name")
    pi.set_defaults(func=cmd_presets_import)
    pe = ps.add_parser("export", help="write a preset to a file")
    pe.add_argument("name")
    pe.add_argument("file")
    pe.add_argument("--overwrite", action="store_true", help="replace the file if it exists")
    pe.set_defaults(func=cmd_presets_export)

    export_cli.register(sub)


# --------------------------------------------------------------------------------------------------
#: the largest timeline position a session holds (its schema's limit)
MAX_FRAME = 2 ** 53


def _frames(text: str, rate: int, what: str) -> int:
    t = str(text).strip().lower()
    allowed = (f"--{what} must be a whole number of samples from 0 to {MAX_FRAME} (e.g. 48000) "
               f"or seconds like 1.5s")
    m = re.fullmatch(r"(\d{1,20}(?:\.\d*)?|\.\d+)\s*s", t)
    if m:
        n = int(round(float(m.group(1)) * rate))
    elif re.fullmatch(r"\d{1,20}", t):
        n = int(t)
    else:
        raise ConfigError(f"{allowed}, not {str(text)[:40]!r}")
    if n > MAX_FRAME:
        raise ConfigError(f"{allowed}; {str(text)[:40]!r} is beyond that")
    return n


def cmd_new(args) -> int:
    from plugin_bridge.session.open import open_session

    out = args.output
    if not out.endswith(".json"):
        out += ".pbsession.json"
    check_writable_output(out, args.force, "--force")
    warnings: list[str] = []
    s = open_session(args.source, warnings)
    base = os.path.basename(out)
    s.name = base[: -len(".pbsession.json")] if base.endswith(".pbsession.json") else os.path.splitext(base)[0]
    path = s.save(out)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{path}: {len(s.tracks)} track(s) at {s.sample_rate} Hz")
    for t in s.tracks:
        flag = f"  [{t.sample_rate} Hz, mapped by time]" if t.rate_mismatch(s.sample_rate) else ""
        print(f"  {t.name}: {t.frames} frames, {t.channels} ch{flag}")
    return 0


def cmd_add_region(args) -> int:
    from plugin_bridge.session.history import History
    from plugin_bridge.session.jobs import make_job
    from plugin_bridge.session.model import QuerySpec, Region, Session
    from plugin_bridge.session.presets import PresetStore

    s = Session.load(args.session)
    track = s.track_by_name(args.track)
    start, end = _frames(args.start, s.sample_rate, "start"), _frames(args.end, s.sample_rate, "end")
    if end <= start:
        raise ConfigError(f"--end ({end}) must be after --start ({start})")
    track_end = s.track_end(track)
    if track_end is not None and (start >= track_end or end <= track.offset):
        raise ConfigError(f"the region {start}-{end} lies outside the audio of track {track.name!r} "
                          f"(frames {track.offset}-{track_end} at {s.sample_rate} Hz)")
    negs = args.negative or []
    labels = args.label or []
    if len(negs) > len(args.query) or len(labels) > len(args.query):
        raise ConfigError("give at most one --negative and one --label per --query")
    queries = [QuerySpec(text=q, negative=(negs[i] or None) if i < len(negs) else None,
                         label=labels[i] if i < len(labels) else "") for i, q in enumerate(args.query)]
    preset = PresetStore().get(args.preset) if args.preset else None
    if not queries and preset is None:
        raise ConfigError("give at least one -q/--query or a --preset")
    h = History(s)
    with h.transaction("Add region"):
        r = h.add_region(Region(track_id=track.id, start=start, end=end, name=args.name, queries=queries))
        if preset is not None and not queries:
            h.set_preset(r.id, preset)
    if not args.no_queue:
        h.add_job(make_job(s, r.id, preset=preset))
    h.save()
    print(f"region {r.id} on {track.name!r}: {start}-{end} ({(end - start) / s.sample_rate:.3f} s), "
          f"{len(s.region(r.id).queries)} queries" + ("" if args.no_queue else ", queued"))
    return 0


def cmd_run(args) -> int:
    from plugin_bridge.session.history import History
    from plugin_bridge.session.jobs import JobQueue, make_job
    from plugin_bridge.session.model import Session
    from plugin_bridge.session.presets import PresetStore

    s = Session.load(args.session)
    h = History(s)
    preset = PresetStore().get(args.preset) if args.preset else None
    overrides = {"backend": args.backend, "device": args.device, "format": args.format}
    if args.retry_failed:
        for j in list(s.jobs):
            h.retry_job(j.id)
    have_job = {j.region_id for j in s.jobs}
    for r in s.regions:
        if r.id not in have_job and (r.queries or preset is not None):
            h.add_job(make_job(s, r.id, preset=preset))
        elif preset is not None:
            for j in list(s.jobs):
                if j.region_id == r.id and j.status == "pending" and not j.queries:
                    h.set_job(j.id, queries=preset.to_queries(), preset=preset.name)
    todo = [j for j in s.jobs if j.status == "pending" and j.kind == "separate"]  # the window runs the others
    if not todo:
        print("nothing to render: no pending jobs (add one with `session add-region`)")
        return 0
    h.save()

    def prog(p):
        if args.quiet:
            return
        eta = f"{p.eta_seconds:5.0f}s" if p.eta_seconds is not None else "    ?"
        sys.stderr.write(f"\r  {p.fraction * 100:5.1f}%  {p.stage:<10}  ETA {eta}")
        if p.stage == "done":
            sys.stderr.write("\n")

    from plugin_bridge.fileio import remove_stale_partials

    for p in remove_stale_partials(s.stems_dir):
        print(f"removed {p}: a partial file left by an interrupted run", file=sys.stderr)
    q = JobQueue(s, history=h, on_progress=prog, overrides=overrides)
    sig = getattr(args, "cancel", None)
    if sig is not None:  # SIGINT/SIGTERM/SIGHUP: the running job stops at its next chunk
        sig.deferring = True
        sig.on_signal(q.interrupt)
    failed = 0
    for k, job in enumerate(todo, 1):
        if sig is not None and sig.signum is not None:
            break
        if job.status != "pending":
            continue
        r = s.region(job.region_id)
        t = s.track(r.track_id)
        if not args.quiet:
            print(f"[{k}/{len(todo)}] {t.name}: {r.name or 'region'} {r.start}-{r.end} "
                  f"({', '.join(qq.display for qq in job.queries)})", file=sys.stderr)
        res = q.run_one(job)
        if res is None and job.status == "cancelled" and sig is not None and sig.signum is not None:
            left = sum(1 for j in s.jobs if j.status == "pending")
            print(f"\ncancelled ({sig.name}): job {job.id[:8]} recorded as cancelled, no stems written; "
                  f"{left} job(s) still pending", file=sys.stderr)
            return sig.exit_code
        if res is None:
            failed += 1
            print(f"  {job.status}: {job.error}", file=sys.stderr)
            continue
        for st in res.stems:
            print(st.path)
        for w in res.warnings:
            print(f"  warning: {w}", file=sys.stderr)
    return 1 if failed else 0


def cmd_show(args) -> int:
    from plugin_bridge.session.model import Session

    s = Session.load(args.session)
    print(f"{s.name}: {s.sample_rate} Hz, {len(s.tracks)} tracks, {len(s.regions)} regions, {len(s.jobs)} jobs")
    for t in s.tracks:
        indent = "    " if t.parent_id else "  "
        print(f"{indent}[{t.kind}] {t.name}  offset {t.offset}  gain {t.gain_db:+.1f} dB"
              f"{'  M' if t.mute else ''}{'  S' if t.solo else ''}  {t.path}")
        for r in s.regions_on(t.id):
            print(f"{indent}  region {r.name or r.id[:8]} {r.start}-{r.end}: "
                  + "; ".join(q.display for q in r.queries))
    for j in s.jobs:
        print(f"  job {j.id[:8]} {j.status}" + (f": {j.error}" if j.error else ""))
    return 0


def cmd_presets_list(args) -> int:
    from plugin_bridge.session.presets import PresetStore

    for e in PresetStore().list():
        if e.ok:
            labels = ", ".join(q.label for q in e.preset.queries)
            print(f"{e.name:<24} {e.source:<8} {labels}")
        else:
            print(f"{e.name:<24} {e.source:<8} INVALID: {e.error}")
    return 0


def cmd_presets_show(args) -> int:
    from plugin_bridge.session.presets import PresetStore

    p = PresetStore().get(args.name)
    sys.stdout.write(p.to_json())
    return 0


def cmd_presets_import(args) -> int:
    from plugin_bridge.session.presets import PresetStore

    p = PresetStore().import_file(args.file, overwrite=args.overwrite)
    print(f"imported {p.name!r} -> {p.path}")
    return 0


def cmd_presets_export(args) -> int:
    from plugin_bridge.session.presets import PresetStore

    path = PresetStore().export(args.name, args.file, overwrite=args.overwrite)
    print(path)
    return 0
