"""``plugin-bridge train --time-steps N``: seconds per training step of the default network, as an interleaved A/B.

The trainer (``plugin_bridge.training.train``) runs its steps through ``torch.compile`` and mixes the next
batch on a background thread (``BatchPrefetcher``).  This measures what each of those buys, on this machine,
in one run: the arms take turns in rounds (so a machine that slows down or speeds up meanwhile affects them
alike) and each round times ``steps`` steps per arm after one untimed step.

Arms (each its own copy of the same initial network and its own AdamW, fed the same batches in the same order):

* ``eager``: the network run eagerly, the batch mixed inline before each step (the trainer before 2026-12-07);
* ``compiled``: ``torch.compile`` of the network (compiled in an untimed first step), batch mixed inline;
* ``compiled+prefetch``: as the trainer runs now.

With ``--corpus`` the batches are the trainer's own (corpus mixtures, augmentation, umbrella queries); without
one they are random noise and the prefetch arm is left out (there is no mixer to overlap).  A step is: mix
(inline arms), forward, thresholded SNR loss, backward, AdamW; it leaves out validation, the EMA update and
checkpointing, which the trainer adds.
"""
from __future__ import annotations

import copy
import time
from typing import Callable

import numpy as np

from plugin_bridge.tables import format_table

__all__ = ["run_train_bench"]

ARMS = ("eager", "compiled", "compiled+prefetch")


def run_train_bench(corpus: str | None = None, labels_json: str | None = None, steps: int = 8, rounds: int = 3,
                    threads: int | None = None, batch: int = 16, seconds: float = 3.0, model_cfg=None,
                    family_weights: dict[str, float] | None = None, umbrella_fraction: float = 0.1,
                    encoder=None, out: Callable[[str], None] = print) -> dict:
    import torch

    from plugin_bridge.models.losses import LOSSES
    from plugin_bridge.models.registry import DEFAULT_CONFIG
    from plugin_bridge.models.resunet import ResUNet, forward_padded
    from plugin_bridge.training.mixer import BatchPrefetcher, Corpus, Mixer, MixerConfig

    if steps < 1 or rounds < 1:
        raise ValueError("steps and rounds must be at least 1")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    net0 = ResUNet(model_cfg or DEFAULT_CONFIG)
    net0 = net0.to(memory_format=torch.channels_last)  # as the trainer on CPU
    cfg = net0.cfg
    loss_fn = LOSSES["snr"]

    mixers: dict[str, Mixer] = {}
    if corpus:
        from plugin_bridge.training.train import LABELS_JSON, QueryTable
        from plugin_bridge.models.encoders.minilm import MiniLMEncoder

        c = Corpus.load(corpus, "train", labels_json or LABELS_JSON)
        mcfg = MixerConfig(seconds=seconds, family_weights=family_weights, umbrella_fraction=umbrella_fraction)
        arms = list(ARMS)
        mixers = {a: Mixer(c, mcfg, seed=1) for a in arms}
        table = QueryTable(dict(c.labels), encoder or MiniLMEncoder(), dict(c.umbrellas))
    else:
        arms = list(ARMS[:2])
        rngs = {a: np.random.default_rng(1) for a in arms}
        table = None

    nets = {a: copy.deepcopy(net0) for a in arms}
    runners = {a: (torch.compile(n) if a != "eager" else n) for a, n in nets.items()}
    opts = {a: torch.optim.AdamW(n.parameters(), lr=1e-4) for a, n in nets.items()}
    losses: dict[str, list[float]] = {a: [] for a in arms}
    times: dict[str, list[float]] = {a: [] for a in arms}
    rng_states = {a: mixers[a].rng.bit_generator.state for a in mixers}
    n = int(round(seconds * cfg.sample_rate))

    def inline_batch(a):
        if table is None:
            r = rngs[a]
            mix = (0.1 * r.standard_normal((batch, n))).astype(np.float32)
            return mix, 0.5 * mix, r.standard_normal((batch, cfg.condition_size)).astype(np.float32)
        return mixers[a].batch_arrays(batch)

    def step(a, mix, tgt, queries):
        cond = torch.from_numpy(queries) if table is None else table(queries)
        mix, tgt = torch.from_numpy(mix)[:, None], torch.from_numpy(tgt)[:, None]
        opts[a].zero_grad(set_to_none=True)
        loss = loss_fn(forward_padded(runners[a], mix, cond), tgt, mix)
        loss.backward()
        opts[a].step()
        losses[a].append(float(loss.item()))

    t_compile = {}
    for rnd in range(rounds):
        for a in arms:
            if a == "compiled+prefetch":
                mixers[a].rng.bit_generator.state = rng_states[a]  # where the last round's taken batches ended
                feed = BatchPrefetcher(mixers[a], batch)
                try:
                    step(a, *feed.take())  # untimed
                    t = time.perf_counter()
                    for _ in range(steps):
                        step(a, *feed.take())
                    times[a].append((time.perf_counter() - t) / steps)
                finally:
                    feed.close()
                rng_states[a] = feed.rng_state
            else:
                t = time.perf_counter()
                step(a, *inline_batch(a))  # untimed (the compiled arm compiles here in round 1)
                if rnd == 0:
                    t_compile[a] = time.perf_counter() - t
                t = time.perf_counter()
                for _ in range(steps):
                    step(a, *inline_batch(a))
                times[a].append((time.perf_counter() - t) / steps)
    med = {a: float(np.median(times[a])) for a in arms}
    rows = [[a, f"{med[a]:.3f}", f"{min(times[a]):.3f}-{max(times[a]):.3f}", f"{med['eager'] / med[a]:.2f}x"]
            for a in arms]
    what = f"corpus {corpus}" if corpus else "random-noise batches (no corpus: no prefetch arm)"
    out(f"training step of {cfg.name} (batch {batch} x {seconds:g} s, {torch.get_num_threads()} threads), {what}; "
        f"{rounds} rounds x {steps} timed steps per arm, taking turns")
    out(format_table(["arm", "median s/step", "range", "speed vs eager"], rows))
    if "compiled" in t_compile:
        out(f"first (compiling) step of the compiled arm: {t_compile['compiled']:.1f} s "
            f"(eager arm's first step: {t_compile['eager']:.1f} s)")
    return {"median_s_per_step": med, "rounds": times, "losses": losses, "first_step_s": t_compile}
