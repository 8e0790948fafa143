"""``plugin-bridge train`` and ``plugin-bridge benchmark``.

The trainer, the benchmark and the model registry are imported when a command runs, not when the
parser is built: they import torch, which would add ~3 s (torch alone ~2 s) to every ``plugin-bridge`` start
(``python -X importtime -c "import plugin_bridge.training.train"``).
"""
from __future__ import annotations

import dataclasses
import os

from plugin_bridge.corpus.common import FAMILIES
from plugin_bridge.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("train", help="train the embedded default separator on the corpus (resumable)")
    p.add_argument("--corpus", default=None,
                   help="corpus folder from 'plugin-bridge corpus build' (needed to train or average)")
    p.add_argument("--run", default="runs/default", help="run folder (checkpoints, logs); rerun to resume")
    p.add_argument("--labels-json", default=None,
                   help="label vocabulary (default models/training/labels.json, the shipped model's); every model "
                        "file the run writes records it; with --export, the one to record when the run's "
                        "best.safetensors has none (default: the run's train_config.json)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--planned-steps", type=int, default=12000)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--max-hours", type=float, default=None)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--anneal", type=int, metavar="N", default=0,
                   help="cool-down: from the step the run resumes at, bring the learning rate to zero over N steps "
                        "(half cosine), then stop; rerun with the same --anneal to resume an interrupted cool-down")
    p.add_argument("--family-weights", default=None, metavar="FAM=W,...",
                   help="share of training targets per family, e.g. instruments=0.5,environmental=0.3,speech=0.2 "
                        "(default: equal shares)")
    p.add_argument("--init", default=None, help="start from these weights when the run has no checkpoint yet")
    p.add_argument("--loss", default="l1", choices=["l1", "snr"],
                   help="l1: waveform L1 over the mixture's level (default); snr: thresholded negative SNR "
                        "(MixIT/FUSS form; absent targets scored against the mixture)")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="also keep an exponential moving average of the weights (e.g. 0.999) and validate it")
    p.add_argument("--film-gamma", action="store_true",
                   help="full FiLM (multiplicative gamma beside the additive beta); an --init from beta-only "
                        "weights starts as the same function")
    p.add_argument("--umbrella-fraction", type=float, default=0.0,
                   help="share of examples that query an umbrella of labels.json ('effects', 'ambience')")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="run the training steps eagerly; by default the network is compiled with torch.compile "
                        "(the network's part of a step 1.4x faster on a 2-core CPU, 1-2 min to compile when a stretch starts; needs a C++ "
                        "compiler, else the run goes on eagerly and says so)")
    p.add_argument("--time-steps", type=int, metavar="N", default=0,
                   help="instead of training: seconds per step, eager vs torch.compile vs compile + batch prefetch, "
                        "the arms taking turns on the same batches, N timed steps per arm and round (with --corpus: "
                        "its mixtures, else random noise; plugin_bridge/training/speed.py)")
    p.add_argument("--time-rounds", type=int, default=3, help="--time-steps: rounds of the arms taking turns (default 3)")
    p.add_argument("--save-resume", metavar="DIR", default=None,
                   help="instead of training, write the run's state (weights, EMA, optimiser, RNG, log) as a "
                        "compact safetensors+JSON bundle to DIR, to commit and resume on another machine")
    p.add_argument("--resume-from", metavar="DIR", default=None,
                   help="when the run folder has no state.pt, rebuild it from this --save-resume bundle first")
    p.add_argument("--export", metavar="PATH", default=None,
                   help="instead of training, copy the run's best model to PATH (e.g. models/weights/default.safetensors)")
    p.add_argument("--average-last", type=int, metavar="N", default=None,
                   help="instead of training, average the run's last N validated snapshots, validate the mean and "
                        "keep it as best.safetensors if it scores higher (stop the trainer first)")
    p.add_argument("--average-steps", metavar="FROM-TO", default=None,
                   help="with --average-out or instead of --average-last: the snapshots whose step lies in FROM-TO "
                        "(inclusive), e.g. 17500-19250; EMA snapshots when the run keeps them")
    p.add_argument("--average-out", metavar="PATH", default=None,
                   help="with --average-last or --average-steps: write the mean to PATH (no validation, no corpus "
                        "needed), e.g. to score it with 'benchmark --model PATH' and ship it")
    p.set_defaults(func=cmd_train)

    b = sub.add_parser("benchmark", help="score a model on a folder of mixtures (SDR, SDRi, SI-SDR, oracle IRM)")
    b.add_argument("--set", dest="set_dir", default=None, help="folder with manifest.csv (mixture,target,query[,paraphrase])")
    b.add_argument("--model", default=None)
    b.add_argument("--labels-json", default=None,
                   help="--make-dev: label vocabulary (default models/training/labels.json)")
    b.add_argument("--make-dev", metavar="CORPUS", default=None,
                   help="first build the in-distribution dev set from CORPUS's dev split into --set")
    b.add_argument("--per-family", type=int, default=200,
                   help="--make-dev: two-source mixtures per target family (default 200)")
    b.add_argument("--three-source", type=int, default=100,
                   help="--make-dev: mixtures with two interferers (default 100)")
    b.add_argument("--per-umbrella", type=int, default=50,
                   help="--make-dev: mixtures per umbrella query such as 'effects' (default 50)")
    b.add_argument("--json", default=None, help="also write the results as JSON here")
    b.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"])
    b.add_argument("--direct", action="store_true",
                   help="score the network directly on the model-rate mixtures (no engine, paraphrase or oracle): "
                        "a quick paired comparison of training recipes")
    b.add_argument("--subset", type=int, default=None, help="with --direct: score this many rows, spread evenly")
    b.add_argument("--compare", nargs=2, metavar=("OLD.json", "NEW.json"), default=None,
                   help="instead of scoring: two --json results on the same mixtures -> per family and umbrella "
                        "query, both medians and the paired difference (mean +- standard error), and the shares "
                        "below the best-gain floor")
    b.set_defaults(func=cmd_benchmark)


def parse_family_weights(text: str | None) -> dict[str, float] | None:
    """``instruments=0.5,speech=0.2`` -> {"instruments": 0.5, "speech": 0.2}; unknown families are an error."""
    if not text:
        return None
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, val = part.partition("=")
        name = name.strip()
        try:
            w = float(val)
        except ValueError:
            w = float("nan")
        if not sep or name not in FAMILIES or not (w >= 0) or w == float("inf"):
            raise ConfigError(f"--family-weights: '{part}' is not FAMILY=WEIGHT with FAMILY one of "
                            f"{', '.join(FAMILIES)} and WEIGHT >= 0")
        out[name] = w
    if sum(out.values()) <= 0:
        raise ConfigError("--family-weights: at least one weight must be > 0")
    return out


def parse_step_range(text: str) -> tuple[int, int]:
    """'17500-19250' -> (17500, 19250)."""
    try:
        lo, hi = (int(v) for v in str(text).split("-"))
    except ValueError:
        raise ConfigError(f"--average-steps {text!r}: expected FROM-TO, two step numbers such as 17500-19250") from None
    if lo < 0 or hi < lo:
        raise ConfigError(f"--average-steps {text!r}: FROM must be >= 0 and not above TO")
    return lo, hi


def cmd_train(args) -> int:
    if args.export:
        from plugin_bridge.training.train import export_best

        name = export_best(args.run, args.export, args.labels_json)
        print(f"exported {os.path.join(args.run, 'best.safetensors')} -> {args.export} (vocabulary {name})")
        return 0
    from plugin_bridge.training.train import TrainConfig, average_into_best, restore_resume, save_resume, train

    if args.save_resume:
        sc = save_resume(args.run, args.save_resume)
        print(f"resume bundle for step {sc['step']} written to {args.save_resume}")
        return 0
    if args.time_steps:
        from plugin_bridge.training.speed import run_train_bench

        run_train_bench(args.corpus, args.labels_json, steps=args.time_steps, rounds=args.time_rounds,
                        threads=args.threads, batch=args.batch, seconds=args.seconds,
                        family_weights=parse_family_weights(args.family_weights),
                        umbrella_fraction=args.umbrella_fraction)
        return 0
    avg_steps = parse_step_range(args.average_steps) if getattr(args, "average_steps", None) else None
    if getattr(args, "average_out", None):
        if args.average_last is None and avg_steps is None:
            raise ConfigError("train --average-out needs --average-last N or --average-steps FROM-TO")
        from plugin_bridge.training.train import average_to_file

        try:
            got = average_to_file(args.run, args.average_out, args.average_last, avg_steps)
        except ValueError as exc:
            raise ConfigError(f"train --average-out: {exc}") from exc
        print(f"wrote the mean of the snapshots at steps {', '.join(map(str, got))} to {args.average_out}")
        return 0
    if args.resume_from and not os.path.exists(os.path.join(args.run, "state.pt")):
        print(f"rebuilt {args.run}/state.pt from {args.resume_from} (step {restore_resume(args.resume_from, args.run)})")
    if not args.corpus:
        raise ConfigError("train: --corpus is required (a folder written by 'plugin-bridge corpus build')")

    if args.average_last is not None or avg_steps is not None:
        cfg = TrainConfig(corpus=args.corpus, run=args.run, seconds=args.seconds, threads=args.threads)
        if args.labels_json:
            cfg.labels_json = args.labels_json
        average_into_best(cfg, args.average_last, log=lambda s: print(s, flush=True), steps=avg_steps)
        return 0
    cfg = TrainConfig(corpus=args.corpus, run=args.run, batch=args.batch, seconds=args.seconds, lr=args.lr,
                      planned_steps=args.planned_steps, max_steps=args.max_steps, max_hours=args.max_hours,
                      val_every=args.val_every, device=args.device, threads=args.threads, init=args.init,
                      anneal_steps=args.anneal, family_weights=parse_family_weights(args.family_weights),
                      loss=args.loss, ema=args.ema, umbrella_fraction=args.umbrella_fraction,
                      compile=args.compile)
    if args.labels_json:
        cfg.labels_json = args.labels_json
    from plugin_bridge.models.registry import DEFAULT_CONFIG

    model_cfg = dataclasses.replace(DEFAULT_CONFIG, film_gamma=True) if args.film_gamma else DEFAULT_CONFIG
    res = train(cfg, model_cfg, log=lambda s: print(s, flush=True))
    print(f"stopped at step {res['step']}; best dev score (mean of family median SDRi) {res['best']:.2f} dB; {res['hours']:.2f} h trained")
    return 0


def cmd_benchmark(args) -> int:
    from plugin_bridge.training.benchmark import run_benchmark

    return run_benchmark(args)
