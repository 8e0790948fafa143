"""``plugin-bridge bench``: speed (real-time factor) and peak memory per backend, measured cleanly.

Every measurement runs ``Separator.separate_file`` in its own child process (``python -m
plugin_bridge.bench.speed child ...``), so the peak resident set size (``getrusage`` max RSS of that
child, or psutil's peak working set on Windows) belongs to that run alone.  The input is a generated
48 kHz stereo file (tones + noise), streamed to a temp folder in 10 s blocks, so even a 2 h file never
sits in memory.

Sections:
1. one row per backend on an N-minute file: audio seconds, wall seconds, RTF (wall/audio), x real time
   (audio/wall), peak RSS; and speed relative to the first backend;
2. ``--rss-lengths A,B``: peak RSS of the same job on files of A and B minutes (flat memory check);
3. ``--audiosep``: the official ResUNet30 configuration (random weights, 32 kHz) through our engine vs an
   emulation of the official chunked pipeline's cost (see :func:`upstream_chunk_plan`), same machine,
   same run; prints the speed ratio (upstream wall / our wall).

Timing excludes model loading, the one-time ONNX export (done and cached by a separate child first, so
neither its time nor its memory is charged to the measured run) and the query-encoder load (the embedding is computed before the clock
starts); it includes reading, resampling, STFT, network, mask transfer, ISTFT and writing the stems.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from plugin_bridge.audio_io import open_writer
from plugin_bridge.engine.chunker import DEFAULT_CHUNK_SECONDS
from plugin_bridge.tables import format_table

__all__ = ["run_bench", "make_bench_file", "upstream_chunk_plan", "peak_rss_bytes", "format_table"]

BENCH_RATE = 48000
BENCH_CHANNELS = 2
QUERY = "a person speaking"
RESULT_TAG = "BENCH_RESULT "


# -- test signal ----------------------------------------------------------------------------------------

def make_bench_file(path: str, seconds: float, rate: int = BENCH_RATE, channels: int = BENCH_CHANNELS,
                    seed: int = 0, block_seconds: float = 10.0) -> str:
    """Write ``seconds`` of tones + pink-ish noise as 16-bit WAV, streamed in blocks."""
    total = int(round(seconds * rate))
    block = int(block_seconds * rate)
    rng = np.random.default_rng(seed)
    freqs = np.array([110.0, 440.0, 1234.5, 3520.0])
    with open_writer(path, rate, channels, bit_depth=16) as f:
        done = 0
        while done < total:
            n = min(block, total - done)
            t = (done + np.arange(n)) / rate
            tones = sum(0.08 * np.sin(2 * np.pi * fr * t + k) for k, fr in enumerate(freqs))
            x = np.empty((channels, n), np.float32)
            for c in range(channels):
                noise = rng.standard_normal(n)
                noise = np.convolve(noise, [0.5, 0.3, 0.2], mode="same")  # gently low-passed
                x[c] = (tones * (1.0 if c == 0 else 0.8) + 0.1 * noise).astype(np.float32)
            f.write(x)
            done += n
    return path


# -- memory ---------------------------------------------------------------------------------------------

def machine_info() -> dict:
    """What the figures were measured on: the CPU's model name and the logical CPUs this process may use.

    Real-time factors differ between machines by more than most engine changes move them (the project's
    2-core machines have differed by 1.3x or more), so every figure file names the machine it came from."""
    import platform

    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return {"cpu": cpu or platform.processor() or platform.machine() or "unknown", "logical_cpus": usable,
            "system": f"{platform.system()} {platform.machine()}"}


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far."""
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(r if sys.platform == "darwin" else r * 1024)
    except ImportError:  # Windows
        import psutil

        mi = psutil.Process().memory_info()
        return int(getattr(mi, "peak_wset", mi.rss))


# -- the official chunked pipeline's cost, emulated ------------------------------------------------------

def upstream_chunk_plan(L: int, rate: int = 32000) -> list[tuple[int, int]]:
    """(start, stop) of every network pass the official ``chunk_inference`` makes on L samples
    (spec 4.2): 5 s windows (1 s left context, 3 s centre, 1 s right), hop 3 s; inside the loop each
    window is run, then the next one as a look-ahead pass, which the next iteration runs again.
    Written from the spec's description; no upstream code."""
    W, hop = 5 * rate, 3 * rate
    passes = []
    cur = 0
    while cur + W < L:
        passes.append((cur, cur + W))
        cur += hop
        if cur < L:
            passes.append((cur, min(cur + W, L)))
    return passes


def _emulate_upstream(net, wave48: np.ndarray, cond: np.ndarray) -> float:
    """Upstream ``separate_audio(use_chunk=True)`` cost: mono downmix + resample to 32 kHz (librosa/soxr
    there, Pedalboard here), then one eager full-model pass (STFT -> ResUNet30 -> ISTFT) per planned
    window, float64 output buffer, int16 32 kHz mono output.  Approximation, stated in the report:
    the STFT/ISTFT use torch.stft/istft (FFT), cheaper than torchlibrosa's conv-DFT (~2.5 GFLOP per audio
    second), so this *under*-estimates upstream's cost."""
    import torch

    from plugin_bridge.models.resunet import apply_mask, magnitude

    t0 = time.perf_counter()
    mono = wave48.mean(axis=0, keepdims=True).astype(np.float32)
    x32 = _resample(mono, BENCH_RATE, 32000)
    L = x32.shape[1]
    out = np.zeros((1, L))
    c = torch.from_numpy(cond[None].astype(np.float32))
    with torch.no_grad():
        film = net.film(c)
        for a, b in upstream_chunk_plan(L):
            seg = torch.from_numpy(x32[None, :, a:b])
            if seg.shape[-1] <= 1024:  # a tail shorter than the reflect padding
                seg = torch.nn.functional.pad(seg, (0, 1025 - seg.shape[-1]))
            spec = net.stft(seg)
            logits = net.base(magnitude(spec), film)
            y = net.istft(apply_mask(spec, net.masks_from_logits(logits)), seg.shape[-1])
            yn = y[0].numpy()
            # placement as the spec describes (first window: first 4 s; then centres; last: to the end)
            if a == 0:
                out[:, : min(4 * 32000, L)] = yn[:, : min(4 * 32000, L)]
            else:
                lo = a + 32000
                hi = min(b, L) if b >= L else b - 32000
                out[:, lo:hi] = yn[:, 32000: 32000 + (hi - lo)]
    _ = np.round(out * 32767).astype(np.int16)
    return time.perf_counter() - t0


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    from pedalboard.io import StreamResampler

    r = StreamResampler(float(src), float(dst), x.shape[0])
    y = np.concatenate([r.process(np.ascontiguousarray(x)), r.process()], axis=1)
    n = int(round(x.shape[1] * dst / src))
    return np.ascontiguousarray(y[:, :n], np.float32)


# -- child process ---------------------------------------------------------------------------------------

def _child(spec: dict) -> dict:
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    from plugin_bridge.engine.separator import Query, SeparationSettings, Separator
    from plugin_bridge.models.registry import load_model, random_model
    from plugin_bridge.models.resunet import ResUNetConfig

    kind = spec["kind"]
    if spec.get("audiosep_config"):
        model = random_model(ResUNetConfig.audiosep())
    else:
        model = load_model(spec.get("model"), tokenizer=spec.get("tokenizer"))
    if spec.get("encoder") == "hash" or (spec.get("audiosep_config") and model.encoder_id == "minilm-l6-v2"):
        from plugin_bridge.testing import HashEncoder

        model._encoder = HashEncoder(model.cfg.condition_size)
    result = {"kind": kind, "backend": spec.get("backend", "torch"), "model": model.name}
    if kind == "upstream":
        from plugin_bridge.audio_io import StreamReader

        cond = model.encoder().encode([QUERY])[0]
        rd = StreamReader(spec["input"])
        try:
            wave = rd.get(0, rd.frames)
            frames, rate = rd.frames, rd.sample_rate
        finally:
            rd.close()
        net = model.net.eval()
        result["wall"] = _emulate_upstream(net, wave, cond)
        result["audio_seconds"] = frames / rate
        result["passes"] = len(upstream_chunk_plan(int(round(frames * 32000 / rate))))
    else:
        t_load = time.perf_counter()
        sep = Separator(model, backend=spec.get("backend", "torch"), device=spec.get("device", "cpu"),
                        threads=spec.get("threads"))
        sep.embed([QUERY])  # encoder load + embedding outside the clock
        result["setup_seconds"] = time.perf_counter() - t_load
        if kind == "prepare":  # ONNX export into the cache, in its own process (its peak RSS is not ours)
            result["peak_rss"] = peak_rss_bytes()
            return result
        out = spec["out_dir"]
        os.makedirs(out, exist_ok=True)
        walls = []
        # The first file a process separates pays one-time costs (allocator warm-up, ONNX Runtime's first
        # run per input shape); a second pass of the same file in the same process is what the app and
        # batch jobs see from their second file on.
        for _ in range(max(1, int(spec.get("passes", 1)))):
            t0 = time.perf_counter()
            res = sep.separate_file(spec["input"], [Query(QUERY)], out, fmt="wav16",
                                    settings=SeparationSettings(chunk_seconds=float(spec.get("chunk", DEFAULT_CHUNK_SECONDS))))
            walls.append(time.perf_counter() - t0)
            for p in res.stem_paths + ([res.residual_path] if res.residual_path else []):
                os.unlink(p)  # keep the temp folder small for long files
        result["wall"] = walls[0]
        result["walls"] = walls
        result["audio_seconds"] = res.frames / res.sample_rate
    result["peak_rss"] = peak_rss_bytes()
    return result


def _run_child(spec: dict, timeout: float | None = None) -> dict:
    if spec.get("kind") == "separate" and spec.get("backend") == "onnx":
        _run_child({**spec, "kind": "prepare"}, timeout)
    cmd = [sys.executable, "-m", "plugin_bridge.bench.speed", "child", json.dumps(spec)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    for line in p.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = (p.stderr or p.stdout).strip().splitlines()[-8:]
    raise RuntimeError(f"benchmark child ({spec.get('kind')}/{spec.get('backend')}) failed with exit code "
                       f"{p.returncode}: " + " | ".join(tail))


# -- output ----------------------------------------------------------------------------------------------

def _mb(b: int) -> str:
    return f"{b / 2 ** 20:.0f}"


def _speed_row(label: str, r: dict) -> list:
    a, w = r["audio_seconds"], r["wall"]
    return [label, f"{a:.1f}", f"{w:.2f}", f"{w / a:.3f}", f"{a / w:.2f}", _mb(r["peak_rss"])]


SPEED_HEADERS = ["backend", "audio_s", "wall_s", "rtf", "x_realtime", "peak_rss_mb"]
REPEAT_HEADERS = ["backend", "runs", "first_file_x_median", "first_file_x_min", "first_file_x_max",
                  "second_file_x_median"]


def _median(v: list[float]) -> float:
    return float(np.median(np.asarray(v, np.float64)))


def repeat_summary(label: str, runs: list[dict]) -> tuple[list, dict]:
    """Medians over fresh processes: the first file (cold) and, when measured, a second pass (warm)."""
    cold = [r["audio_seconds"] / r["walls"][0] for r in runs]
    warm = [r["audio_seconds"] / r["walls"][1] for r in runs if len(r.get("walls", [])) > 1]
    fig = {"runs": len(runs), "first_file_x": cold, "first_file_x_median": _median(cold),
           "second_file_x": warm, "second_file_x_median": _median(warm) if warm else None}
    row = [label, str(len(runs)), f"{fig['first_file_x_median']:.2f}", f"{min(cold):.2f}", f"{max(cold):.2f}",
           f"{fig['second_file_x_median']:.2f}" if warm else "-"]
    return row, fig


def _parse_lengths(s) -> list[float]:
    if not s:
        return []
    if isinstance(s, (list, tuple)):
        return [float(v) for v in s]
    from plugin_bridge.errors import ConfigError

    try:
        vals = [float(v) for v in str(s).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--rss-lengths expects comma-separated minutes, e.g. 1,120 (got {s!r})") from None
    if len(vals) < 2 or any(v <= 0 for v in vals):
        raise ConfigError("--rss-lengths needs at least two positive lengths in minutes, e.g. 1,120")
    return vals


def run_bench(args) -> int:
    from plugin_bridge.errors import ConfigError

    minutes = float(getattr(args, "minutes", 2.0))
    if minutes <= 0:
        raise ConfigError("--minutes must be positive")
    backends = [b.strip() for b in str(getattr(args, "backends", "torch") or "torch").split(",") if b.strip()]
    for b in backends:
        if b not in ("torch", "onnx"):
            raise ConfigError(f"unknown backend {b!r} in --backends; use torch and/or onnx")
    lengths = _parse_lengths(getattr(args, "rss_lengths", ""))
    rate = int(getattr(args, "rate", None) or BENCH_RATE)
    if not 8000 <= rate <= 384000:
        raise ConfigError("--rate must be between 8000 and 384000 Hz")
    threads = getattr(args, "threads", None)
    base = {"model": getattr(args, "model", None), "tokenizer": getattr(args, "tokenizer", None),
            "threads": threads, "device": getattr(args, "device", "cpu") or "cpu",
            "encoder": getattr(args, "encoder", None)}
    out = sys.stdout
    with tempfile.TemporaryDirectory(prefix="pb-bench-") as td:
        def gen(mins: float) -> str:
            p = os.path.join(td, f"bench_{mins:g}min.wav")
            if not os.path.exists(p):
                t0 = time.perf_counter()
                make_bench_file(p, mins * 60.0, rate=rate)
                print(f"(generated a {mins:g} min {rate / 1000:g} kHz stereo test file in {time.perf_counter() - t0:.1f} s)", file=out, flush=True)
            return p

        machine = machine_info()
        print(f"plugin-bridge bench: {minutes:g} min, {rate / 1000:g} kHz stereo, query {QUERY!r}, threads "
              f"{threads or 'default'}, cpu count {os.cpu_count()} ({machine['cpu']}, {machine['logical_cpus']} "
              f"usable)", file=out, flush=True)
        f = gen(minutes)
        repeat = getattr(args, "repeat", None)
        repeat = 1 if repeat is None else int(repeat)
        if repeat < 1:
            raise ConfigError("--repeat must be at least 1")
        # Backends take turns (a, b, a, b, ...) so slow drifts of the machine hit them alike.
        per = {b: [] for b in backends}
        for _ in range(repeat):
            for b in backends:
                per[b].append(_run_child({**base, "kind": "separate", "backend": b, "input": f,
                                          "out_dir": os.path.join(td, "out"), "passes": 2 if repeat > 1 else 1}))
        # The speed table shows, per backend, the fresh-process run with the median first-file time.
        results = [sorted(per[b], key=lambda r: r["wall"])[(len(per[b]) - 1) // 2] for b in backends]
        rows = [_speed_row(b, r) for b, r in zip(backends, results)]
        print(f"\n[speed] model: {results[0]['model']}" + (f"; median of {repeat} fresh processes" if repeat > 1 else ""),
              file=out, flush=True)
        print(format_table(SPEED_HEADERS + ["speed_vs_" + backends[0]],
                           [row + [f"{results[0]['wall'] / r['wall']:.2f}x"] for row, r in zip(rows, results)]), file=out, flush=True)
        figures = {"minutes": minutes, "rate": rate, "threads": threads, "model": results[0]["model"],
                   "machine": machine, "backends": {}}
        if repeat > 1:
            reps = []
            for b in backends:
                row, fig = repeat_summary(b, per[b])
                reps.append(row)
                figures["backends"][b] = fig
            print(f"\n[speed over {repeat} fresh processes] first file = cold process; second file = the same "
                  "file again in that process (as the app and batch jobs run)", file=out, flush=True)
            print(format_table(REPEAT_HEADERS, reps), file=out, flush=True)
        if getattr(args, "json", None):
            for b, r in zip(backends, results):
                figures["backends"].setdefault(b, {})["x_realtime"] = r["audio_seconds"] / r["wall"]
            with open(args.json, "w") as fh:
                json.dump(figures, fh, indent=1)

        if lengths:
            rrows, rres = [], []
            for mins in lengths:
                r = _run_child({**base, "kind": "separate", "backend": backends[0], "input": gen(mins),
                                "out_dir": os.path.join(td, "out")})
                rres.append(r)
                rrows.append([f"{mins:g}", f"{r['audio_seconds']:.0f}", f"{r['wall']:.1f}", _mb(r["peak_rss"]),
                              f"{r['peak_rss'] / rres[0]['peak_rss']:.2f}"])
                if mins != lengths[0] and not any(m == mins for m in lengths[lengths.index(mins) + 1:]):
                    try:
                        os.unlink(gen(mins))
                    except OSError:
                        pass
            print(f"\n[memory vs file length] backend {backends[0]}", file=out, flush=True)
            print(format_table(["minutes", "audio_s", "wall_s", "peak_rss_mb", "rss_vs_first"], rrows), file=out, flush=True)
            print(f"length ratio {lengths[-1] / lengths[0]:.1f}x -> peak RSS ratio "
                  f"{rres[-1]['peak_rss'] / rres[0]['peak_rss']:.2f}x (flat memory means ~1.0x)", file=out, flush=True)

        if getattr(args, "audiosep", False):
            secs = min(minutes * 60.0, 60.0)
            fa = os.path.join(td, "bench_audiosep.wav")
            make_bench_file(fa, secs)
            arows, ours = [], []
            up = _run_child({**base, "kind": "upstream", "audiosep_config": True, "input": fa})
            for b in backends:
                r = _run_child({**base, "kind": "separate", "audiosep_config": True, "backend": b, "input": fa,
                                "out_dir": os.path.join(td, "out")})
                ours.append((b, r))
                arows.append(_speed_row(f"ours/{b}", r) + [f"{up['wall'] / r['wall']:.2f}x"])
            arows.append(_speed_row("upstream-chunked (emulated)", up) + ["1.00x"])
            print(f"\n[AudioSep ResUNet30, random weights, {secs:.0f} s of 48 kHz stereo] upstream emulation: "
                  f"{up['passes']} passes of <= 5 s (mono, 32 kHz, torch.stft in place of torchlibrosa's "
                  f"conv-DFT, so upstream's real cost is higher)", file=out, flush=True)
            print(format_table(SPEED_HEADERS + ["speedup_vs_upstream"], arows), file=out, flush=True)
            best = max(ours, key=lambda br: up["wall"] / br[1]["wall"])
            ratio = up["wall"] / best[1]["wall"]
            print(f"speed ratio ours/{best[0]} vs upstream chunked: {ratio:.2f}x (target >= 2x: "
                  f"{'met' if ratio >= 2 else 'NOT met'}); ours writes 48 kHz stereo stem + residual, "
                  "upstream 32 kHz mono stem only", file=out, flush=True)

    return 0


def _main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "child":
        res = _child(json.loads(argv[1]))
        sys.stdout.write(RESULT_TAG + json.dumps(res) + "\n")
        sys.stdout.flush()
        return 0
    sys.stderr.write("usage: plugin-bridge bench [--minutes N] [--backends torch,onnx] [--rss-lengths 1,120] [--audiosep]\n")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
