"""``plugin-bridge batch MANIFEST`` and ``plugin-bridge separate`` with several inputs or glob patterns.

Both load the model once and run every job through :mod:`plugin_bridge.engine.batch`.
"""
from __future__ import annotations

import argparse
import sys

from plugin_bridge.errors import ConfigError

BATCH_ONLY = ("help", "input", "start", "end")


def add_batch_options(p: argparse.ArgumentParser) -> None:
    """Options every batch run has (added only where the parser does not have them yet)."""
    have = p._option_string_actions
    if "--overwrite" not in have:
        p.add_argument("--overwrite", action="store_true",
                       help="replace existing outputs (default: never; complete outputs of the same model and "
                            "settings are skipped, so a rerun resumes)")
    if "--summary" not in have:
        p.add_argument("--summary", default=None, metavar="FILE",
                       help="also write the table of what succeeded and failed to FILE (.csv or .json)")


def register(sub, separate: argparse.ArgumentParser) -> None:
    add_batch_options(separate)
    b = sub.add_parser(
        "batch", help="separate every file a manifest (CSV or JSON Lines) lists, with one loaded model",
        description="Each row: input, queries (';'-separated), negatives, region (START-END seconds), output "
                    "(base name). Rows without queries use -q. A bad row or file is reported and skipped; "
                    "the exit status is 1 if any item failed.")
    b.add_argument("manifest", help="jobs.csv (header: input,queries,negatives,region,output) or jobs.jsonl")
    # the engine options are the same as for `separate` (model, backend, format, chunking, -q ...)
    for action in separate._actions:
        if action.option_strings and action.dest not in BATCH_ONLY and not any(
                s in b._option_string_actions for s in action.option_strings):
            b._add_action(action)
    b.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="distribute the files over a Ray cluster: ADDRESS of its head (e.g. ray://head:10001 "
                        "or auto); without ADDRESS a local Ray instance is started")
    b.add_argument("--workers", type=int, default=None,
                   help="Ray actors, each holding one warm engine (default: one per CPU of the cluster)")
    b.set_defaults(func=cmd_batch)


def _queries(args) -> list[tuple[str, str | None]]:
    negs = args.negative or []
    if len(negs) > len(args.query):
        raise ConfigError("more --negative than --query values")
    negs = negs + [""] * (len(args.query) - len(negs))
    return [(q, n or None) for q, n in zip(args.query, negs)]


def options_from_args(args):
    from plugin_bridge.engine.batch import BatchOptions

    return BatchOptions(out_dir=args.out, fmt=args.format, chunk_seconds=args.chunk, overlap=args.overlap,
                        per_channel=args.per_channel, residual=not args.no_residual,
                        overwrite=bool(getattr(args, "overwrite", False)))


def load_separator(args, texts: list[str]):
    from plugin_bridge.engine.separator import Separator
    from plugin_bridge.models.registry import load_model, query_warnings

    model = load_model(args.model, tokenizer=args.tokenizer, clap_ckpt=args.clap_ckpt)
    if model.is_random:
        print("WARNING: no trained embedded model is installed; using RANDOM weights.", file=sys.stderr)
    sep = Separator(model, backend=args.backend, device=args.device, threads=args.threads)
    if not args.quiet:
        for msg in query_warnings(model, texts):
            print(f"WARNING: {msg}", file=sys.stderr)
        print(f"model: {model.name}  backend: {sep.backend.name} ({getattr(sep.backend, 'device', 'cpu')})",
              file=sys.stderr)
    return sep


def cmd_separate_many(args) -> int:
    """``separate`` with several inputs / patterns (the single-file path stays in engine/cli.py)."""
    from plugin_bridge.engine.batch import expand_inputs

    if not args.query:
        raise ConfigError("give at least one query, e.g. -q speech")
    if args.start is not None or args.end is not None:
        raise ConfigError("--start/--end apply to one input; for several files give each a region in a "
                          "manifest (plugin-bridge batch jobs.csv)")
    return _run(args, expand_inputs(args.input, _queries(args)))


def cmd_batch(args) -> int:
    from plugin_bridge.engine.batch import read_manifest

    return _run(args, read_manifest(args.manifest, _queries(args)))


def _run(args, jobs) -> int:
    from plugin_bridge.engine.batch import format_summary, run_batch, write_summary

    opts = options_from_args(args)
    opts.settings()  # bad settings fail before the model loads
    texts = sorted({t for j in jobs for q in j.queries for t in q if t})
    if getattr(args, "ray", None):
        from plugin_bridge.engine.batch_ray import run_batch_ray

        results = run_batch_ray(jobs, opts, model_spec=args.model, backend=args.backend, threads=args.threads,
                                address=None if args.ray == "local" else args.ray, workers=args.workers,
                                quiet=args.quiet)
    else:
        sep = load_separator(args, texts)
        results = run_batch(sep, jobs, opts, quiet=args.quiet)
    print(format_summary(results))
    if args.summary:
        write_summary(args.summary, results)
    return 0 if all(r.ok for r in results) else 1
