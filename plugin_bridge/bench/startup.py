"""``plugin-bridge bench --startup`` (cold start breakdown) and ``bench --batch`` (throughput).

--startup: a 10 s 48 kHz stereo file is separated by fresh processes.  One preparation process fills
the caches a first run ever makes (the ONNX export of the separator and the text encoder, the query
embedding; it is the only one that needs torch).  Then, ``--repeat`` times each, alternating:
* the real command, ``python -m plugin_bridge separate FILE -q QUERY --quiet``, timed by the parent from
  spawn to exit: the user's wait for the stems to be on disk (target < 2 s);
* an instrumented child that times its phases: imports, model load (header, weights hash, ONNX Runtime
  session), query encoder / embedding, and, inside the separation, reading, the network, writing and
  the rest (STFT, masks, overlap-add); it also reports whether torch was imported.

--batch: N short files and one long file through (a) one in-process engine and (b) local Ray with
``--ray-workers`` actors, in the same run, so the ratios are fair on a loaded machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from plugin_bridge.bench.speed import RESULT_TAG, make_bench_file
from plugin_bridge.tables import format_table

QUERY = "a person speaking"
PHASES = ["interpreter", "imports", "model_load", "encoder", "read", "network", "write", "other", "total"]


# -- startup ------------------------------------------------------------------------------------------------

def _startup_child(spec: dict) -> dict:
    t0 = time.perf_counter()
    import onnxruntime  # noqa: F401
    import pedalboard.io  # noqa: F401

    from plugin_bridge import audio_io
    from plugin_bridge.engine import writer as writer_mod
    from plugin_bridge.engine.separator import Query, Separator
    from plugin_bridge.models.registry import load_model
    t1 = time.perf_counter()
    model = load_model(spec.get("model"))
    sep = Separator(model, backend=spec.get("backend", "auto"), threads=spec.get("threads"))
    t2 = time.perf_counter()
    sep.embed([QUERY])
    t3 = time.perf_counter()
    acc = {"read": 0.0, "network": 0.0, "write": 0.0}

    def timed(obj, name, key):
        fn = getattr(obj, name)

        def wrapper(*a, **k):
            s = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[key] += time.perf_counter() - s
        setattr(obj, name, wrapper)

    timed(audio_io.StreamReader, "get", "read")
    timed(writer_mod.StemWriterSet, "write", "write")
    timed(writer_mod.StemWriterSet, "commit", "write")
    timed(sep.backend, "logits", "network")
    sep.separate_file(spec["input"], [Query(QUERY)], spec["out_dir"], overwrite=True)  # the same file each repeat
    t4 = time.perf_counter()
    return {"imports": t1 - t0, "model_load": t2 - t1, "encoder": t3 - t2, **acc,
            "other": (t4 - t3) - sum(acc.values()), "in_process": t4 - t0, "torch_imported": "torch" in sys.modules,
            "backend": sep.backend.name}


def _child_json(args: list[str], env=None, timeout=300) -> tuple[dict, float]:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "plugin_bridge.bench.startup", *args], capture_output=True,
                       text=True, env=env, timeout=timeout)
    wall = time.perf_counter() - t
    for line in p.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):]), wall
    raise RuntimeError(f"benchmark child failed ({p.returncode}): " + " | ".join((p.stderr or p.stdout).strip().splitlines()[-6:]))


def run_startup(args, out=sys.stdout) -> int:
    import numpy as np

    repeat = max(1, int(getattr(args, "repeat", 1) or 1))
    with tempfile.TemporaryDirectory(prefix="pb-startup-") as tmp:
        src = make_bench_file(os.path.join(tmp, "ten_seconds.wav"), 10.0)
        spec = {"input": src, "out_dir": os.path.join(tmp, "out"), "model": getattr(args, "model", None),
                "backend": "auto", "threads": getattr(args, "threads", None)}
        cmd = [sys.executable, "-m", "plugin_bridge", "separate", src, "-q", QUERY, "--quiet", "--overwrite", "-o",
               os.path.join(tmp, "cli")]  # the same outputs each repeat
        if spec["model"]:
            cmd += ["--model", spec["model"]]
        t = time.perf_counter()
        _child_json(["startup", json.dumps(spec)])  # fills the caches (export, embedding) once
        print(f"[cold start] caches prepared in {time.perf_counter() - t:.1f} s (first run ever only); "
              f"{repeat} fresh process(es) each, 10 s 48 kHz stereo file, query {QUERY!r}", file=out, flush=True)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        interp = time.perf_counter() - t
        import resource

        rows, cli, cpu = [], [], []
        for _ in range(repeat):
            t = time.perf_counter()
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            cli.append(time.perf_counter() - t)
            ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(ru2.ru_utime - ru.ru_utime + ru2.ru_stime - ru.ru_stime)
            if p.returncode:
                raise RuntimeError(f"separate failed: {p.stderr.strip()[-300:]}")
            r, wall = _child_json(["startup", json.dumps(spec)])
            r["interpreter"] = wall - r["in_process"]
            r["total"] = wall
            rows.append(r)
        med = {k: float(np.median([r[k] for r in rows])) for k in PHASES}
        print(format_table(["phase", "seconds (median)"], [[k, f"{med[k]:.3f}"] for k in PHASES]), file=out)
        print(f"(interpreter = process start, numpy import and exit; `python -c pass` alone: {interp:.3f} s)", file=out)
        print(f"backend: {rows[0]['backend']}; torch imported: {any(r['torch_imported'] for r in rows)}", file=out)
        c = float(np.median(cli))
        print(f"`plugin-bridge separate` 10 s file, spawn to exit: median {c:.2f} s, min {min(cli):.2f}, "
              f"max {max(cli):.2f} over {repeat} (target < 2 s: {'met' if c < 2 else 'NOT met'}); CPU time "
              f"(user+sys, all threads) median {float(np.median(cpu)):.2f} s; load average now "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", file=out, flush=True)
        if getattr(args, "json", None):
            with open(args.json, "w") as f:
                json.dump({"startup": {"phases_median": med, "runs": rows, "cli_seconds": cli, "cli_cpu_seconds": cpu}}, f, indent=1)
    return 0


# -- batch throughput -------------------------------------------------------------------------------------------

def run_batch_bench(args, out=sys.stdout) -> int:
    from plugin_bridge.engine.batch import BatchOptions, expand_inputs, run_batch
    from plugin_bridge.engine.batch_ray import run_batch_ray
    from plugin_bridge.engine.separator import Separator
    from plugin_bridge.errors import ConfigError
    from plugin_bridge.models.registry import load_model

    n, secs, long_min = int(args.files), float(args.seconds), float(args.long_minutes)
    if n < 1 or secs <= 0 or long_min <= 0:
        raise ConfigError("--files, --seconds and --long-minutes must be positive")
    q = [(QUERY, None)]
    rows, fig = [], {}

    def row(label, results, wall):
        audio = sum(r.audio_seconds for r in results)
        bad = [r.message for r in results if r.status != "done"]
        if bad:
            raise RuntimeError(f"{label}: {bad[0]}")
        fig[label] = {"files": len(results), "audio_seconds": audio, "wall": wall, "files_per_s": len(results) / wall,
                      "x_realtime": audio / wall}
        rows.append([label, str(len(results)), f"{audio:.0f}", f"{wall:.2f}", f"{len(results) / wall:.2f}",
                     f"{audio / wall:.1f}"])

    with tempfile.TemporaryDirectory(prefix="pb-batchbench-") as tmp:
        shorts = [make_bench_file(os.path.join(tmp, f"short{i:03d}.wav"), secs, seed=i) for i in range(n)]
        long_f = make_bench_file(os.path.join(tmp, "long.wav"), long_min * 60, seed=999)
        model = load_model(getattr(args, "model", None))
        sep = Separator(model, backend="auto", threads=getattr(args, "threads", None))
        sep.embed([QUERY])
        warm = expand_inputs([shorts[0]], q)
        run_batch(sep, warm, BatchOptions(os.path.join(tmp, "warm")), quiet=True)  # first-run costs off the clock
        print(f"[batch throughput] {n} files of {secs:g} s and one of {long_min:g} min, 48 kHz stereo, "
              f"backend {sep.backend.name}; all figures from this one run", file=out, flush=True)
        for label, files in ((f"in-process: long file", [long_f]), (f"in-process batch: {n} x {secs:g} s", shorts)):
            t = time.perf_counter()
            res = run_batch(sep, expand_inputs(files, q), BatchOptions(os.path.join(tmp, label[:10].strip(":"))),
                            quiet=True)
            row(label, res, time.perf_counter() - t)
        w = int(getattr(args, "ray_workers", 2) or 0)
        if w:
            try:
                import ray
            except ImportError:  # the optional extra
                print("(Ray rows skipped: pip install 'plugin-bridge[ray]')", file=out)
                w = 0
        if w:
            t0 = time.perf_counter()
            try:
                ray.init(num_cpus=w, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith("PLUGIN_BRIDGE_")}})
            except Exception as exc:  # Ray's 30 s start-up deadline on an overloaded machine
                ray.shutdown()
                print(f"(Ray rows skipped: a local Ray instance could not start: {str(exc)[:100]})", file=out)
                w = 0
        if w:
            try:
                for label, files, d in ((f"ray {w} workers: long file", [long_f], "rl"),
                                        (f"ray {w} workers: {n} x {secs:g} s", shorts, "rs")):
                    t = time.perf_counter()
                    res = run_batch_ray(expand_inputs(files, q), BatchOptions(os.path.join(tmp, d)),
                                        model_spec=getattr(args, "model", None), threads=1, workers=w, quiet=True)
                    row(label + " (incl. actor start)", res, time.perf_counter() - t)
            finally:
                ray.shutdown()
            fig["ray_init_seconds"] = time.perf_counter() - t0 - sum(
                v["wall"] for k, v in fig.items() if isinstance(v, dict) and k.startswith("ray"))
        print(format_table(["run", "files", "audio_s", "wall_s", "files_per_s", "x_realtime"], rows), file=out)
        ref = fig["in-process: long file"]["x_realtime"]
        for k, v in fig.items():
            if isinstance(v, dict) and k != "in-process: long file":
                print(f"{k}: {v['x_realtime'] / ref * 100:.0f} % of the in-process long-file real-time factor", file=out)
        if "ray_init_seconds" in fig:
            print(f"(Ray's own start-up, not in the rows: {fig['ray_init_seconds']:.1f} s)", file=out)
        short = fig[f"in-process batch: {n} x {secs:g} s"]["x_realtime"] / ref
        print(f"goal: a batch of short files >= 80 % of the in-process figure: {short * 100:.0f} % "
              f"({'met' if short >= 0.8 else 'NOT met'})", file=out, flush=True)
        if getattr(args, "json", None):
            import json as _json

            with open(args.json, "w") as f:
                _json.dump({"batch": fig}, f, indent=1)
    return 0


def _main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "startup":
        res = _startup_child(json.loads(argv[1]))
        sys.stdout.write(RESULT_TAG + json.dumps(res) + "\n")
        return 0
    sys.stderr.write("internal benchmark child; use plugin-bridge bench --startup / --batch\n")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
