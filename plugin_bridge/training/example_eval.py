"""Measure example queries against text queries on dev mixtures with the shipped separator (the card's table).

    python -m plugin_bridge.training.example_eval --corpus corpus --n 150 --json out.json

Each dev mixture: a 3 s stretch of a target clip plus 1-2 interferer clips of other groups (the training
mixer's rules: active-RMS matching, target-to-interference ratio uniform in [-10, +10] dB, no augmentation).
The example reference is a *different* dev clip of the target's label (of another group where the label
has one), so the reference never contains the target audio.  Queries compared on the same mixtures:
``text`` (the label's name, as a user would type it), ``example`` (one reference clip through the audio
encoder), ``example3`` (three reference clips averaged), ``blend`` (example and text at weight 0.5).
Also prints the top-1 label retrieval of the references (the encoder's accuracy on dev clips).

Labels the shipped model never saw (issue 15 item 3; ``run_unknown``):

    python -m plugin_bridge.training.example_eval --corpus /work/corpus2 --n 0 \
        --labels-json models/training/labels_v2.json --unknown-labels door,hum,siren --json out.json

(``--labels-json``: the corpus's vocabulary; the labels the model knows come from its own file, see
``trained_labels``) compares, per label on its dev mixtures, the typed name, the nearest trained label's name, one example clip
and a query learned from 10 train clips.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import zlib

import numpy as np
import soundfile as sf
import torch

from plugin_bridge.corpus.procedural import PACKAGE as PROCEDURAL_PACKAGE
from plugin_bridge.engine.learn import LearnSettings, learn_query
from plugin_bridge.fileio import atomic_write_text
from plugin_bridge.metrics import rms, sdri
from plugin_bridge.models.encoders.audio import load_audio_encoder
from plugin_bridge.models.registry import load_label_vocabulary, load_model, model_vocabulary, vocabulary_name
from plugin_bridge.models.resunet import forward_padded
from plugin_bridge.training.audio_encoder import label_prototypes
from plugin_bridge.training.mixer import CONFLICTING_FAMILIES, RATE, Corpus, label_text
from plugin_bridge.training.train import LABELS_JSON


def _crop(audio: np.ndarray, n: int, rng) -> np.ndarray:
    """A random ``n``-sample stretch of an int16 clip as float (zero-padded at a random offset if shorter)."""
    x = audio.astype(np.float32) / 32768.0
    if x.size >= n:
        s = int(rng.integers(0, x.size - n + 1))
        return x[s:s + n].copy()
    out = np.zeros(n, np.float32)
    s = int(rng.integers(0, n - x.size + 1))
    out[s:s + x.size] = x
    return out


def _level(target: np.ndarray, noise: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """The training mixer's levels: target-to-interference ratio uniform in [-10, +10] dB (active RMS),
    mixture RMS uniform in [-35, -12] dBFS, peak kept under 0.99.  Returns float32 (mixture, target)."""
    rt, rn = rms(target), rms(noise)
    if rt > 0 and rn > 0:
        noise *= rt / rn * 10 ** (-rng.uniform(-10, 10) / 20)
    mix = target + noise
    g = 10 ** (rng.uniform(-35, -12) / 20) / max(rms(mix), 1e-9)
    mix, target = mix * g, target * g
    peak = float(np.max(np.abs(mix)))
    if peak > 0.99:
        mix, target = mix * 0.99 / peak, target * 0.99 / peak
    return mix.astype(np.float32), target.astype(np.float32)


def dev_mixtures(corpus: Corpus, n: int, seconds: float = 3.0, seed: int = 7):
    """Yield (label, mixture, target, reference clips) with references from other dev clips of the label."""
    rng = np.random.default_rng(seed)
    by = {l: cs for l, cs in corpus.by_label().items() if len(cs) >= 2}
    labels = sorted(by)
    fams: dict[str, list[str]] = {}
    for l in labels:
        fams.setdefault(corpus.labels[l]["family"], []).append(l)
    L = int(seconds * RATE)
    out = []
    fam_names = sorted(fams)
    for _ in range(n):
        lab = fams[fam_names[int(rng.integers(len(fam_names)))]]
        lab = lab[int(rng.integers(len(lab)))]
        cs = by[lab]
        t = cs[int(rng.integers(len(cs)))]
        others = [c for c in cs if c.group != t.group] or [c for c in cs if c.id != t.id]
        refs = [others[int(i)] for i in rng.choice(len(others), min(3, len(others)), replace=False)]
        target = _crop(t.audio, L, rng)
        groups = {corpus.labels[lab].get("group", lab)}
        noise = np.zeros(L, np.float32)
        for _ in range(int(rng.integers(1, 3))):
            cand = [l for l in labels if corpus.labels[l].get("group", l) not in groups]
            il = cand[int(rng.integers(len(cand)))]
            groups.add(corpus.labels[il].get("group", il))
            z = _crop(by[il][int(rng.integers(len(by[il])))].audio, L, rng)
            r = rms(z)
            if r > 0:
                noise += z / r
        mix, target = _level(target, noise, rng)
        out.append((lab, mix, target,
                    [r.audio.astype(np.float32) / 32768.0 for r in refs]))
    return out


def run(corpus_dir: str, n: int, seed: int = 7, weights: str | None = None) -> dict:
    model = load_model()
    enc = load_audio_encoder(weights)
    text = model.encoder()
    dev = Corpus.load(corpus_dir, "dev", LABELS_JSON)
    mixes = dev_mixtures(dev, n, seed=seed)
    labels = sorted(dev.labels)
    protos = label_prototypes(labels, dev.labels, text)
    rows, hits = [], []
    for lab, mix, tgt, refs in mixes:
        e = [enc.encode_wave(r[: RATE * 10]) for r in refs]
        hits.append(labels[int(np.argmax(protos @ e[0]))] == lab)
        tv = text.encode([label_text(lab)])[0]
        ex1 = e[0]
        ex3 = np.mean(e, axis=0)
        ex3 /= np.linalg.norm(ex3)
        bl = 0.5 * ex1 + 0.5 * tv
        bl /= np.linalg.norm(bl)
        conds = torch.from_numpy(np.stack([tv, ex1, ex3, bl]).astype(np.float32))
        with torch.inference_mode():
            est = forward_padded(model.net.eval(), torch.from_numpy(mix)[None, None].expand(4, 1, -1), conds)[:, 0]
        r = {"label": lab, "family": dev.labels[lab]["family"]}
        for k, y in zip(("text", "example", "example3", "blend"), est.numpy()):
            r[k] = sdri(tgt, y, mix)
        rows.append(r)
    res: dict = {"n": len(rows), "seed": seed, "retrieval_top1_reference": round(float(np.mean(hits)), 4),
                 "median_sdri": {}, "family_median_sdri": {}}
    for k in ("text", "example", "example3", "blend"):
        res["median_sdri"][k] = round(float(np.median([r[k] for r in rows])), 2)
        res["family_median_sdri"][k] = {f: round(float(np.median([r[k] for r in rows if r["family"] == f])), 2)
                                        for f in sorted({r["family"] for r in rows})}
    res["example_minus_text_median"] = round(float(np.median([r["example"] - r["text"] for r in rows])), 2)
    return res


def label_mixtures(corpus: Corpus, lab: str, n: int, rng, seconds: float = 3.0):
    """``n`` mixtures of ``corpus`` (one split) whose target is a stretch of a clip of ``lab``, as
    (mixture, target, reference clip).  Interferers (1-2) are picked as the training mixer picks them: a
    family uniformly, then a label of it, then a clip, never of a confusable group already in the mixture
    nor of a conflicting family (music vs instruments).  The reference is another clip of ``lab`` (of another
    source group where there is one), so it never contains the target audio."""
    by = corpus.by_label()
    info = corpus.labels
    fams: dict[str, list[str]] = {}
    for l in sorted(by):
        fams.setdefault(info[l]["family"], []).append(l)
    L = int(seconds * RATE)
    cs = by[lab]
    out = []
    for _ in range(n):
        t = cs[int(rng.integers(len(cs)))]
        others = [c for c in cs if c.group != t.group] or [c for c in cs if c.id != t.id]
        ref = others[int(rng.integers(len(others)))]
        target = _crop(t.audio, L, rng)
        groups, in_fams = {info[lab].get("group", lab)}, {info[lab]["family"]}
        noise = np.zeros(L, np.float32)
        for _ in range(int(rng.integers(1, 3))):
            ok = lambda l: (info[l].get("group", l) not in groups  # noqa: E731
                            and not CONFLICTING_FAMILIES.get(info[l]["family"], set()) & in_fams)
            fs = [f for f in sorted(fams) if any(ok(l) for l in fams[f])]
            labs = [l for l in fams[fs[int(rng.integers(len(fs)))]] if ok(l)]
            il = labs[int(rng.integers(len(labs)))]
            groups.add(info[il].get("group", il))
            in_fams.add(info[il]["family"])
            z = _crop(by[il][int(rng.integers(len(by[il])))].audio, L, rng)
            r = rms(z)
            if r > 0:
                noise += z / r
        mix, target = _level(target, noise, rng)
        out.append((mix, target, ref.audio.astype(np.float32) / 32768.0))
    return out


def _interferer_clips(corpus: Corpus, lab: str, n: int, rng) -> list[np.ndarray]:
    """``n`` clips (read from disk) of labels that may be mixed with ``lab``: family uniformly, then label."""
    by = corpus.by_label()
    info = corpus.labels
    ok = [l for l in sorted(by) if info[l].get("group", l) != info[lab].get("group", lab)
          and not CONFLICTING_FAMILIES.get(info[l]["family"], set()) & {info[lab]["family"]}]
    fams: dict[str, list[str]] = {}
    for l in ok:
        fams.setdefault(info[l]["family"], []).append(l)
    fs = sorted(fams)
    out = []
    for _ in range(n):
        labs = fams[fs[int(rng.integers(len(fs)))]]
        cs = by[labs[int(rng.integers(len(labs)))]]
        out.append(sf.read(cs[int(rng.integers(len(cs)))].path, dtype="float32", always_2d=True)[0][:, 0])
    return out


def trained_labels(model, trained_labels_json: str | None = None) -> tuple[list[str], str]:
    """The labels ``model`` was trained on and where that list comes from: ``trained_labels_json`` when
    given, else the vocabulary the model file records (labels.json for the shipped v1 model)."""
    if trained_labels_json:
        return sorted(load_label_vocabulary(trained_labels_json)["labels"]), trained_labels_json
    vocab = model_vocabulary(model)
    if vocab is None:
        raise ValueError(f"{model.name} records no trained vocabulary; pass --trained-labels-json")
    return sorted(vocab["labels"]), vocabulary_name(model)


def run_unknown(corpus_dir: str, labels_json: str, unknown: list[str], n_mix: int = 8, n_clips: int = 10,
                steps: int = 100, n_interferers: int = 60, seed: int = 7, log=print, model_spec: str | None = None,
                trained_labels_json: str | None = None) -> dict:
    """Issue 15 item 3 on labels the separator ``model_spec`` (default: the shipped one) and the audio
    encoder never saw (not in the vocabulary the model was trained on, ``trained_labels``).  For each label, on ``n_mix`` dev mixtures (``label_mixtures``), the
    SDRi of: the label's name as typed (``text_name``); the name of the nearest *trained* label by text
    embedding similarity (``text_nearest``); one example, another dev clip of the label through the audio
    encoder (``example``); the mean example embedding of the ``n_clips`` train clips (``examples_mean``, the
    start of learning); a query learned from those train clips with the ``learn`` machinery (separator
    frozen, ``steps`` steps, mixed with ``n_interferers`` train clips of other labels) (``learned``)."""
    model = load_model(model_spec)
    trained, source = trained_labels(model, trained_labels_json)
    known = [l for l in unknown if l in trained]
    if known:
        which = "the shipped model" if model_spec is None else "the model"
        raise ValueError(f"{', '.join(known)}: {which} was trained on these labels ({source}), so they are "
                         "not unknown to it")
    dev = Corpus.load(corpus_dir, "dev", labels_json)
    train = Corpus.load(corpus_dir, "train", labels_json, load_audio=False)  # only the clips used are read
    dby, tby = dev.by_label(), train.by_label()
    short = [l for l in unknown if len(dby.get(l, [])) < 2 or len(tby.get(l, [])) < n_clips]
    if short:
        raise ValueError(f"{', '.join(short)}: need at least 2 dev and {n_clips} train clips in {corpus_dir}")
    enc = load_audio_encoder()
    text = model.encoder()
    tv = text.encode([label_text(l) for l in trained])
    names = ("text_name", "text_nearest", "example", "examples_mean", "learned")
    out: dict = {}
    for lab in unknown:
        t0, c0 = time.monotonic(), time.process_time()
        rng = np.random.default_rng([seed, zlib.crc32(lab.encode())])
        ms = label_mixtures(dev, lab, n_mix, rng)
        name_v = text.encode([label_text(lab)])[0]
        sims = tv @ name_v
        k = int(np.argmax(sims))
        pick = rng.choice(len(tby[lab]), n_clips, replace=False)
        clips = [sf.read(tby[lab][int(i)].path, dtype="float32", always_2d=True)[0][:, 0] for i in pick]
        inter = _interferer_clips(train, lab, n_interferers, rng)
        res = learn_query(model, clips, inter, label_text(lab), LearnSettings(steps=steps, seed=seed))
        fixed = [name_v, tv[k], None, res.start_vector, res.vector]
        rows: dict[str, list[float]] = {n: [] for n in names}
        for mix, tgt, ref in ms:
            fixed[2] = enc.encode_wave(ref[: RATE * 10])
            c = torch.from_numpy(np.stack(fixed).astype(np.float32))
            with torch.inference_mode():
                est = forward_padded(model.net.eval(), torch.from_numpy(mix)[None, None].expand(len(c), 1, -1),
                                     c)[:, 0]
            for n, y in zip(names, est.numpy()):
                rows[n].append(round(float(sdri(tgt, y, mix)), 2))
        procedural = all(c.package == PROCEDURAL_PACKAGE for c in dby[lab] + tby[lab])
        out[lab] = {"source": "procedural" if procedural else "real", "nearest_trained_label": trained[k],
                    "nearest_similarity": round(float(sims[k]), 3), "n_mixtures": len(ms),
                    "dev_clips": len(dby[lab]), "learn_clips": n_clips, "learn_steps": steps,
                    "learn_start": res.start_kind, "learn_val_sdri_start": round(res.val_sdri_start, 2),
                    "learn_val_sdri": round(res.val_sdri, 2),
                    **{f"sdri_{n}": round(float(np.median(v)), 2) for n, v in rows.items()},
                    "per_mixture": rows, "wall_seconds": round(time.monotonic() - t0, 1),
                    "cpu_seconds": round(time.process_time() - c0, 1)}
        if log:
            log(json.dumps({lab: {k: v for k, v in out[lab].items() if k != "per_mixture"}}))
    summary = {f"median_over_labels_{n}": round(float(np.median([out[l][f"sdri_{n}"] for l in out])), 2)
               for n in names}
    summary["learned_minus_text_nearest_per_label"] = {l: round(out[l]["sdri_learned"] - out[l]["sdri_text_nearest"], 2)
                                                       for l in out}
    return {"corpus": corpus_dir, "labels_json": labels_json, "trained_vocabulary": source, "seed": seed, "labels": out, **summary,
            "wall_seconds": round(sum(v["wall_seconds"] for v in out.values()), 1),
            "cpu_seconds": round(sum(v["cpu_seconds"] for v in out.values()), 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--weights", default=None, help="audio encoder (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--labels-json", default=LABELS_JSON,
                    help="label vocabulary of --corpus for --unknown-labels (default: the trained labels.json)")
    ap.add_argument("--model", default=None, help="separator for --unknown-labels (default: the shipped one)")
    ap.add_argument("--trained-labels-json", default=None,
                    help="the vocabulary the model was trained on, for --unknown-labels (default: the one its "
                         "file records; labels.json for a file that records none)")
    ap.add_argument("--unknown-labels", default="",
                    help="comma-separated labels the shipped model never saw: compare text, example and learned "
                         "queries on their dev mixtures (issue 15 item 3)")
    ap.add_argument("--mixtures", type=int, default=8, help="dev mixtures per unknown label (default 8)")
    ap.add_argument("--learn-clips", type=int, default=10, help="train clips per learned query (default 10)")
    ap.add_argument("--learn-steps", type=int, default=LearnSettings().steps,
                    help="learn steps (default: plugin-bridge learn's default)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    res = run(a.corpus, a.n, a.seed, a.weights) if a.n else {}
    if a.unknown_labels:
        res["unknown"] = run_unknown(a.corpus, a.labels_json, [l for l in a.unknown_labels.split(",") if l],
                                     n_mix=a.mixtures, n_clips=a.learn_clips, steps=a.learn_steps, seed=a.seed,
                                     log=lambda s: print(s, file=sys.stderr), model_spec=a.model,
                                     trained_labels_json=a.trained_labels_json)
    text = json.dumps(res, indent=1)
    print(text)
    if a.json:
        atomic_write_text(a.json, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
