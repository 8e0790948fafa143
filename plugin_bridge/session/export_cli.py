"""``plugin-bridge export SESSION --dawproject OUT.dawproject / --rpp OUT.rpp [--embed]``.

SESSION is anything ``plugin_bridge.session.open.open_session`` opens (a ``*.pbsession.json``, a
``.dawproject``, a ``.rpp``, an audio file or a folder), so the command also converts between
DAWproject and Reaper projects.  Registered by the session CLI module.
"""
from __future__ import annotations

import os
import sys

__all__ = ["register", "cmd_export"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write a session as a DAWproject and/or Reaper project",
        description="Export a session's tracks (sources, stems, residuals) with their audio at their "
                    "sample-exact positions, for Bitwig/Studio One/Cubase (DAWproject) or Reaper (RPP).")
    p.add_argument("session", metavar="SESSION",
                   help="a .pbsession.json session (or a .dawproject/.rpp/audio file/folder to convert)")
    p.add_argument("--dawproject", metavar="OUT.dawproject", help="write a DAWproject file")
    p.add_argument("--rpp", metavar="OUT.rpp", help="write a Reaper project file")
    p.add_argument("--embed", action="store_true",
                   help="DAWproject: copy the audio into the file (portable) instead of referencing it "
                        "relative to the project (small)")
    p.add_argument("--absolute-paths", action="store_true", help="RPP: write absolute audio paths")
    p.add_argument("--force", "--overwrite", dest="force", action="store_true", help="overwrite existing output files")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from plugin_bridge.errors import ConfigError
    from plugin_bridge.fileio import check_writable_output
    from plugin_bridge.session.open import open_session

    if not args.dawproject and not args.rpp:
        raise ConfigError("nothing to export: give --dawproject OUT.dawproject and/or --rpp OUT.rpp")
    outs = [o for o in (args.dawproject, args.rpp) if o]
    if args.dawproject and not args.dawproject.lower().endswith(".dawproject"):
        raise ConfigError(f"--dawproject {args.dawproject}: the file name must end in .dawproject")
    if args.rpp and not args.rpp.lower().endswith(".rpp"):
        raise ConfigError(f"--rpp {args.rpp}: the file name must end in .rpp")
    src = os.path.abspath(args.session)
    for o in outs:
        if os.path.abspath(o) == src:
            raise ConfigError(f"{o}: refusing to overwrite the session being exported")
        check_writable_output(o, args.force, "--force")
    session = open_session(args.session)
    if args.dawproject:
        from plugin_bridge.session import dawproject

        path = dawproject.save(session, args.dawproject, embed=args.embed)
        print(f"wrote {path} ({len(session.tracks)} tracks, audio {'embedded' if args.embed else 'referenced'})")
    if args.rpp:
        from plugin_bridge.session import rpp

        path = rpp.save(session, args.rpp, absolute_paths=args.absolute_paths)
        print(f"wrote {path} ({len(session.tracks)} tracks)")
    sys.stdout.flush()
    return 0
