"""``plugin-bridge`` command line.  Each sub-command lives in its own module and registers itself."""
from __future__ import annotations

import argparse
import sys

from plugin_bridge import gui_cli
from plugin_bridge.bench import cli as bench_cli
from plugin_bridge.corpus import cli as corpus_cli
from plugin_bridge.engine import cli as engine_cli
from plugin_bridge.engine import learn_cli
from plugin_bridge.errors import JobCancelled, PluginBridgeError
from plugin_bridge.interrupts import SignalCancel
from plugin_bridge.session import cli as session_cli
from plugin_bridge.training import cli as training_cli

# Each command module defines ``register(subparsers)``, which adds its parser(s) and sets ``func`` (a
# callable taking the parsed args, returning an exit code); this order is the order of ``--help``.
COMMAND_MODULES = [
    engine_cli,      # separate, batch
    bench_cli,       # bench
    learn_cli,       # learn, learned
    corpus_cli,      # corpus build
    training_cli,    # train, benchmark
    session_cli,     # session run, presets, export
    gui_cli,         # gui
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plugin-bridge",
        description="Language-queried source separation for audio post-production: type what you want "
                    "('dialogue', 'birds', 'piano') and get it as its own stem.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    sig = SignalCancel()
    args.cancel = sig  # commands that stop cleanly poll it between chunks
    try:
        with sig:
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"\ncancelled ({sig.name}): stopped; no partial output was left", file=sys.stderr)
        return sig.exit_code
    except JobCancelled as exc:
        if sig.signum is None:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"\ncancelled ({sig.name}): {exc}", file=sys.stderr)
        return sig.exit_code
    except PluginBridgeError as exc:  # every known failure is a subclass of it
        print(f"error: {exc}", file=sys.stderr)
        return 2
