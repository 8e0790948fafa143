#!/usr/bin/env python3
"""Measure the size/resolution trade-offs behind the embedded model's configuration.

    python scripts/model_tradeoffs.py --set DEV_SET_DIR [--time] [--json out.json]

For each candidate ResUNet + FiLM configuration (all at 16 kHz, the corpus' rate) it prints:

* parameters and GFLOP per second of audio (torch's FlopCounterMode on a 10 s forward pass);
* the oracle ceiling of that STFT grid on the dev set: median SDRi of the ideal ratio mask, which is the
  most any magnitude mask on that grid can reach (a coarser or finer grid moves this ceiling);
* with ``--time``: network-only speed (x real time, 2 threads) and training step time (batch 16 x 3 s,
  forward + backward), measured in this one run so the ratios between rows are comparable.

The quality a configuration reaches after training is not measured here (that needs a training run per
row); the ceiling and the cost are what decide which rows are worth training on a 2-core machine.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

P5 = ((2, 2), (2, 2), (2, 2), (2, 2), (1, 2))


def _cfg(n_fft: int, hop: int, first: int) -> dict:
    """A candidate grid/width: channels double per level from ``first``; the bottleneck matches the last."""
    ch = tuple(first * 2 ** k for k in range(5))
    return dict(n_fft=n_fft, hop=hop, encoder_channels=ch, encoder_pools=P5, bottleneck_channels=ch[-1])


CANDIDATES = {
    "16k 512/256, 12..192 (shipped)": _cfg(512, 256, 12),
    "16k 512/256, 8..128": _cfg(512, 256, 8),
    "16k 512/256, 16..256": _cfg(512, 256, 16),
    "16k 512/160, 12..192": _cfg(512, 160, 12),
    "16k 256/128, 12..192": _cfg(256, 128, 12),
    "16k 1024/256, 12..192": _cfg(1024, 256, 12),
}


def ceiling(set_dir: str, grid_cfg) -> float:
    import numpy as np

    from plugin_bridge.audio_io import read_all
    from plugin_bridge.engine.spectral import Grid
    from plugin_bridge.training.benchmark import oracle_irm
    from plugin_bridge.metrics import sdri

    grid = Grid(grid_cfg.sample_rate, grid_cfg.n_fft, grid_cfg.hop)
    vals = []
    with open(os.path.join(set_dir, "manifest.csv"), newline="") as f:
        for row in csv.DictReader(f):
            mix, sr = read_all(os.path.join(set_dir, row["mixture"]))
            tgt, _ = read_all(os.path.join(set_dir, row["target"]))
            m, t = mix.mean(axis=0), tgt.mean(axis=0)
            vals.append(sdri(t, oracle_irm(m, t, sr, grid), m))
    return float(np.median(vals))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", required=True, dest="set_dir", help="dev set folder (plugin-bridge benchmark --make-dev)")
    ap.add_argument("--time", action="store_true", help="also time inference and a training step (2 threads)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from plugin_bridge.models.registry import DEFAULT_CONFIG
    from plugin_bridge.models.resunet import ResUNet, ResUNetConfig, count_parameters

    torch.set_num_threads(2)
    rows = []
    for name, kw in CANDIDATES.items():
        cfg = ResUNetConfig.from_dict({**DEFAULT_CONFIG.to_dict(), **kw, "name": "tradeoff"})
        net = ResUNet(cfg).eval()
        x, c = torch.randn(1, 1, 16000 * 10), torch.randn(1, cfg.condition_size)
        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            net(x, c)
        row = {"config": name, "params_m": count_parameters(net) / 1e6,
               "gflop_per_audio_s": fc.get_total_flops() / 1e9 / 10, "irm_sdri_median": ceiling(a.set_dir, cfg)}
        if a.time:
            with torch.inference_mode():
                net(x, c)
                t = time.perf_counter()
                for _ in range(3):
                    net(x, c)
                row["net_x_realtime"] = 30 / (time.perf_counter() - t)
            net.train()
            opt = torch.optim.AdamW(net.parameters(), 1e-4)
            xb, cb = torch.randn(16, 1, 48000), torch.randn(16, cfg.condition_size)
            ts = []
            for _ in range(3):
                t = time.perf_counter()
                loss = net(xb, cb).abs().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                ts.append(time.perf_counter() - t)
            row["train_step_s"] = sorted(ts)[1]
            row["steps_per_hour"] = 3600 / row["train_step_s"]
        rows.append(row)
        print("  ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
