"""Dialogue / music / effects split of the bundled demo session, scored against its source tracks.

The demo (``plugin_bridge/data/demo``) is a post-production style mix whose three source tracks ship beside it,
so the split the product promises first ("dialogue", "music", "effects") can be measured on every model:
for each query the stem's SDRi against its track, next to the best-constant-gain floor (the mixture simply
turned down: a stem must beat that to be of any use).  Each query is run on its own (one separation per query,
as an editor asks for one stem), and once with the three queries together (masks shared, as ``make demo``
runs them).

    python -m plugin_bridge.training.dme [--model PATH] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from plugin_bridge.audio_io import read_all
from plugin_bridge.engine.separator import Query, Separator
from plugin_bridge.metrics import sdr
from plugin_bridge.models.registry import load_model
from plugin_bridge.training.benchmark import best_gain

DEMO = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "demo")
#: query -> the demo track it should return
SPLIT = (("dialogue", "dialogue"), ("music", "music"), ("effects", "fx"))


def load_demo(demo_dir: str = DEMO) -> tuple[np.ndarray, int, dict[str, np.ndarray]]:
    """The mix (C, L) with its rate, and each source track (C, L) by name."""
    mix, rate = read_all(os.path.join(demo_dir, "mix.flac"))
    tracks = {}
    for _, name in SPLIT:
        x, r = read_all(os.path.join(demo_dir, f"{name}.flac"))
        if r != rate or x.shape != mix.shape:
            raise ValueError(f"{name}.flac does not match mix.flac ({x.shape} at {r} Hz vs {mix.shape} at {rate} Hz)")
        tracks[name] = x
    return mix, rate, tracks


def _score(target: np.ndarray, est: np.ndarray, mix: np.ndarray) -> dict:
    t, e, m = (np.asarray(a, np.float64).mean(axis=0) for a in (target, est, mix))
    base = sdr(t, m)
    return {"sdr": sdr(t, e), "sdri": sdr(t, e) - base, "gain_floor": sdr(t, best_gain(m, t)) - base}


def evaluate_dme(separator: Separator, demo_dir: str = DEMO) -> dict:
    """{"single": {query: {"sdr", "sdri", "gain_floor", "margin"}}, "joint": {...}} (dB, on the channel mean;
    margin = SDRi - gain floor: above 0 the stem is better than the mixture turned down)."""
    mix, rate, tracks = load_demo(demo_dir)
    out: dict = {"single": {}, "joint": {}}
    for query, name in SPLIT:
        stems, _ = separator.separate_array(mix, rate, [Query(query)])
        out["single"][query] = _score(tracks[name], stems[0], mix)
    stems, _ = separator.separate_array(mix, rate, [Query(q) for q, _ in SPLIT])
    for k, (query, name) in enumerate(SPLIT):
        out["joint"][query] = _score(tracks[name], stems[k], mix)
    for part in out.values():
        for rec in part.values():
            rec["margin"] = rec["sdri"] - rec["gain_floor"]
    return out


def format_dme(res: dict) -> str:
    lines = [f"{'query':<10}{'SDR':>7}{'SDRi alone':>11}{'SDRi joint':>11}{'gain floor':>11}{'margin':>8}"]
    for q, rec in res["single"].items():
        lines.append(f"{q:<10}{rec['sdr']:>7.2f}{rec['sdri']:>11.2f}{res['joint'][q]['sdri']:>11.2f}"
                     f"{rec['gain_floor']:>11.2f}{rec['margin']:>8.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plugin_bridge.training.dme", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="a .safetensors model (default: the embedded one)")
    ap.add_argument("--demo", default=DEMO, help="a folder with mix.flac, dialogue.flac, music.flac, fx.flac")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    model = load_model(args.model)
    res = evaluate_dme(Separator(model, backend="torch", device="cpu"), args.demo)
    res["model"] = args.model or "embedded default"
    print(format_dme(res))
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(res, f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
