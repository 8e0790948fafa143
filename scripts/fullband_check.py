"""Full-band check: the engine's rule above the 16 kHz model's Nyquist frequency, measured at 44.1 kHz.

The embedded model sees 0-8 kHz; above that the engine applies, per frame, one gain derived from the mask
(``spectral.high_band_fill``: the mean mask magnitude over the model's top octave). The dev set is 16 kHz, so
it cannot see that rule. This script builds 2-source mixtures at 44.1 kHz (-5..+5 dB, the target's family
differs from the interferer's) from dev-split *real* sources (held-out groups; no instruments, which the corpus
renders at 16 kHz) read at their native rate (>= 44.1 kHz) from the corpus build's unpacked packages, separates
them with the label query through the engine, and prints the median SDRi full band for several rules (the
network runs once per mixture), with paired differences against the engine's rule.

    python scripts/fullband_check.py --corpus CORPUS2 [--scratch DIR] [--mixtures 150]

(``--scratch``: the corpus build's scratch folder, default ``<user cache>/corpus-scratch``.)
"""
import argparse, json, os, sys, collections
import numpy as np
from pedalboard.io import AudioFile
from plugin_bridge.audio_io import resample
from plugin_bridge.metrics import sdri
import plugin_bridge.engine.spectral as spectral
from plugin_bridge.engine.separator import Separator, Query, SeparationSettings
from plugin_bridge.models.registry import load_model

from plugin_bridge.corpus.build import default_scratch

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--corpus", required=True)
ap.add_argument("--scratch", default=str(default_scratch()))
ap.add_argument("--mixtures", type=int, default=150)
args = ap.parse_args()
X = os.path.join(args.scratch, "x")
RATE = 44100
SEC = 5.0
rows = [json.loads(l) for l in open(os.path.join(args.corpus, "manifest.jsonl"))]
ARCH = {"0ad-data": "usr/share/games/0ad/mods/public/public.zip", "ufoai-sound": "usr/share/games/ufoai/base/0snd.pk3",
        "openarena-data": "usr/share/games/openarena/baseoa/pak0.pk3", "warzone2100-data": "usr/share/games/warzone2100/base.wz"}


def disk(r):
    sp = r["source_path"]
    a = ARCH.get(r["package"])
    if a and sp.startswith(a + ":"):
        return os.path.join(X, r["package"], "zip", sp[len(a) + 1:])
    return os.path.join(X, r["package"], sp)


cands = {}
for r in rows:
    if r["split"] != "dev" or r["family"] == "instruments" or r["package"] == "plugin-bridge-procedural":
        continue
    p = disk(r)
    if os.path.exists(p):
        cands.setdefault(p, r)
print("dev source files on disk:", len(cands), file=sys.stderr)
srcs = []
for p, r in sorted(cands.items()):
    try:
        with AudioFile(p) as f:
            if f.samplerate < 44100:
                continue
            x = f.read(f.frames).mean(0)
            sr = f.samplerate
    except Exception:
        continue
    x = resample(x[None].astype(np.float32), int(sr), RATE)[0]
    n = int(SEC * RATE)
    if x.size < RATE:
        continue
    if x.size > n:  # loudest 5 s window
        e = np.convolve(x ** 2, np.ones(RATE // 10), "valid")[:: RATE // 10]
        k = int(np.argmax([e[i:i + 50].sum() for i in range(max(1, len(e) - 50))])) * (RATE // 10)
        x = x[k:k + n]
    x = np.pad(x, (0, n - x.size))
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(n, 1 / RATE)
    hi_share = spec[f > 8000].sum() / max(spec.sum(), 1e-12)
    if np.sqrt(np.mean(x ** 2)) < 1e-3:
        continue
    srcs.append((r["label"], r["family"], x.astype(np.float32), hi_share))
print("usable >= 44.1 kHz sources:", len(srcs), collections.Counter(s[1] for s in srcs), file=sys.stderr)

rng = np.random.default_rng(0)
mixes = []
for i in range(args.mixtures):
    a = srcs[rng.integers(len(srcs))]
    others = [s for s in srcs if s[1] != a[1]]
    b = others[rng.integers(len(others))]
    snr = rng.uniform(-5, 5)
    t = a[2] / np.sqrt(np.mean(a[2] ** 2))
    j = b[2] / np.sqrt(np.mean(b[2] ** 2)) * 10 ** (-snr / 20)
    g = 0.1 / np.sqrt(np.mean((t + j) ** 2))
    mixes.append((a[0], a[1], a[3], t * g, (t + j) * g, snr))

orig_fill = spectral.high_band_fill


def top_band(mask_mag, model):
    n = model.n_bins
    return mask_mag[..., n - 1 - (n - 1) // 8: n - 1].mean(axis=-1)


RULES = {
    "top octave mean (engine)": orig_fill,
    "top 1 kHz mean": top_band,
    "whole band mean": lambda m, model: m[..., : model.n_bins - 1].mean(axis=-1),
    "pass mixture (1)": lambda m, model: np.ones(m.shape[:-1], m.dtype),
    "drop (0)": lambda m, model: np.zeros(m.shape[:-1], m.dtype),
}
sep = Separator(load_model(None), threads=2)
res = collections.defaultdict(list)
for label, fam, hs, tgt, mix, snr in mixes:
    cond, neg = sep._conditions([Query(label.replace("_", " "))])
    memo = {}
    orig = sep.backend.logits

    def cached(mag, c):
        if "l" not in memo:
            memo["l"] = orig(mag, c)
        return memo["l"]

    sep.backend.logits = cached
    for name, rule in RULES.items():
        spectral.high_band_fill = rule
        est = sep.process_segment(mix[None], RATE, cond, neg, SeparationSettings())[0, 0]
        res[name].append(sdri(tgt, est, mix))
    sep.backend.logits = orig
    res["_fam"].append(fam)
    res["_hi"].append(hs)
spectral.high_band_fill = orig_fill
fam = np.array(res["_fam"], dtype=object); hi = np.array(res["_hi"])
print(f"{len(mixes)} mixtures at 44.1 kHz ({dict(collections.Counter(res['_fam']))} targets); share of the target's energy "
      f"above 8 kHz: median {np.median(hi) * 100:.1f} %, 90th percentile {np.percentile(hi, 90) * 100:.1f} %")
base = np.array(res["top octave mean (engine)"])
for name in RULES:
    v = np.array(res[name])
    d = v - base
    line = f"{name:26s} median SDRi {np.median(v):6.2f}  paired vs engine {d.mean():+.3f} +- {d.std(ddof=1) / np.sqrt(len(d)):.3f}"
    for f_ in sorted(set(fam)):
        line += f"  {f_[:5]} {np.median(v[fam == f_]):5.2f}"
    print(line)
