"""``plugin-bridge separate`` (and ``batch``, registered by ``batch_cli``)."""
from __future__ import annotations

import math
import sys

from plugin_bridge.engine.chunker import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP
from plugin_bridge.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("separate", help="separate stems from an audio file with text queries",
                       description="Write one stem per query plus a residual (everything else). Stems keep the "
                                   "input's sample rate, channel count and length exactly.")
    p.add_argument("input", nargs="+",
                   help="audio file(s) (wav, flac, aiff, mp3, ogg) or quoted patterns such as 'takes/*.wav'; "
                        "several go through one loaded model (see also: plugin-bridge batch)")
    p.add_argument("-q", "--query", action="append", default=[], metavar="TEXT",
                   help="what to extract, e.g. -q birds -q 'a man speaking'; repeat for several stems")
    p.add_argument("-n", "--negative", action="append", default=None, metavar="TEXT",
                   help="negative query for the query at the same position ('' for none), e.g. -q speech -n music")
    p.add_argument("-e", "--example", action="append", default=[], metavar="REF[@START:END]",
                   help="query by example: extract what sounds like this reference (seconds range optional), "
                        "e.g. -e hum.wav@2:3.5; repeat to give several takes of the same sound; with -q, "
                        "each text query is blended with it (see --example-weight)")
    p.add_argument("--example-weight", type=float, default=None, metavar="W",
                   help="share of the example in a blended query, 0..1 (default 0.5 when -q is given)")
    p.add_argument("--negative-example", action="append", default=[], metavar="REF[@START:END]",
                   help="remove what sounds like this reference from every stem")
    p.add_argument("-o", "--out", default="stems", help="output folder (default: ./stems)")
    p.add_argument("--format", default="wav24", choices=["wav16", "wav24", "wav32f", "flac16", "flac24"],
                   help="output format (default 24-bit WAV; wav32f keeps stems+residual == mix exactly)")
    p.add_argument("--model", default=None,
                   help="model: default (embedded), a .safetensors model, or an AudioSep .ckpt")
    p.add_argument("--tokenizer", default=None,
                   help="folder with roberta-base vocab.json + merges.txt (for AudioSep/CLAP models)")
    p.add_argument("--clap-ckpt", default=None,
                   help="LAION CLAP .pt for the text tower, when the AudioSep file holds only the separator")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"],
                   help="auto: ONNX Runtime on CPU (faster), PyTorch on CUDA (default)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--chunk", type=float, default=DEFAULT_CHUNK_SECONDS,
                   help=f"chunk length in seconds (default {DEFAULT_CHUNK_SECONDS:g}; large models cap it to bound "
                        "memory, e.g. AudioSep's ResUNet30 at about 3.8 s)")
    p.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP,
                   help=f"chunk overlap as a fraction (default {DEFAULT_OVERLAP:g})")
    p.add_argument("--per-channel", action="store_true", help="one mask per channel (default: from the downmix)")
    p.add_argument("--no-residual", action="store_true", help="do not write the residual")
    p.add_argument("--start", type=float, default=None, help="region start in seconds")
    p.add_argument("--end", type=float, default=None, help="region end in seconds")
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_separate)
    from plugin_bridge.engine import batch_cli

    batch_cli.register(sub, p)


def _progress_printer(quiet: bool):
    if quiet:
        return None

    def cb(p):
        eta = f"{p.eta_seconds:5.0f}s" if p.eta_seconds is not None else "   ?"
        sys.stderr.write(f"\r  {p.fraction * 100:5.1f}%  chunk {p.segment}/{p.n_segments}  ETA {eta}")
        if p.fraction >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return cb


MAX_THREADS = 256


def check_region_seconds(start: float | None, end: float | None, duration: float) -> None:
    """--start/--end: finite seconds within the file, end after start (one line naming the option)."""
    for name, v in (("--start", start), ("--end", end)):
        if v is not None and not (math.isfinite(v) and 0 <= v <= duration):
            raise ConfigError(f"{name} {v:g}: must be a number of seconds from 0 to the file's length "
                              f"({duration:.3f} s)")
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"--end {end:g} must be after --start {start:g}")


def cmd_separate(args) -> int:
    from plugin_bridge.engine import batch_cli
    from plugin_bridge.engine.batch import is_pattern

    if len(args.input) > 1 or is_pattern(args.input[0]):
        return batch_cli.cmd_separate_many(args)
    args.input = args.input[0]
    from plugin_bridge.audio_io import probe
    from plugin_bridge.engine.separator import SeparationSettings, Separator
    from plugin_bridge.models.registry import load_model, query_warnings

    from plugin_bridge.engine.examples import build_queries

    if not args.query and not args.example:
        raise ConfigError("give at least one query, e.g. -q speech, or an example, e.g. -e ref.wav")
    if len(args.negative or []) > max(len(args.query), 1 if args.example else 0):
        raise ConfigError("more --negative than --query values")
    info = probe(args.input)
    check_region_seconds(args.start, args.end, info.duration)
    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        raise ConfigError(f"--threads {args.threads}: must be a whole number from 1 to {MAX_THREADS}")
    region = (0, None)
    if args.start is not None or args.end is not None:
        s = int(round((args.start or 0) * info.sample_rate))
        e = int(round(args.end * info.sample_rate)) if args.end is not None else None
        region = (s, e)
    model = load_model(args.model, tokenizer=args.tokenizer, clap_ckpt=args.clap_ckpt)
    if model.is_random:
        print("WARNING: no trained embedded model is installed; using RANDOM weights. "
              "The output shows the plumbing, not a separation.", file=sys.stderr)
    sep = Separator(model, backend=args.backend, device=args.device, threads=args.threads)
    queries = build_queries(args.query, args.negative, args.example, args.example_weight, args.negative_example, sep)
    if not args.quiet:
        for msg in query_warnings(model, [q.text for q in queries if q.vector is None]):
            print(f"WARNING: {msg}", file=sys.stderr)
        print(f"model: {model.name}  backend: {sep.backend.name} ({getattr(sep.backend, 'device', 'cpu')})",
              file=sys.stderr)
        print(f"input: {args.input}  {info.sample_rate} Hz, {info.channels} ch, {info.duration:.2f} s", file=sys.stderr)
    from plugin_bridge.fileio import remove_stale_partials

    for p in remove_stale_partials(args.out):
        print(f"removed {p}: a partial file left by an interrupted run", file=sys.stderr)
    settings = SeparationSettings(chunk_seconds=args.chunk, overlap=args.overlap, per_channel=args.per_channel,
                                  residual=not args.no_residual)
    res = sep.separate_file(args.input, queries, args.out, fmt=args.format, settings=settings,
                            progress=_progress_printer(args.quiet), region=region, overwrite=args.overwrite,
                            cancel=getattr(args, "cancel", None))
    for q, p in zip(queries, res.stem_paths):
        print(f"{q.text!r}: {p}")
    if res.residual_path:
        print(f"residual: {res.residual_path}")
    for w in res.warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    if not args.quiet:
        dur = res.frames / res.sample_rate
        print(f"done: {dur:.1f} s of audio in {res.seconds:.1f} s ({dur / max(res.seconds, 1e-9):.1f}x real time)",
              file=sys.stderr)
    return 0
