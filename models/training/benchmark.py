"""``plugin-bridge benchmark --set DIR``: score a separator on a folder of mixtures.

DIR/manifest.csv has columns ``mixture,target,query`` and optionally ``paraphrase,label,family``
(paths relative to DIR; AudioSep's benchmark layout, one row per mixture).  For every row we compute
SDR, SDRi and SI-SDR (AudioSep's definitions, ``metrics.py``) of

* the model's stem for ``query`` (and, if given, for ``paraphrase``), run through the real engine;
* the unprocessed mixture (SDRi = 0 by definition; its SDR is the input SNR);
* the oracle ideal ratio mask |S| / (|S| + |N|) on the model-equivalent STFT grid — the ceiling for a
  magnitude mask,

and report medians/means per label, per family and overall, plus the model/oracle SDRi ratio.

``--make-dev CORPUS`` first writes an in-distribution dev set (held-out groups of the training packages)
in that layout.
"""
from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import torch

from plugin_bridge.errors import ConfigError
from plugin_bridge.models.training.metrics import sdr, si_sdr

__all__ = ["make_dev_set", "oracle_irm", "run_benchmark", "score_set"]


def make_dev_set(corpus: str, out_dir: str, n: int = 300, seconds: float = 5.0, seed: int = 11,
                 labels_json: str | None = None) -> str:
    import soundfile as sf

    from plugin_bridge.models.training.mixer import Corpus, Mixer, MixerConfig, label_text, query_texts
    from plugin_bridge.models.training.train import LABELS_JSON

    labels_json = labels_json or LABELS_JSON
    dev = Corpus.load(corpus, "dev", labels_json)
    mixer = Mixer(dev, MixerConfig(seconds=seconds, absent_fraction=0.0, augment=False), seed=seed)
    rng = np.random.default_rng(seed + 1)
    os.makedirs(os.path.join(out_dir, "audio"), exist_ok=True)
    rows = []
    for i in range(n):
        e = mixer.example()
        texts = [t for t in query_texts(e.label, dev.labels[e.label]) if t != label_text(e.label)]
        para = texts[rng.integers(len(texts))] if texts else e.label
        m, t = f"audio/mixture-{i:04d}.wav", f"audio/target-{i:04d}.wav"
        sf.write(os.path.join(out_dir, m), e.mixture, 16000, subtype="FLOAT")
        sf.write(os.path.join(out_dir, t), e.target, 16000, subtype="FLOAT")
        rows.append({"mixture": m, "target": t, "query": label_text(e.label), "paraphrase": para, "label": e.label,
                     "family": dev.labels[e.label]["family"], "snr_db": f"{e.snr_db:.2f}"})
    tmp = os.path.join(out_dir, "manifest.csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, os.path.join(out_dir, "manifest.csv"))
    return out_dir


def oracle_irm(mixture: np.ndarray, target: np.ndarray, rate: int, model_grid) -> np.ndarray:
    """Apply the ideal ratio mask |S|/(|S|+|N|) on the native-rate equivalent of the model's grid."""
    from plugin_bridge.engine.spectral import istft, native_grid, stft

    g = native_grid(model_grid, rate)
    L = mixture.shape[-1]
    pad = lambda x: np.pad(x, (0, g.n_fft)).astype(np.float32)
    X = stft(torch.from_numpy(pad(mixture)), g)
    S = stft(torch.from_numpy(pad(target)), g)
    N = X - S
    m = S.abs() / torch.clamp(S.abs() + N.abs(), min=1e-12)
    return istft(X * m, g, L + g.n_fft)[:L].numpy()


def _read_mono(path: str) -> tuple[np.ndarray, int]:
    from plugin_bridge.engine.reader import read_all

    x, sr = read_all(path)
    return x.mean(axis=0), sr


def score_set(set_dir: str, separator, progress=None) -> list[dict]:
    from plugin_bridge.engine.separator import Query

    man = os.path.join(set_dir, "manifest.csv")
    if not os.path.exists(man):
        raise ConfigError(f"{man} not found: a benchmark set needs manifest.csv with mixture,target,query columns")
    with open(man, newline="") as f:
        rows = list(csv.DictReader(f))
    for col in ("mixture", "target", "query"):
        if rows and col not in rows[0]:
            raise ConfigError(f"{man}: missing column '{col}'")
    out = []
    for i, r in enumerate(rows):
        mix, sr = _read_mono(os.path.join(set_dir, r["mixture"]))
        tgt, sr2 = _read_mono(os.path.join(set_dir, r["target"]))
        if sr != sr2 or mix.shape != tgt.shape:
            raise ConfigError(f"row {i}: mixture and target differ in rate or length")
        queries = [Query(r["query"])]
        if r.get("paraphrase"):
            queries.append(Query(r["paraphrase"]))
        rec = {"label": r.get("label") or r["query"], "family": r.get("family", ""),
               "sdr_mix": sdr(tgt, mix), "si_sdr_mix": si_sdr(tgt, mix)}
        for q, key in zip(queries, ("", "_para")):
            # one query at a time: a paraphrase is a separate request, not a competing stem
            stems, _ = separator.separate_array(mix[None], sr, [q])
            est = stems[0, 0]
            rec["sdr" + key] = sdr(tgt, est)
            rec["sdri" + key] = rec["sdr" + key] - rec["sdr_mix"]
            rec["si_sdr" + key] = si_sdr(tgt, est)
        irm = oracle_irm(mix, tgt, sr, separator.model_grid)
        rec["sdr_irm"] = sdr(tgt, irm)
        rec["sdri_irm"] = rec["sdr_irm"] - rec["sdr_mix"]
        rec["si_sdr_irm"] = si_sdr(tgt, irm)
        out.append(rec)
        if progress:
            progress(i + 1, len(rows))
    return out


def summarise(rows: list[dict]) -> dict:
    def agg(rs):
        d = {"n": len(rs)}
        for k in ("sdr", "sdri", "si_sdr", "sdri_para", "sdr_mix", "sdri_irm", "si_sdr_irm"):
            v = [r[k] for r in rs if k in r]
            if v:
                d[k + "_median"] = float(np.median(v))
                d[k + "_mean"] = float(np.mean(v))
        if d.get("sdri_irm_median", 0) > 0:
            d["oracle_ratio"] = d["sdri_median"] / d["sdri_irm_median"]
        return d

    fam, lab = {}, {}
    for r in rows:
        fam.setdefault(r["family"], []).append(r)
        lab.setdefault(r["label"], []).append(r)
    return {"overall": agg(rows), "families": {k: agg(v) for k, v in sorted(fam.items())},
            "labels": {k: agg(v) for k, v in sorted(lab.items())}}


def format_table(summary: dict) -> str:
    lines = [f"{'group':<28}{'n':>5}{'SDRi':>8}{'SDRi(para)':>12}{'SI-SDR':>8}{'SDR mix':>9}"
             f"{'SDRi IRM':>10}{'of IRM':>8}"]

    def row(name, d):
        lines.append(f"{name:<28}{d['n']:>5}{d.get('sdri_median', float('nan')):>8.2f}"
                     f"{d.get('sdri_para_median', float('nan')):>12.2f}{d.get('si_sdr_median', float('nan')):>8.2f}"
                     f"{d.get('sdr_mix_median', float('nan')):>9.2f}{d.get('sdri_irm_median', float('nan')):>10.2f}"
                     f"{100 * d.get('oracle_ratio', float('nan')):>7.0f}%")

    row("OVERALL (median)", summary["overall"])
    for k, d in summary["families"].items():
        row(f"family: {k}", d)
    for k, d in summary["labels"].items():
        row(f"  {k}", d)
    return "\n".join(lines)


def run_benchmark(args) -> int:
    from plugin_bridge.engine.separator import Separator
    from plugin_bridge.models.registry import load_model

    if args.make_dev:
        make_dev_set(args.make_dev, args.set_dir, n=args.n)
        print(f"dev set written to {args.set_dir}", file=sys.stderr)
    model = load_model(args.model)
    if model.is_random:
        print("WARNING: scoring a RANDOM-weight model (no trained embedded model installed)", file=sys.stderr)
    sep = Separator(model, backend=args.backend, device="auto")
    rows = score_set(args.set_dir, sep, progress=lambda i, n: print(f"\r  {i}/{n}", end="", file=sys.stderr))
    print(file=sys.stderr)
    summary = summarise(rows)
    print(f"model: {model.name}\nset: {args.set_dir}  (medians in dB; SDR as AudioSep, SNR-style)")
    print(format_table(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": model.name, "summary": summary, "rows": rows}, f, indent=1)
    return 0
