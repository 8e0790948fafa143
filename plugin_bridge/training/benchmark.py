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

from plugin_bridge.audio_io import read_all
from plugin_bridge.engine.separator import Query, Separator
from plugin_bridge.engine.spectral import istft, native_grid, stft
from plugin_bridge.errors import ConfigError
from plugin_bridge.metrics import sdr, si_sdr
from plugin_bridge.models.registry import load_model
from plugin_bridge.models.resunet import forward_padded
from plugin_bridge.training.mixer import Corpus, Mixer, MixerConfig, label_text, query_texts
from plugin_bridge.training.train import LABELS_JSON

__all__ = ["make_dev_set", "oracle_irm", "run_benchmark", "score_set"]


#: The dev set's target-to-interference ratios: the range the independent held-out benchmark uses (training
#: draws from a wider -10..+10 dB).
DEV_SNR_DB = (-5.0, 5.0)


def make_dev_set(corpus: str, out_dir: str, per_family: int = 200, three_source: int = 100,
                 per_umbrella: int = 50, seconds: float = 5.0, seed: int = 11,
                 labels_json: str | None = None) -> str:
    """Write a balanced in-distribution dev set from CORPUS's dev split (held-out groups of the training
    packages): ``per_family`` two-source mixtures for each family's targets, ``three_source`` mixtures with
    two interferers (target family drawn at random), and ``per_umbrella`` mixtures per umbrella query
    ("effects", "ambience"), all at -5..+5 dB.  Sized so that a 0.5 dB difference of medians is real
    (about +-0.25 dB of sampling error per family at 200 mixtures)."""
    import soundfile as sf


    labels_json = labels_json or LABELS_JSON
    dev = Corpus.load(corpus, "dev", labels_json)
    mixer = Mixer(dev, MixerConfig(seconds=seconds, absent_fraction=0.0, augment=False, snr_db=DEV_SNR_DB), seed=seed)
    rng = np.random.default_rng(seed + 1)
    fams = sorted(mixer.families)
    plan = [(f, 1, None, "2-source") for f in fams for _ in range(per_family)]
    plan += [(fams[rng.integers(len(fams))], 2, None, "3-source") for _ in range(three_source)]
    plan += [(None, 1, u, "umbrella") for u in sorted(dev.umbrellas) for _ in range(per_umbrella)]
    os.makedirs(os.path.join(out_dir, "audio"), exist_ok=True)
    rows = []
    for i, (fam, k, umb, kind) in enumerate(plan):
        e = mixer.example(family=fam, n_interferers=k, umbrella=umb)
        info = dev.umbrellas[e.label] if e.umbrella else dev.labels[e.label]
        texts = [t for t in query_texts(e.label, info) if t != label_text(e.label)]
        para = texts[rng.integers(len(texts))] if texts else e.label
        m, t = f"audio/mixture-{i:04d}.wav", f"audio/target-{i:04d}.wav"
        sf.write(os.path.join(out_dir, m), e.mixture, 16000, subtype="FLOAT")
        sf.write(os.path.join(out_dir, t), e.target, 16000, subtype="FLOAT")
        rows.append({"mixture": m, "target": t, "query": label_text(e.label), "paraphrase": para, "label": e.label,
                     "family": "umbrella" if e.umbrella else dev.labels[e.label]["family"],
                     "snr_db": f"{e.snr_db:.2f}", "sources": str(len(e.labels_in_mix)), "kind": kind})
    tmp = os.path.join(out_dir, "manifest.csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, os.path.join(out_dir, "manifest.csv"))
    return out_dir


def best_gain(mixture: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The mixture scaled by the constant gain that minimises the error to the target (a = <s,x>/<x,x>).

    The floor a separator must beat: on a mixture dominated by its target, simply turning the mixture
    down already scores a positive SDRi (about +2.8 dB at 0 dB input SNR under this SDR)."""
    x = np.asarray(mixture, np.float64)
    a = float(np.dot(target, x) / max(float(np.dot(x, x)), 1e-20))
    return (a * x).astype(np.float32)


def oracle_irm(mixture: np.ndarray, target: np.ndarray, rate: int, model_grid) -> np.ndarray:
    """Apply the ideal ratio mask |S|/(|S|+|N|) on the native-rate equivalent of the model's grid."""

    g = native_grid(model_grid, rate)
    L = mixture.shape[-1]
    pad = lambda x: np.pad(x, (0, g.n_fft)).astype(np.float32)
    X = stft(pad(mixture), g)
    S = stft(pad(target), g)
    N = X - S
    m = np.abs(S) / np.maximum(np.abs(S) + np.abs(N), 1e-12)
    return np.asarray(istft(X * m, g, L + g.n_fft))[:L]


def _read_mono(path: str) -> tuple[np.ndarray, int]:
    x, sr = read_all(path)
    return x.mean(axis=0), sr


def _read_manifest(set_dir: str) -> list[dict]:
    man = os.path.join(set_dir, "manifest.csv")
    if not os.path.exists(man):
        raise ConfigError(f"{man} not found: a benchmark set needs manifest.csv with mixture,target,query columns")
    with open(man, newline="") as f:
        rows = list(csv.DictReader(f))
    for col in ("mixture", "target", "query"):
        if rows and col not in rows[0]:
            raise ConfigError(f"{man}: missing column '{col}'")
    return rows


def _record(r: dict, mix: np.ndarray, tgt: np.ndarray, est: np.ndarray) -> dict:
    """One row's scores for the label query's stem ``est``: SDR, SDRi, SI-SDR and the best-gain floor."""
    rec = {"label": r.get("label") or r["query"], "family": r.get("family", ""), "sdr_mix": sdr(tgt, mix),
           "sdr": sdr(tgt, est), "si_sdr": si_sdr(tgt, est)}
    rec["sdri"] = rec["sdr"] - rec["sdr_mix"]
    rec["sdri_gain"] = sdr(tgt, best_gain(mix, tgt)) - rec["sdr_mix"]
    rec["below_gain"] = bool(rec["sdri"] < rec["sdri_gain"])
    if r.get("kind"):
        rec["kind"] = r["kind"]
    return rec


def score_set(set_dir: str, separator, progress=None) -> list[dict]:
    rows = _read_manifest(set_dir)
    out = []
    for i, r in enumerate(rows):
        mix, sr = _read_mono(os.path.join(set_dir, r["mixture"]))
        tgt, sr2 = _read_mono(os.path.join(set_dir, r["target"]))
        if sr != sr2 or mix.shape != tgt.shape:
            raise ConfigError(f"row {i}: mixture and target differ in rate or length")
        # one query at a time: a paraphrase is a separate request, not a competing stem
        stems, _ = separator.separate_array(mix[None], sr, [Query(r["query"])])
        rec = _record(r, mix, tgt, stems[0, 0])
        rec["si_sdr_mix"] = si_sdr(tgt, mix)
        if r.get("paraphrase"):
            est = separator.separate_array(mix[None], sr, [Query(r["paraphrase"])])[0][0, 0]
            rec["sdr_para"] = sdr(tgt, est)
            rec["sdri_para"] = rec["sdr_para"] - rec["sdr_mix"]
            rec["si_sdr_para"] = si_sdr(tgt, est)
        irm = oracle_irm(mix, tgt, sr, separator.model_grid)
        rec["sdr_irm"] = sdr(tgt, irm)
        rec["sdri_irm"] = rec["sdr_irm"] - rec["sdr_mix"]
        rec["si_sdr_irm"] = si_sdr(tgt, irm)
        out.append(rec)
        if progress:
            progress(i + 1, len(rows))
    return out


def score_set_direct(set_dir: str, model, subset: int | None = None, batch: int = 8, progress=None) -> list[dict]:
    """Score the network itself on a model-rate dev set (no engine, no paraphrase, no oracle): batched
    forward passes, for comparing training recipes quickly on the *same* mixtures (paired differences
    need far fewer mixtures than absolute figures).  ``subset`` keeps that many rows spread evenly over
    the manifest, so every family and mixture kind stays represented."""

    rows = _read_manifest(set_dir)
    if subset and subset < len(rows):
        rows = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, subset).round().astype(int)]
    net, enc = model.net.eval(), model.encoder()
    out = []
    for i in range(0, len(rows), batch):
        part = rows[i:i + batch]
        mixes, tgts = [], []
        for r in part:
            mix, sr = _read_mono(os.path.join(set_dir, r["mixture"]))
            tgt, _ = _read_mono(os.path.join(set_dir, r["target"]))
            if sr != model.cfg.sample_rate:
                raise ConfigError(f"{r['mixture']}: {sr} Hz; the direct scorer needs the model's rate "
                                  f"({model.cfg.sample_rate} Hz)")
            mixes.append(mix.astype(np.float32))
            tgts.append(tgt)
        L = max(len(m) for m in mixes)
        x = torch.from_numpy(np.stack([np.pad(m, (0, L - len(m))) for m in mixes]))[:, None]
        cond = torch.from_numpy(enc.encode([r["query"] for r in part]))
        with torch.inference_mode():
            est = forward_padded(net, x, cond)[:, 0].numpy()
        out += [_record(r, mix, tgt, y[:len(mix)]) for r, mix, tgt, y in zip(part, mixes, tgts, est)]
        if progress:
            progress(len(out), len(rows))
    return out


def summarise(rows: list[dict]) -> dict:
    def agg(rs):
        d = {"n": len(rs)}
        for k in ("sdr", "sdri", "si_sdr", "sdri_para", "sdr_mix", "sdri_irm", "si_sdr_irm", "sdri_gain"):
            v = [r[k] for r in rs if k in r]
            if v:
                d[k + "_median"] = float(np.median(v))
                d[k + "_mean"] = float(np.mean(v))
        below = [r["below_gain"] for r in rs if "below_gain" in r]
        if below:
            d["below_gain_share"] = float(np.mean(below))
        if d.get("sdri_irm_median", 0) > 0:
            d["oracle_ratio"] = d["sdri_median"] / d["sdri_irm_median"]
        return d

    fam, lab, kind = {}, {}, {}
    for r in rows:
        fam.setdefault(r["family"], []).append(r)
        lab.setdefault(r["label"], []).append(r)
        if r.get("kind"):
            kind.setdefault(r["kind"], []).append(r)
    labels = {k: agg(v) for k, v in sorted(lab.items())}
    out = {"overall": agg(rows), "families": {k: agg(v) for k, v in sorted(fam.items())}, "labels": labels,
           "kinds": {k: agg(v) for k, v in sorted(kind.items())}}
    out["overall"]["labels_below_gain_floor"] = sorted(
        k for k, d in labels.items() if "sdri_gain_median" in d and d["sdri_median"] <= d["sdri_gain_median"])
    return out


def format_table(summary: dict) -> str:
    nan = float("nan")
    gain = "sdri_gain_median" in summary["overall"]  # sets scored before the floor was measured lack it
    lines = [f"{'group':<28}{'n':>5}{'SDRi':>8}{'SDRi(para)':>12}{'SI-SDR':>8}{'SDR mix':>9}"
             f"{'SDRi IRM':>10}{'of IRM':>8}" + (f"{'gain floor':>11}{'below':>7}" if gain else "")]

    def row(name, d):
        lines.append(f"{name:<28}{d['n']:>5}{d.get('sdri_median', nan):>8.2f}"
                     f"{d.get('sdri_para_median', nan):>12.2f}{d.get('si_sdr_median', nan):>8.2f}"
                     f"{d.get('sdr_mix_median', nan):>9.2f}{d.get('sdri_irm_median', nan):>10.2f}"
                     f"{100 * d.get('oracle_ratio', nan):>7.0f}%" +
                     (f"{d.get('sdri_gain_median', nan):>11.2f}{100 * d.get('below_gain_share', nan):>6.0f}%"
                      if gain else ""))

    row("OVERALL (median)", summary["overall"])
    for k, d in summary["families"].items():
        row(f"family: {k}", d)
    for k, d in summary.get("kinds", {}).items():
        row(f"mixtures: {k}", d)
    for k, d in summary["labels"].items():
        row(f"  {k}", d)
    bad = summary["overall"].get("labels_below_gain_floor")
    if gain and bad is not None:
        lines.append(f"labels whose median SDRi is not above the best-gain floor: {', '.join(bad) or 'none'}")
    return "\n".join(lines)


def paired_compare(old: list[dict], new: list[dict]) -> list[dict]:
    """Two models scored on the same mixtures (``benchmark --json`` rows, in the same order) -> one record per
    group (overall, each family, each umbrella query): n, both medians, the mean of the per-mixture SDRi
    differences (new - old) with its standard error, and both shares below the best-gain floor.

    Raises ConfigError when the rows are not the same mixtures (labels or mixture SDRs differ)."""
    if len(old) != len(new) or any(a["label"] != b["label"] or abs(a["sdr_mix"] - b["sdr_mix"]) > 1e-6
                                   for a, b in zip(old, new)):
        raise ConfigError("the two benchmark files were not scored on the same mixtures (rebuild neither set: "
                          "score both models on one --set)")
    groups = [("overall", list(range(len(old))))]
    groups += [(f"family: {f}", [i for i, r in enumerate(old) if r["family"] == f])
               for f in sorted({r["family"] for r in old})]
    groups += [(f"umbrella: {u}", [i for i, r in enumerate(old) if r["family"] == "umbrella" and r["label"] == u])
               for u in sorted({r["label"] for r in old if r["family"] == "umbrella"})]
    out = []
    for name, idx in groups:
        d = np.array([new[i]["sdri"] - old[i]["sdri"] for i in idx], np.float64)
        rec = {"group": name, "n": len(idx), "old_median": float(np.median([old[i]["sdri"] for i in idx])),
               "new_median": float(np.median([new[i]["sdri"] for i in idx])), "paired_mean": float(d.mean()),
               "paired_se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")}
        for tag, rows in (("old", old), ("new", new)):
            below = [rows[i]["below_gain"] for i in idx if "below_gain" in rows[i]]
            rec[f"{tag}_below_floor"] = float(np.mean(below)) if below else float("nan")
        out.append(rec)
    return out


def format_paired(recs: list[dict]) -> str:
    lines = [f"{'group':<28}{'n':>5}{'old':>8}{'new':>8}{'paired mean +- s.e.':>22}{'below floor old -> new':>24}"]
    for r in recs:
        lines.append(f"{r['group']:<28}{r['n']:>5}{r['old_median']:>8.2f}{r['new_median']:>8.2f}"
                     f"{r['paired_mean']:>+14.2f} +- {r['paired_se']:.2f}"
                     f"{100 * r['old_below_floor']:>15.1f} % -> {100 * r['new_below_floor']:.1f} %")
    return "\n".join(lines)


def run_compare(old_path: str, new_path: str) -> int:
    docs = []
    for p in (old_path, new_path):
        try:
            with open(p, encoding="utf-8") as f:
                docs.append(json.load(f))
            docs[-1]["rows"][0]["sdri"]
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise ConfigError(f"{p}: not a 'plugin-bridge benchmark --json' file with rows ({exc})") from None
    recs = paired_compare(docs[0]["rows"], docs[1]["rows"])
    print(f"old: {docs[0].get('model', old_path)} ({old_path})\nnew: {docs[1].get('model', new_path)} ({new_path})\n"
          "median SDRi (dB) and the paired difference new - old on the same mixtures")
    print(format_paired(recs))
    para = [float(np.median([r["sdri_para"] for r in d["rows"] if "sdri_para" in r] or [np.nan])) for d in docs]
    print(f"paraphrased queries, median SDRi: {para[0]:.2f} -> {para[1]:.2f}")
    return 0


def run_benchmark(args) -> int:
    if getattr(args, "compare", None):
        return run_compare(*args.compare)
    if not args.set_dir:
        raise ConfigError("benchmark: --set is required (or --compare OLD.json NEW.json)")
    if args.make_dev:
        make_dev_set(args.make_dev, args.set_dir, per_family=args.per_family, three_source=args.three_source,
                     per_umbrella=args.per_umbrella, labels_json=getattr(args, "labels_json", None))
        print(f"dev set written to {args.set_dir}", file=sys.stderr)
    model = load_model(args.model)
    if model.is_random:
        print("WARNING: scoring a RANDOM-weight model (no trained embedded model installed)", file=sys.stderr)
    progress = lambda i, n: print(f"\r  {i}/{n}", end="", file=sys.stderr)  # noqa: E731
    if getattr(args, "direct", False):
        rows = score_set_direct(args.set_dir, model, subset=args.subset, progress=progress)
    else:
        sep = Separator(model, backend=args.backend, device="auto")
        rows = score_set(args.set_dir, sep, progress=progress)
    print(file=sys.stderr)
    summary = summarise(rows)
    print(f"model: {model.name}\nset: {args.set_dir}  (medians in dB; SDR as AudioSep, SNR-style)")
    print(format_table(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": model.name, "summary": summary, "rows": rows}, f, indent=1)
    return 0
