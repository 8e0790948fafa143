"""``plugin-bridge`` command line.  Each sub-command lives in its own module and registers itself."""
from __future__ import annotations

import argparse
import importlib
import sys

# (sub-command module, attribute): each module defines ``register(subparsers)`` which adds its
# parser(s) and sets ``func`` (callable taking the parsed args, returning an exit code).
COMMAND_MODULES = [
    "plugin_bridge.engine.cli",          # separate, bench
    "plugin_bridge.engine.learn_cli",    # learn, learned
    "plugin_bridge.corpus.cli",          # corpus build
    "plugin_bridge.training.cli",  # train, benchmark
    "plugin_bridge.session.cli",         # session run, presets, export
    "plugin_bridge.gui_cli",             # gui
]


class UserError(Exception):
    """An error with a message meant for the user (no traceback)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plugin-bridge",
        description="Language-queried source separation for audio post-production: type what you want "
                    "('dialogue', 'birds', 'piano') and get it as its own stem.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for modname in COMMAND_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name and modname.startswith(exc.name):
                continue  # that part of the product is not built yet
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from plugin_bridge.errors import JobCancelled
    from plugin_bridge.interrupts import SignalCancel

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
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # every known failure is a subclass of PluginBridgeError
        from plugin_bridge.errors import PluginBridgeError
        if isinstance(exc, PluginBridgeError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
