#!/usr/bin/env python3
"""Render time and disk use of one session render job (``run_job``) with the shipped default model.

A synthetic stereo source (``--minutes`` of audio plus 2 s, at ``--rate``) is rendered as one region of
``--minutes`` that starts 1 s into the file, so the job reads context on both sides.  Two queries plus
the residual are written in ``--format``; ``--chain`` gives the first query a gain chain.

Printed figures:
* render seconds: wall time of ``run_job`` (model loading and source synthesis excluded);
* peak disk bytes: the largest total size of every file under the stems folder, polled every ``--poll``
  seconds while the job runs (a job writes all its scratch and temporary files there: hidden work
  folders and partial files included);
* bytes written: ``wchar`` of this process during the job (``/proc/self/io``: every byte passed to
  ``write``), i.e. everything the job wrote, scratch included;
* final bytes: the size of the stems the job left.

Usage:  .venv/bin/python scripts/bench_job_render.py [--minutes 10] [--rate 44100] [--format wav24]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np
from pedalboard.io import AudioFile

from plugin_bridge.engine.separator import Separator
from plugin_bridge.models.registry import load_model
from plugin_bridge.session.jobs import make_job, run_job
from plugin_bridge.session.model import QuerySpec, Region
from plugin_bridge.session.open import open_session


def write_source(path: str, seconds: float, rate: int) -> None:
    """A deterministic stereo mix (two tones with vibrato + noise bursts), written in blocks."""
    rng = np.random.RandomState(0)
    n, block = int(seconds * rate), 1 << 18
    with AudioFile(path, "w", rate, 2, bit_depth=24) as f:
        for a in range(0, n, block):
            t = np.arange(a, min(n, a + block)) / rate
            tone = 0.2 * np.sin(2 * np.pi * (220 + 5 * np.sin(2 * np.pi * 0.3 * t)) * t)
            tone2 = 0.1 * np.sin(2 * np.pi * 1760 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
            noise = 0.05 * rng.randn(2, t.size) * (np.sin(2 * np.pi * 0.2 * t) > 0.5)
            f.write(np.stack([tone + tone2, tone - tone2]).astype(np.float32) + noise.astype(np.float32))


def tree_bytes(folder: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass  # renamed or removed between listing and stat
    return total


def wchar() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("wchar:")).split()[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=44100)
    ap.add_argument("--format", default="wav24")
    ap.add_argument("--chain", action="store_true", help="give the first query a gain chain")
    ap.add_argument("--poll", type=float, default=0.02)
    ap.add_argument("--keep", help="work in this folder (kept) instead of a temporary one")
    args = ap.parse_args(argv)

    root = args.keep or tempfile.mkdtemp(prefix="pb-bench-job-")
    audio_dir = os.path.join(root, "audio")
    os.makedirs(audio_dir, exist_ok=True)
    src = os.path.join(audio_dir, "mix.wav")
    seconds = args.minutes * 60
    if not os.path.exists(src):
        write_source(src, seconds + 2, args.rate)
    s = open_session(audio_dir)
    s.settings["format"] = args.format
    s.save(os.path.join(root, "bench.pbsession.json"))
    chain = [{"type": "gain", "params": {"gain_db": -3.0}}] if args.chain else []
    sr = s.sample_rate
    region = Region(track_id=s.tracks[0].id, start=sr, end=sr + int(round(seconds * sr)),
                    queries=[QuerySpec("speech", chain=chain), QuerySpec("piano")])
    s.regions.append(region)
    sep = Separator(load_model(None))
    out_dir = s.stems_dir
    os.makedirs(out_dir, exist_ok=True)

    peak = 0
    stop = threading.Event()

    def poll():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_bytes(out_dir))
            stop.wait(args.poll)

    poller = threading.Thread(target=poll, daemon=True)
    w0, t0 = wchar(), time.monotonic()
    poller.start()
    res = run_job(s, make_job(s, region.id), sep)
    elapsed = time.monotonic() - t0
    written = wchar() - w0
    stop.set()
    poller.join()
    final = sum(os.path.getsize(st.path) for st in res.stems)
    print(f"region: {args.minutes:g} min at {args.rate} Hz stereo, 2 queries + residual, {args.format}"
          f"{', gain chain on query 1' if args.chain else ''}")
    print(f"render seconds: {elapsed:.1f}  ({seconds / elapsed:.1f}x real time)")
    print(f"peak disk bytes: {peak:,}  ({peak / final:.2f}x the final stems)")
    print(f"bytes written: {written:,}  ({written / final:.2f}x the final stems)")
    print(f"final bytes: {final:,}  ({len(res.stems)} files)")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
