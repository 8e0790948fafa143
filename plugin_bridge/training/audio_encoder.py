"""Train the audio example encoder (``models/encoders/audio.py``) on the corpus, on CPU.

    python -m plugin_bridge.training.audio_encoder --corpus corpus \
        --out models/weights/audio_encoder.safetensors --minutes 18 --threads 1 [--holdout a,b]

1. Features: every clip of the split is read once (16 kHz FLAC), at most ``--max-seconds`` of it (a random
   stretch), turned into the encoder's level-normalised log-mel and kept in memory as float16.
2. Targets: for each label, the MiniLM embeddings of all its query texts (name, synonyms, captions of
   ``labels.json``, as the separator was trained with); the label's prototype is their normalised mean.
3. Steps: random 2 s crops; half of them get an interferer of another label mixed in the log-power domain
   at -20..-3 dB; light time/frequency masking.  Loss = InfoNCE of the embedding against all training
   label prototypes (temperature 0.05) + (1 - cosine to its own prototype), so the output both retrieves
   the right label and lands where the separator expects that label's text query.
4. Stops at ``--minutes`` of wall time; saves (atomic) the weights with the training facts in metadata.

``evaluate_retrieval`` gives top-1 label accuracy on held-out clips (the card's numbers).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from plugin_bridge.models.encoders.audio import AudioEncoderConfig, AudioEncoderNet, save_audio_encoder
from plugin_bridge.fileio import atomic_write_text
from plugin_bridge.models.encoders.minilm import MiniLMEncoder
from plugin_bridge.training.mixer import query_texts
from plugin_bridge.training.train import LABELS_JSON

CROP_FRAMES = 63  # 2 s at hop 512 / 16 kHz


def label_prototypes(labels: list[str], vocab: dict, text_encoder) -> np.ndarray:
    """(L, dim): normalised mean of the MiniLM embeddings of each label's query texts."""
    out = []
    for lab in labels:
        e = text_encoder.encode(query_texts(lab, vocab[lab]))
        m = e.mean(axis=0)
        out.append(m / max(np.linalg.norm(m), 1e-9))
    return np.stack(out).astype(np.float32)


def read_manifest(corpus: str, split: str, vocab: dict) -> list[dict]:
    rows = []
    with open(os.path.join(corpus, "manifest.jsonl"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                e = json.loads(line)
                if e.get("split") == split and e["label"] in vocab:
                    rows.append(e)
    return rows


def extract_features(net: AudioEncoderNet, paths: list[str], max_seconds: float, seed: int = 0,
                     log=print, cache: str | None = None) -> list[np.ndarray]:
    """One float16 (T, n_mels) log-mel per file (a stretch of ``max_seconds`` of longer ones, chosen by a
    seed made of ``seed`` and the file name, so a rerun picks the same).  ``cache``: a folder keeping one
    .npy per file (reruns, or extracting while a corpus is still being written)."""
    import hashlib

    import soundfile as sf

    feats = []
    t0 = time.monotonic()
    n_max = int(max_seconds * net.cfg.sample_rate)
    for i, p in enumerate(paths):
        key = hashlib.sha256(f"{seed}:{max_seconds}:{os.path.basename(p)}".encode()).hexdigest()
        cp = os.path.join(cache, key[:2], key + ".npy") if cache else None
        if cp and os.path.exists(cp):
            feats.append(np.load(cp, allow_pickle=False))
            continue
        x, sr = sf.read(p, dtype="float32", always_2d=True)
        if sr != net.cfg.sample_rate:
            raise ValueError(f"{p}: corpus clips must be {net.cfg.sample_rate} Hz, got {sr}")
        x = x.mean(axis=1)
        if x.size > n_max:
            s = int(np.random.default_rng(int(key[:12], 16)).integers(0, x.size - n_max + 1))
            x = x[s:s + n_max]
        if x.size < net.cfg.n_fft:
            x = np.pad(x, (0, net.cfg.n_fft - x.size))
        with torch.inference_mode():
            f = net.logmel(torch.from_numpy(np.ascontiguousarray(x))[None])[0].numpy().astype(np.float16)
        feats.append(f)
        if cp:
            os.makedirs(os.path.dirname(cp), exist_ok=True)
            np.save(cp + ".tmp.npy", f, allow_pickle=False)
            os.replace(cp + ".tmp.npy", cp)
        if log and (i + 1) % 2000 == 0:
            log(f"  features {i + 1}/{len(paths)}  {time.monotonic() - t0:.0f} s")
    return feats


def _crop(m: np.ndarray, n: int, rng) -> np.ndarray:
    if m.shape[0] >= n:
        s = int(rng.integers(0, m.shape[0] - n + 1))
        return m[s:s + n].astype(np.float32)
    out = np.full((n, m.shape[1]), float(m.min()), np.float32)
    s = int(rng.integers(0, n - m.shape[0] + 1))
    out[s:s + m.shape[0]] = m
    return out


def make_batch(feats, y, by_label, n: int, rng, mix_prob: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    labs = sorted(by_label)
    # label-balanced: every label as often as any other (speech has 40x more clips than most labels)
    idx = [by_label[labs[int(k)]][int(rng.integers(len(by_label[labs[int(k)]])))]
           for k in rng.integers(len(labs), size=n)]
    xs = []
    for i in idx:
        m = _crop(feats[i], CROP_FRAMES, rng)
        if rng.random() < mix_prob:
            other = [l for l in by_label if l != y[i]]
            lab = other[rng.integers(len(other))]
            j = by_label[lab][rng.integers(len(by_label[lab]))]
            g = rng.uniform(-20, -3) * math.log(10) / 10
            m = np.logaddexp(m, _crop(feats[j], CROP_FRAMES, rng) + g)
        if rng.random() < 0.5:  # time / frequency masking
            t = int(rng.integers(0, CROP_FRAMES - 10))
            m[t:t + int(rng.integers(3, 10))] = m.min()
            f = int(rng.integers(0, m.shape[1] - 8))
            m[:, f:f + int(rng.integers(2, 8))] = m.min()
        xs.append(m - m.mean())
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.asarray([y[i] for i in idx]))


def train_encoder(feats: list[np.ndarray], y: list[int], protos: np.ndarray, minutes: float, seed: int = 0,
                  batch: int = 48, lr: float = 2e-3, cfg: AudioEncoderConfig = AudioEncoderConfig(),
                  log=print, max_steps: int | None = None) -> tuple[AudioEncoderNet, dict]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = AudioEncoderNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    P = torch.from_numpy(protos)
    by_label: dict[int, list[int]] = {}
    for i, lab in enumerate(y):
        by_label.setdefault(lab, []).append(i)
    t0 = time.monotonic()
    budget = minutes * 60
    step, hist = 0, []
    net.train()
    while True:
        el = time.monotonic() - t0
        if el >= budget or (max_steps is not None and step >= max_steps):
            break
        frac = el / budget if max_steps is None else step / max_steps
        for g in opt.param_groups:  # short warm-up, then cosine to 5 %
            g["lr"] = lr * min(1.0, (step + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        x, t = make_batch(feats, y, by_label, batch, rng)
        z = net.embed_logmel(x)
        logits = z @ P.T / 0.05
        loss = F.cross_entropy(logits, t) + (1 - (z * P[t]).sum(-1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append((float(loss.detach()), float((logits.argmax(1) == t).float().mean())))
        step += 1
        if log and step % 100 == 0:
            l, a = np.mean(hist[-100:], axis=0)
            log(f"  step {step}  loss {l:.3f}  train top-1 {a:.3f}  {time.monotonic() - t0:.0f} s")
    net.eval()
    return net, {"steps": step, "seconds": round(time.monotonic() - t0, 1), "batch": batch, "lr": lr,
                 "final_loss": float(np.mean([h[0] for h in hist[-100:]])) if hist else float("nan")}


def embed_features(net: AudioEncoderNet, feats: list[np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return np.stack([net.embed_logmel(torch.from_numpy(m.astype(np.float32))[None])[0].numpy() for m in feats])


def evaluate_retrieval(net: AudioEncoderNet, feats: list[np.ndarray], y: list[int], protos: np.ndarray,
                       groups: list[str] | None = None) -> dict:
    """Top-1 / top-3 label accuracy of each clip's embedding against the label prototypes; ``balanced``:
    the mean over labels of each label's top-1 (so a label with many clips does not dominate);
    ``groups`` (e.g. each label's family) adds the balanced top-1 per group."""
    z = embed_features(net, feats)
    sims = z @ protos.T
    order = np.argsort(-sims, axis=1)
    y = np.asarray(y)
    hit = order[:, 0] == y
    per_label = {int(l): float(np.mean(hit[y == l])) for l in np.unique(y)}
    out = {"n": int(len(y)), "top1": round(float(np.mean(hit)), 4),
           "top3": round(float(np.mean([yy in o[:3] for yy, o in zip(y, order)])), 4),
           "balanced_top1": round(float(np.mean(list(per_label.values()))), 4),
           "chance": round(1.0 / protos.shape[0], 4)}
    if groups is not None:
        g = {}
        for l, acc in per_label.items():
            g.setdefault(groups[l], []).append(acc)
        out["balanced_top1_by_group"] = {k: round(float(np.mean(v)), 4) for k, v in sorted(g.items())}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--labels", default=LABELS_JSON)
    ap.add_argument("--minutes", type=float, default=18.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=8.0)
    ap.add_argument("--max-clips", type=int, default=None, help="use at most this many training clips")
    ap.add_argument("--holdout", default="", help="comma-separated labels left out of training")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--feature-cache", default=None, help="folder for per-clip features (reused by reruns)")
    ap.add_argument("--report", default=None, help="also write the training facts and dev retrieval as JSON")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    with open(a.labels, encoding="utf-8") as f:
        vocab = json.load(f)["labels"]
    holdout = [h for h in a.holdout.split(",") if h]
    train_rows = [r for r in read_manifest(a.corpus, "train", vocab) if r["label"] not in holdout]
    dev_rows = read_manifest(a.corpus, "dev", vocab)
    rng = np.random.default_rng(a.seed)
    if a.max_clips and len(train_rows) > a.max_clips:
        train_rows = [train_rows[i] for i in sorted(rng.choice(len(train_rows), a.max_clips, replace=False))]
    train_labels = sorted({r["label"] for r in train_rows})
    all_labels = sorted({r["label"] for r in train_rows + dev_rows})
    text = MiniLMEncoder()
    protos_all = label_prototypes(all_labels, vocab, text)
    pos = {l: i for i, l in enumerate(all_labels)}
    protos_train = protos_all[[pos[l] for l in train_labels]]
    net0 = AudioEncoderNet()
    print(f"features: {len(train_rows)} train clips ({len(train_labels)} labels), {len(dev_rows)} dev clips",
          file=sys.stderr)
    t0 = time.monotonic()
    ftr = extract_features(net0, [os.path.join(a.corpus, r["path"]) for r in train_rows], a.max_seconds, a.seed,
                           log=lambda s: print(s, file=sys.stderr), cache=a.feature_cache)
    fdev = extract_features(net0, [os.path.join(a.corpus, r["path"]) for r in dev_rows], a.max_seconds, a.seed,
                            log=None, cache=a.feature_cache)
    feat_s = time.monotonic() - t0
    ytr = [train_labels.index(r["label"]) for r in train_rows]
    net, facts = train_encoder(ftr, ytr, protos_train, a.minutes, a.seed, log=lambda s: print(s, file=sys.stderr))
    ydev = [pos[r["label"]] for r in dev_rows]
    fam = [vocab[l]["family"] for l in all_labels]
    ret = evaluate_retrieval(net, fdev, ydev, protos_all, fam)
    known = [i for i, r in enumerate(dev_rows) if r["label"] not in holdout]
    ret_known = evaluate_retrieval(net, [fdev[i] for i in known], [ydev[i] for i in known], protos_all, fam)
    facts.update({"train_clips": len(train_rows), "train_labels": len(train_labels), "holdout": holdout,
                  "feature_seconds": round(feat_s, 1), "threads": a.threads, "max_seconds": a.max_seconds,
                  "dev_retrieval_all_labels": ret, "dev_retrieval_trained_labels": ret_known})
    save_audio_encoder(net, a.out, training=json.dumps(facts, sort_keys=True))
    print(json.dumps(facts, indent=1))
    if a.report:
        atomic_write_text(a.report, json.dumps(facts, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
