"""``plugin-bridge learn`` (teach a sound) and ``plugin-bridge learned`` (list / delete named queries)."""
from __future__ import annotations

import sys
import time

from plugin_bridge.errors import ConfigError, JobCancelled


def register(sub) -> None:
    p = sub.add_parser("learn", help="teach a sound from a few clips; use it as -q \"@NAME\"",
                       description="Fit a new query for the separator (its weights stay frozen) from 3-30 clips "
                                   "of a sound, on mixtures with other sounds, and save it with your presets as "
                                   "@NAME. Ctrl-C cancels and writes nothing.")
    p.add_argument("name", help='name of the sound, e.g. "generator hum"; used as -q "@generator hum"')
    p.add_argument("clips", help="folder with 3-30 clips of the sound (wav, flac, aiff, mp3, ogg)")
    p.add_argument("--background", default=None, metavar="DIR",
                   help="folder of clips that must not be taken (mixed in as interferers instead of corpus clips)")
    p.add_argument("--corpus", default=None, metavar="DIR",
                   help="training corpus (manifest.jsonl) for interferers ($PLUGIN_BRIDGE_CORPUS); without one, "
                        "the shipped demo stems and synthesised noise are used")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps (default 100: 2-5 min on one CPU core)")
    p.add_argument("--seconds", type=float, default=2.0, help="mixture length per example (default 2 s)")
    p.add_argument("--model", default=None, help="separator model (default: the embedded one)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an existing learned query of that name")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_learn)

    q = sub.add_parser("learned", help="list or delete learned / example queries (@NAME)")
    q.add_argument("action", choices=["list", "delete"])
    q.add_argument("name", nargs="?")
    q.set_defaults(func=cmd_learned)


def cmd_learn(args) -> int:
    import torch

    from plugin_bridge.engine.learn import LearnSettings, interferers, learn_query, load_clips
    from plugin_bridge.models.registry import load_model
    from plugin_bridge.learned import LearnedStore

    if args.steps < 1 or args.steps > 5000:
        raise ConfigError("--steps must be between 1 and 5000")
    if not (0.5 <= args.seconds <= 10):
        raise ConfigError("--seconds must be between 0.5 and 10")
    store = LearnedStore()
    name = " ".join(args.name.strip().lstrip("@").split())
    if not name:
        raise ConfigError("give the sound a name, e.g. \"generator hum\"")
    if not args.overwrite and name.lower() in (n.lower() for n in store.names()):
        raise ConfigError(f"a learned query named '@{name}' already exists; use --overwrite to replace it")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    if model.is_random:
        raise ConfigError("no trained separator is installed, so there is nothing to teach")
    rate = model.cfg.sample_rate
    clips = load_clips(args.clips, rate)
    inter, desc = interferers(rate, args.background, args.corpus)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr))
    log(f"teaching '@{name}' from {len(clips)} clips, mixed with {desc}; model {model.name}")
    t0 = time.monotonic()

    def progress(step, total, loss):
        if args.quiet:
            return
        el = time.monotonic() - t0
        eta = el / step * (total - step)
        sys.stderr.write(f"\r  step {step}/{total}  loss {loss:.4f}  ETA {eta:4.0f}s")
        if step == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    try:
        res = learn_query(model, clips, inter, name, LearnSettings(steps=args.steps, seconds=args.seconds),
                          progress=progress, interferer_desc=desc)
        lq = res.learned(name, model)
        path = store.save(lq, overwrite=args.overwrite)
    except (KeyboardInterrupt, JobCancelled):
        print("\ncancelled: nothing was written", file=sys.stderr)
        return 130
    print(f"validation on {res.n_val} held-out clip(s): median SDRi {res.val_sdri:.2f} dB "
          f"(start from the {res.start_kind} query: {res.val_sdri_start:.2f} dB; kept the query of step "
          f"{res.best_step}/{res.steps}, the best validated), {res.seconds:.0f} s")
    print(f"saved '@{name}': {path}")
    print(f"use it: plugin-bridge separate MIX.wav -q \"@{name}\"")
    return 0


def cmd_learned(args) -> int:
    from plugin_bridge.learned import LearnedStore

    store = LearnedStore()
    if args.action == "delete":
        if not args.name:
            raise ConfigError("give the name to delete")
        store.delete(args.name)
        print(f"deleted '@{args.name.lstrip('@')}'")
        return 0
    entries = store.list()
    if not entries:
        print(f"no learned queries yet ({store.root})")
    for e in entries:
        if e.query is None:
            print(f"! {e.name}: {e.error}")
        else:
            f = e.query.facts
            extra = f"  val SDRi {f['val_sdri_db']} dB" if "val_sdri_db" in f else ""
            print(f"@{e.name}  [{e.query.kind}]  model {e.query.model_hash or e.query.space}{extra}")
    return 0
