"""``plugin-bridge bench``: speed and memory per backend (``speed``), cold start and batch throughput
(``startup``), and the desktop app's start-up (``gui``), each measured in fresh child processes.  (Training
step time is the training room's: ``plugin-bridge train --time-steps N``.)

The measuring modules import the engine, the models and torch; they are imported when the command runs,
not when ``plugin-bridge`` builds its parser (``python -X importtime``: torch alone is ~2 s).
"""
from __future__ import annotations


def register(sub) -> None:
    b = sub.add_parser("bench", help="measure speed (real-time factor) and memory per backend")
    b.add_argument("--minutes", type=float, default=2.0, help="length of the generated stereo file")
    b.add_argument("--rate", type=int, default=48000,
                   help="its sample rate (48000: the network input is read off the native spectrum; 44100: "
                        "it is resampled)")
    b.add_argument("--model", default=None)
    b.add_argument("--backends", default="torch,onnx")
    b.add_argument("--audiosep", action="store_true",
                   help="also time the AudioSep ResUNet30 configuration (random weights) against the "
                        "upstream-style chunked pipeline")
    b.add_argument("--rss-lengths", default="",
                   help="comma-separated minutes for the flat-memory check, e.g. 10,120")
    b.add_argument("--gui", action="store_true", help="also time the desktop app's cold start")
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--repeat", type=int, default=1,
                   help="fresh processes per backend (taking turns); >1 also times a second pass per process "
                        "and prints medians")
    b.add_argument("--json", default=None, help="also write the speed figures as JSON here")
    b.add_argument("--startup", action="store_true",
                   help="cold start instead: time to the stems of a 10 s file from a fresh process, by phase")
    b.add_argument("--batch", action="store_true",
                   help="throughput instead: N short files and one long file, in-process vs local Ray workers")
    b.add_argument("--files", type=int, default=20, help="--batch: number of short files (default 20)")
    b.add_argument("--seconds", type=float, default=5.0, help="--batch: length of each short file (default 5)")
    b.add_argument("--long-minutes", type=float, default=2.0, help="--batch: length of the long file (default 2)")
    b.add_argument("--ray-workers", type=int, default=2, help="--batch: Ray actors (0: skip Ray; default 2)")
    b.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from plugin_bridge.bench import gui, speed, startup

    if args.startup:
        return startup.run_startup(args)
    if args.batch:
        return startup.run_batch_bench(args)
    rc = speed.run_bench(args)
    if args.gui:
        gui.print_gui_startup()
    return rc
