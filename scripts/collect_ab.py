#!/usr/bin/env python3
"""Collect an A/B of training recipes into one JSON for the model card (models/weights/card/ab.json).

    python scripts/collect_ab.py --out models/weights/card/ab.json --steps 200 --start "step-6400 weights" \
        "baseline: level-normalised L1=bench_A.json" "thresholded SNR loss=bench_B.json" ...

Each ARM=FILE pair names a recipe and the ``plugin-bridge benchmark --json`` file of the weights it reached.
Only medians are kept (overall, per family, per mixture kind, paraphrase, best-gain floor share).
"""
from __future__ import annotations

import argparse
import json
import os


def arm_row(name: str, path: str) -> dict:
    s = json.load(open(path))["summary"]
    ov = s["overall"]
    return {"arm": name, "sdri_median": ov["sdri_median"], "sdri_para_median": ov.get("sdri_para_median"),
            "si_sdr_median": ov.get("si_sdr_median"), "below_gain_share": ov.get("below_gain_share"),
            "oracle_ratio": ov.get("oracle_ratio"), "n": ov["n"],
            "families": {k: v["sdri_median"] for k, v in s["families"].items()},
            "source": os.path.basename(path)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, required=True, help="training steps per arm")
    ap.add_argument("--start", required=True, help="what every arm started from")
    ap.add_argument("--note", default="", help="one sentence on how the arms were run")
    ap.add_argument("arms", nargs="+", metavar="NAME=BENCH.json")
    a = ap.parse_args()
    rows = []
    for spec in a.arms:
        name, sep, path = spec.rpartition("=")
        if not sep:
            ap.error(f"{spec!r} is not NAME=BENCH.json")
        rows.append(arm_row(name, path))
    with open(a.out + ".tmp", "w") as f:
        json.dump({"steps": a.steps, "start": a.start, "note": a.note, "rows": rows}, f, indent=1)
    os.replace(a.out + ".tmp", a.out)
    print(f"wrote {a.out} ({len(rows)} arms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
