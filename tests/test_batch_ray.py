"""Batch on Ray (optional extra): a local 2-CPU Ray started here, outputs byte-equal to the local batch, a
worker killed mid-file has that file retried elsewhere with nothing partial left.  Skipped without ray
(CI does not install the extra: Ray's start alone takes 10-40 s on a 2-core runner)."""
import glob
import os
import signal
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the optional Ray extra is not installed (pip install 'plugin-bridge[ray]')")

from pedalboard.io import AudioFile  # noqa: E402

from plugin_bridge.engine.backends import OnnxBackend  # noqa: E402
from plugin_bridge.engine.batch import BatchOptions, expand_inputs, run_batch  # noqa: E402
from plugin_bridge.engine.batch_ray import run_batch_ray  # noqa: E402
from plugin_bridge.engine.separator import Separator  # noqa: E402
from plugin_bridge.models.encoders.base import EmbeddingCache  # noqa: E402
from plugin_bridge.models.registry import DEFAULT_WEIGHTS, load_model  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(DEFAULT_WEIGHTS), reason="no embedded model in this checkout")


def _write(path, seconds, seed, rate=48000):
    x = np.random.default_rng(seed).standard_normal((2, int(rate * seconds))).astype(np.float32) * 0.1
    with AudioFile(str(path), "w", samplerate=rate, num_channels=2, bit_depth=16) as f:
        f.write(x)
    return str(path)


def _open_partials(pid: int, out_dir: str) -> bool:
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if os.path.dirname(target) == out_dir and os.path.basename(target).startswith(".pb-partial-"):
                return True
    except OSError:
        pass
    return False


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="finding the busy worker needs /proc")
def test_ray_batch_equals_local_and_survives_a_killed_worker(tmp_path):
    cache = os.environ["PLUGIN_BRIDGE_CACHE"]
    model = load_model(None)
    OnnxBackend(model, "cpu", threads=1)  # export once, here; workers load the cached graph
    vec = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    EmbeddingCache(model.encoder_id).put("speech", vec / np.linalg.norm(vec))
    files = [_write(tmp_path / f"short{i}.wav", 1.0, i) for i in range(3)] + [_write(tmp_path / "long.wav", 40.0, 9)]
    jobs = expand_inputs(files, [("speech", None)])
    local = tmp_path / "local"
    opts = dict(chunk_seconds=1.0, fmt="wav24")
    r_local = run_batch(Separator(model, backend="onnx", threads=1), jobs, BatchOptions(str(local), **opts), quiet=True)
    assert all(r.status == "done" for r in r_local)

    out = str(tmp_path / "ray")
    os.makedirs(out)
    killed = []

    def killer(infos):
        def watch():
            t = time.monotonic()
            while time.monotonic() - t < 120 and not killed:
                for info in infos:
                    if _open_partials(info["pid"], out):
                        # only the long file is slow enough to be caught writing
                        os.kill(info["pid"], signal.SIGKILL)
                        killed.append(info["pid"])
                        return
                time.sleep(0.02)
        threading.Thread(target=watch, daemon=True).start()

    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PLUGIN_BRIDGE_CACHE": cache, "OMP_NUM_THREADS": "1"}})
    except Exception as exc:  # Ray's own 30 s start-up deadline, on an overloaded machine
        ray.shutdown()
        pytest.skip(f"a local Ray instance could not start here: {str(exc)[:120]}")
    try:
        results = run_batch_ray(jobs, BatchOptions(out, **opts), backend="onnx", threads=1, workers=2, quiet=True,
                                on_start=killer)
    finally:
        ray.shutdown()
    assert killed, "no worker was caught mid-file"
    assert [r.status for r in results] == ["done"] * 4, [r.message for r in results]
    assert all(r.worker and not r.worker.endswith(f":{killed[0]}") for r in results if r.input.endswith("long.wav"))
    assert glob.glob(os.path.join(out, ".pb-partial-*")) == []
    names = sorted(os.listdir(local))
    assert sorted(os.listdir(out)) == names
    for n in names:
        if n.endswith(".wav"):
            assert (local / n).read_bytes() == open(os.path.join(out, n), "rb").read(), n
