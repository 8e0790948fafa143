"""Batch separation on a Ray cluster: one actor per worker, each holding one warm engine.

The driver keeps a queue of jobs and gives each idle actor the next one; every actor runs the same
:func:`plugin_bridge.engine.batch.process_job` as the local batch, on paths every node can see (a shared
folder), so the outputs are the same bytes as a local run's.  When an actor dies mid-file (node lost,
process killed), its hidden partial files are removed, a fresh actor replaces it and the file is retried
(``retries`` times).  Requires the optional extra: ``pip install "plugin-bridge[ray]"``.

Point it at a cluster with ``address`` (``ray://head:10001`` through Ray Client, or ``auto`` on a node of
the cluster); without one a local Ray instance is started for this run and shut down afterwards.
"""
from __future__ import annotations

import os
import socket
import sys
from dataclasses import asdict

from plugin_bridge.engine.batch import (BatchJob, BatchOptions, BatchProgress, JobResult, _probe_seconds,
                                        process_job, sweep_partials)
from plugin_bridge.errors import ConfigError

__all__ = ["run_batch_ray", "BatchWorker"]


class BatchWorker:
    """The actor's body (plain class, wrapped with ``ray.remote`` at run time): one loaded engine."""

    def __init__(self, model_spec: str | None, backend: str, threads: int | None):
        from plugin_bridge.engine.separator import Separator
        from plugin_bridge.models.registry import load_model

        self.sep = Separator(load_model(model_spec), backend=backend, device="cpu", threads=threads)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def info(self) -> dict:
        return {"name": self.name, "pid": os.getpid(), "backend": self.sep.backend.name}

    def run(self, job: dict, opts: dict) -> dict:
        job = BatchJob(**{**job, "queries": tuple(tuple(q) for q in job["queries"]), "region": tuple(job["region"])})
        return asdict(process_job(self.sep, job, BatchOptions(**opts), worker=self.name))


def _init(address: str | None, num_cpus: int | None):
    try:
        import ray
    except ImportError:
        raise ConfigError('--ray needs the optional Ray extra: pip install "plugin-bridge[ray]"') from None
    if ray.is_initialized():
        return ray, False
    env = {k: v for k, v in os.environ.items() if k.startswith("PLUGIN_BRIDGE_") or k in ("OMP_NUM_THREADS",)}
    kw = {"runtime_env": {"env_vars": env}} if env else {}
    if address:
        ray.init(address=address, log_to_driver=False, **kw)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, **kw)
    return ray, True


def run_batch_ray(jobs: list[BatchJob], opts: BatchOptions, model_spec: str | None = None, backend: str = "auto",
                  threads: int | None = 1, address: str | None = None, workers: int | None = None,
                  quiet: bool = False, retries: int = 2, stream=None, on_start=None) -> list[JobResult]:
    """Run ``jobs`` on Ray actors; results come back in job order.  ``on_start(actor_infos)`` is called
    once the actors are up (tests use it to find the worker processes)."""
    ray, started = _init(address, workers)
    try:
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote_cls = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(BatchWorker)

        def spawn():
            return remote_cls.remote(model_spec, backend, threads)

        actors = [spawn() for _ in range(min(n, max(1, len(jobs))))]
        infos = ray.get([a.info.remote() for a in actors])
        if on_start:
            on_start(infos)
        durations = [_probe_seconds(j) for j in jobs]
        bar = BatchProgress(sum(durations), len(jobs), stream or sys.stderr, quiet)
        opts_d = asdict(opts)
        results: list[JobResult | None] = [None] * len(jobs)
        attempts = [0] * len(jobs)
        queue = []
        for i, job in enumerate(jobs):
            if job.error:  # a malformed row needs no worker
                results[i] = process_job(None, job, opts)
                bar.start(i + 1, job.label, 0.0)
                bar.finish_file(results[i])
            else:
                queue.append(i)
        done_count = len(jobs) - len(queue)
        running: dict = {}  # ref -> (job index, actor)
        idle = list(actors)
        while queue or running:
            while queue and idle:
                i = queue.pop(0)
                actor = idle.pop(0)
                attempts[i] += 1
                job = jobs[i]
                ref = actor.run.remote({**asdict(job), "queries": [list(q) for q in job.queries],
                                        "region": list(job.region)}, opts_d)
                running[ref] = (i, actor)
            ready, _ = ray.wait(list(running), num_returns=1)
            ref = ready[0]
            i, actor = running.pop(ref)
            try:
                res = JobResult(**ray.get(ref))
                idle.append(actor)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                sweep_partials(jobs[i], opts)  # the dead worker's temporaries: nothing partial stays
                idle.append(spawn())
                if attempts[i] <= retries:
                    queue.insert(0, i)
                    if not quiet:
                        (stream or sys.stderr).write(f"worker lost on {jobs[i].label}; retrying it elsewhere\n")
                    continue
                res = JobResult(jobs[i].input, jobs[i].label, "failed",
                                f"{jobs[i].label}: the worker died {attempts[i]} times on this file ({type(exc).__name__})")
            done_count += 1
            results[i] = res
            bar.start(done_count, os.path.basename(jobs[i].input) or jobs[i].label, durations[i])
            bar.finish_file(res)
        return [r for r in results if r is not None]
    finally:
        if started:
            ray.shutdown()

