#!/usr/bin/env python
"""Make ``tests/fixtures/audiosep_parity.npz``: the output of the *official* AudioSep ``ResUNet30``
for deterministic weights, input and condition, to check our re-implementation against (float32, 1e-4).

Usage (in an environment with torch and torchlibrosa, e.g. a separate venv; this script imports the
upstream code from the checkout you name and contains none of it):

    python scripts/make_audiosep_parity_fixture.py /path/to/AudioSep-checkout [--out tests/fixtures/audiosep_parity.npz]

Every ``state_dict`` tensor of upstream ``ResUNet30(1, 1, 512)`` is filled from its key name and shape
by :func:`det_tensor` (pseudo-random from the raw PCG64 stream seeded by the key name; BN running_var > 0), except the torchlibrosa STFT/ISTFT kernels,
which are already deterministic DFT/window constants and are left as torchlibrosa builds them.  The
input is :func:`det_input` (2.0 s at 32 kHz) and the condition :func:`det_condition` (512-d, unit norm).
The test (``tests/test_audiosep_parity.py``) imports these same functions, so weights and inputs are
rebuilt identically without storing them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import zlib

import numpy as np

RATE = 32000
SECONDS = 2.0
INPUT_SEED = 20240611
COND_SEED = 512
DFT_PREFIXES = ("base.stft.", "base.istft.")


def _seed(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def det_uniform(seed: int, n: int) -> np.ndarray:
    """n values in [-1, 1) from the raw PCG64 stream (bit-stable across numpy versions, unlike
    Generator's distribution methods)."""
    raw = np.random.PCG64(seed).random_raw(n) if n else np.zeros(0, np.uint64)
    return (raw >> np.uint64(11)).astype(np.float64) * (2.0 ** -52) - 1.0


def det_tensor(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Deterministic values for the ``ResUNet30`` state_dict entry ``name`` (without ``ss_model.``).

    Pseudo-random (seeded by the CRC-32 of the key name) rather than a plain sinusoid: a sinusoidal
    kernel sums to ~0, which would hide errors in every bias/FiLM path."""
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape)) if shape else 1
    s = _seed(name)
    wave = det_uniform(s, n)  # in [-1, 1)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return np.array(s % 100000, dtype=np.int64).reshape(shape)
    if leaf == "running_var":
        v = 1.0 + 0.5 * (wave + 1.0)  # in [1, 2]
        if name.startswith("base.bn0."):
            v = v * 4.0
        return v.astype(np.float32).reshape(shape)
    if leaf == "running_mean":
        m = 0.1 * wave
        if name.startswith("base.bn0."):
            m = m + 1.0
        return m.astype(np.float32).reshape(shape)
    if ".bn" in name or name.startswith("base.bn0"):
        if leaf == "weight":
            return (1.0 + 0.2 * wave).astype(np.float32).reshape(shape)
        return (0.1 * wave).astype(np.float32).reshape(shape)
    if leaf == "bias":
        return (0.05 * wave).astype(np.float32).reshape(shape)
    # weights: conv (out, in, kh, kw), conv-transpose (in, out, kh, kw), linear (out, in)
    if name.startswith("film."):
        amp = 0.5
    else:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        amp = float(np.sqrt(3.0 / fan_in))  # uniform: std = 1/sqrt(fan_in)
    return (amp * wave).astype(np.float32).reshape(shape)


def det_input(seconds: float = SECONDS, rate: int = RATE, seed: int = INPUT_SEED) -> np.ndarray:
    """(L,) float32: tones + a chirp + noise bursts, peak about 0.5."""
    L = int(round(seconds * rate))
    t = np.arange(L, dtype=np.float64) / rate
    x = 0.15 * np.sin(2 * np.pi * 220.0 * t) + 0.1 * np.sin(2 * np.pi * 1375.0 * t + 0.3)
    x += 0.08 * np.sin(2 * np.pi * (300.0 * t + 2000.0 * t * t))  # chirp 300 Hz -> ~8.3 kHz
    env = (np.sin(2 * np.pi * 1.5 * t) > 0.3).astype(np.float64)
    x += 0.15 * env * det_uniform(seed, L)
    return x.astype(np.float32)


def det_condition(seed: int = COND_SEED, dim: int = 512) -> np.ndarray:
    c = det_uniform(seed, dim)
    return (c / np.linalg.norm(c)).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("upstream", help="path to an Audio-AGI/AudioSep checkout (models/resunet.py, models/base.py)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures",
                                                  "audiosep_parity.npz"))
    ap.add_argument("--time-chunk-seconds", type=float, default=0.0,
                    help="also time upstream forward and chunk_inference on this many seconds (not saved)")
    args = ap.parse_args(argv)

    import torch

    sys.path.insert(0, os.path.abspath(args.upstream))
    from models.resunet import ResUNet30  # upstream code, imported from the checkout

    torch.set_num_threads(max(1, min(os.cpu_count() or 1, 2)))
    model = ResUNet30(input_channels=1, output_channels=1, condition_size=512)
    sd = model.state_dict()
    filled = {}
    for k, v in sd.items():
        if k.startswith(DFT_PREFIXES):
            filled[k] = v  # torchlibrosa's own deterministic DFT/window constants
        else:
            filled[k] = torch.from_numpy(det_tensor(k, tuple(v.shape))).to(v.dtype)
    model.load_state_dict(filled, strict=True)
    model.eval()
    x = det_input()
    c = det_condition()
    with torch.no_grad():
        out = model({"mixture": torch.from_numpy(x)[None, None], "condition": torch.from_numpy(c)[None]})["waveform"]
    y = out[0, 0].numpy().astype(np.float32)
    keys = np.array(list(sd.keys()))
    shapes = np.array([",".join(str(int(d)) for d in v.shape) for v in sd.values()])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp.npz"
    np.savez_compressed(tmp, output=y, rate=np.int64(RATE), seconds=np.float64(SECONDS),
                        input_seed=np.int64(INPUT_SEED), cond_seed=np.int64(COND_SEED),
                        input_sum=np.float64(x.astype(np.float64).sum()), input_head=x[:16],
                        keys=keys, shapes=shapes, torch_version=np.array(torch.__version__))
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes); output rms {float(np.sqrt(np.mean(y ** 2))):.5f}, "
          f"input rms {float(np.sqrt(np.mean(x ** 2))):.5f}, {len(keys)} state_dict entries")

    if args.time_chunk_seconds > 0:
        xl = det_input(seconds=args.time_chunk_seconds)
        d = {"mixture": torch.from_numpy(xl)[None, None], "condition": torch.from_numpy(c)[None]}
        with torch.no_grad():
            t0 = time.perf_counter()
            model(d)
            t1 = time.perf_counter()
            model.chunk_inference(d)
            t2 = time.perf_counter()
        print(f"upstream on {args.time_chunk_seconds:.1f} s: forward (whole file) {t1 - t0:.2f} s, "
              f"chunk_inference {t2 - t1:.2f} s, threads {torch.get_num_threads()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
