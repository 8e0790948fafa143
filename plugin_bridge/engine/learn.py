"""Teach a sound: fit a new query vector for a frozen separator from a few of the user's clips.

``learn_query`` works at the model's rate on mono audio:
1. the clips (3-30) are split: about a quarter (at least one) is held out for validation;
2. each step makes ``batch`` mixtures of a random stretch of a training clip with one or two interferers
   (the user's background clips, else corpus clips, else the clips that ship with plugin-bridge and
   synthesised noise), at a random target-to-interference ratio of -10..+10 dB and a random level, as the
   separator was trained;
3. the loss is the separator's own training loss (level-normalised L1 on the waveform) of the masked
   mixture against the clean clip; only the query vector gets gradients (Adam), every network weight stays
   frozen (eval mode);
4. the start vector is the audio-example embedding of the training clips when the audio encoder fits the
   model's query space, else the text embedding of the name;
5. validation SDRi on fixed mixtures of the held-out clips is measured for the start vector and the result.
Cancel: ``cancel()`` returning true (or Ctrl-C) stops between steps with ``JobCancelled``; nothing is saved
here (saving is the caller's, after a complete run).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from plugin_bridge.engine.examples import encoder_for
from plugin_bridge.audio_io import READ_EXTENSIONS, StreamReader, resample
from plugin_bridge.errors import AudioInputError, ConfigError, JobCancelled
from plugin_bridge.learned import LearnedQuery, model_hash
from plugin_bridge.metrics import rms, sdri
from plugin_bridge.models.encoders.audio import MIN_EXAMPLE_SECONDS, SILENCE_DBFS
from plugin_bridge.models.losses import level_normalised_l1
from plugin_bridge.models.resunet import forward_padded

__all__ = ["LearnSettings", "LearnResult", "learn_query", "load_clips", "interferers", "default_interferers",
           "MIN_CLIPS", "MAX_CLIPS"]

MIN_CLIPS, MAX_CLIPS = 3, 30


@dataclass
class LearnSettings:
    steps: int = 100
    batch: int = 6
    seconds: float = 2.0
    lr: float = 0.02
    snr_db: tuple[float, float] = (-10.0, 10.0)
    level_db: tuple[float, float] = (-35.0, -12.0)
    val_mixtures: int = 24
    seed: int = 0
    val_every: int = 10          # validate the query every N steps; the best validated one is returned


@dataclass
class LearnResult:
    vector: np.ndarray
    start_vector: np.ndarray
    start_kind: str                 # "example" | "text"
    val_sdri_start: float
    val_sdri: float
    steps: int
    seconds: float
    n_train: int
    n_val: int
    interferers: str
    history: list[float] = field(default_factory=list)
    best_step: int = 0              # the step whose query is returned (0: the start query stayed the best)
    val_history: list[tuple[int, float]] = field(default_factory=list)   # (step, validation SDRi)

    def learned(self, name: str, model) -> LearnedQuery:
        """The result as a learned query (@NAME) of ``model``, with the facts the store and the app show."""
        return LearnedQuery(name, self.vector, "learned", model_hash(model), model.name, model.encoder_id,
                            facts={"clips": self.n_train + self.n_val, "train_clips": self.n_train,
                                   "val_clips": self.n_val, "steps": self.steps, "best_step": self.best_step,
                                   "interferers": self.interferers, "start": self.start_kind,
                                   "val_sdri_start_db": round(self.val_sdri_start, 2),
                                   "val_sdri_db": round(self.val_sdri, 2)})


def load_clips(folder_or_files, rate: int, what: str = "clips") -> list[np.ndarray]:
    """Audio files (a folder's or a list) -> mono float32 arrays at ``rate``; silent/short ones refused."""

    if isinstance(folder_or_files, str):
        if not os.path.isdir(folder_or_files):
            raise AudioInputError(f"{folder_or_files}: not a folder of {what}")
        paths = sorted(os.path.join(folder_or_files, n) for n in os.listdir(folder_or_files)
                       if n.lower().endswith(READ_EXTENSIONS) and not n.startswith("."))
        if not paths:
            raise AudioInputError(f"{folder_or_files}: holds no audio files ({', '.join(READ_EXTENSIONS)})")
    else:
        paths = list(folder_or_files)
    out = []
    for p in paths:
        r = StreamReader(p)
        try:
            x = r.get(0, r.frames).mean(axis=0, keepdims=True)
            sr = r.sample_rate
        finally:
            r.close()
        if x.shape[1] < MIN_EXAMPLE_SECONDS * sr:
            raise AudioInputError(f"{p}: {x.shape[1] / sr:.3f} s is too short; each clip needs at least "
                                  f"{MIN_EXAMPLE_SECONDS:g} s")
        lvl = 10 * math.log10(max(float(np.mean(np.asarray(x, np.float64) ** 2)), 1e-20))
        if lvl < SILENCE_DBFS:
            raise AudioInputError(f"{p}: is silent ({lvl:.0f} dBFS RMS)")
        out.append(resample(np.asarray(x, np.float32), sr, rate)[0].astype(np.float32))
    return out


def interferers(rate: int, background: str | None = None, corpus: str | None = None) -> tuple[list[np.ndarray], str]:
    """What the sound is mixed with while it is learned, and how to say so: the clips in the folder
    ``background`` (sounds that must not be taken) when given, else ``default_interferers`` of ``corpus``
    (default: the folder in ``$PLUGIN_BRIDGE_CORPUS``).  Returns (clips, description); the one place the
    choice is made, for the ``learn`` command and the learn job alike."""
    if background:
        return load_clips(background, rate, "background clips"), f"your background clips ({background})"
    return default_interferers(rate, corpus or os.environ.get("PLUGIN_BRIDGE_CORPUS") or None)


def default_interferers(rate: int, corpus: str | None = None, n_corpus: int = 60, seed: int = 0,
                        exclude_label: str | None = None) -> tuple[list[np.ndarray], str]:
    """Corpus clips (``corpus``: a folder with manifest.jsonl) when given, else the shipped demo stems plus
    synthesised noise.  Returns (clips, description)."""
    rng = np.random.default_rng(seed)
    if corpus:
        import json

        man = os.path.join(corpus, "manifest.jsonl")
        if not os.path.isfile(man):
            raise ConfigError(f"{corpus}: not a corpus folder (no manifest.jsonl)")
        with open(man, encoding="utf-8") as f:
            rows = [json.loads(l) for l in f if l.strip()]
        rows = [r for r in rows if r.get("split") == "train" and r.get("label") != exclude_label]
        if rows:
            pick = [rows[i] for i in rng.choice(len(rows), min(n_corpus, len(rows)), replace=False)]
            return load_clips([os.path.join(corpus, r["path"]) for r in pick], rate), \
                f"{len(pick)} corpus clips from {corpus}"

    clips = []
    demo = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "demo")
    for n in ("dialogue.flac", "music.flac", "fx.flac"):
        p = os.path.join(demo, n)
        if os.path.exists(p):
            r = StreamReader(p)
            try:
                clips.append(resample(r.get(0, r.frames).mean(axis=0, keepdims=True), r.sample_rate, rate)[0])
            finally:
                r.close()
    n = rate * 4
    white = rng.standard_normal(n)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.arange(spec.size), 1)
    pink = np.fft.irfft(spec / np.sqrt(f), n)
    brown = np.fft.irfft(spec / f, n)
    clips += [(c / np.max(np.abs(c))).astype(np.float32) * 0.5 for c in (white, pink, brown)]
    return [c.astype(np.float32) for c in clips], "the shipped demo stems and synthesised noise"


def _crop(x: np.ndarray, n: int, rng) -> np.ndarray:
    if x.size >= n:
        s = int(rng.integers(0, x.size - n + 1))
        return x[s:s + n]
    out = np.zeros(n, np.float32)
    s = int(rng.integers(0, n - x.size + 1))
    out[s:s + x.size] = x
    return out


def make_mixtures(targets: list[np.ndarray], interferers: list[np.ndarray], n: int, length: int, rng,
                  s: LearnSettings) -> tuple[np.ndarray, np.ndarray]:
    mixes, tgts = [], []
    for _ in range(n):
        t = _crop(targets[int(rng.integers(len(targets)))], length, rng).astype(np.float64)
        noise = np.zeros(length)
        for _ in range(int(rng.integers(1, 3))):
            z = _crop(interferers[int(rng.integers(len(interferers)))], length, rng).astype(np.float64)
            r = rms(z)
            if r > 0:
                noise += z / r
        rt, rn = rms(t), rms(noise)
        if rt > 0 and rn > 0:
            noise *= rt / rn * 10 ** (-rng.uniform(*s.snr_db) / 20)
        mix = t + noise
        g = 10 ** (rng.uniform(*s.level_db) / 20) / max(rms(mix), 1e-9)
        mix, t = mix * g, t * g
        peak = float(np.max(np.abs(mix)))
        if peak > 0.99:
            mix, t = mix * 0.99 / peak, t * 0.99 / peak
        mixes.append(mix)
        tgts.append(t)
    return np.asarray(mixes, np.float32), np.asarray(tgts, np.float32)


def _val_sdri(net, cond: torch.Tensor, mixes: np.ndarray, tgts: np.ndarray) -> float:
    with torch.inference_mode():
        est = forward_padded(net, torch.from_numpy(mixes)[:, None], cond[None].expand(len(mixes), -1))[:, 0].numpy()
    return float(np.median([sdri(t, e, m) for t, e, m in zip(tgts, est, mixes)]))


def learn_query(model, clips: list[np.ndarray], interferers: list[np.ndarray], name: str,
                settings: LearnSettings = LearnSettings(), progress: Callable[[int, int, float], None] | None = None,
                cancel: Callable[[], bool] | None = None, interferer_desc: str = "",
                start_vector: np.ndarray | None = None) -> LearnResult:
    """Fit a query vector for ``model`` (frozen) that extracts the sound of ``clips`` (model-rate mono)."""

    if len(clips) < MIN_CLIPS:
        raise ConfigError(f"teaching a sound needs at least {MIN_CLIPS} clips of it (got {len(clips)}); "
                          "one is kept aside to check the result")
    if len(clips) > MAX_CLIPS:
        raise ConfigError(f"at most {MAX_CLIPS} clips (got {len(clips)}); pick the clearest ones")
    if not interferers:
        raise ConfigError("no interferer clips to mix the sound with")
    t0 = time.monotonic()
    rate = model.cfg.sample_rate
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(clips))
    n_val = max(1, len(clips) // 4)
    val = [clips[i] for i in order[:n_val]]
    train = [clips[i] for i in order[n_val:]]
    length = int(settings.seconds * rate)
    vrng = np.random.default_rng(settings.seed + 1)
    vmix, vtgt = make_mixtures(val, interferers, settings.val_mixtures, length, vrng, settings)

    kind = "given"
    if start_vector is None:
        try:
            enc = encoder_for(model)
            v0 = np.mean([enc.encode_wave(c) for c in train], axis=0)
            start_vector, kind = v0 / max(np.linalg.norm(v0), 1e-9), "example"
        except Exception:  # noqa: BLE001 - no encoder for this model: start from the name's text embedding
            start_vector, kind = model.encoder().encode([name])[0], "text"
    net = model.net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    v0 = torch.tensor(np.asarray(start_vector, np.float32))
    val_start = _val_sdri(net, v0, vmix, vtgt)
    v = torch.nn.Parameter(v0.clone())
    opt = torch.optim.Adam([v], lr=settings.lr)
    hist = []
    best, val_hist = (val_start, 0, v0.clone()), [(0, val_start)]
    for step in range(settings.steps):
        if cancel is not None and cancel():
            raise JobCancelled("learning cancelled; nothing was saved")
        mix, tgt = make_mixtures(train, interferers, settings.batch, length, rng, settings)
        mix_t, tgt_t = torch.from_numpy(mix)[:, None], torch.from_numpy(tgt)[:, None]
        for g in opt.param_groups:
            g["lr"] = settings.lr * 0.5 * (1 + math.cos(math.pi * step / settings.steps))
        est = forward_padded(net, mix_t, v[None].expand(settings.batch, -1))
        loss = level_normalised_l1(est, tgt_t, mix_t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append(float(loss.detach()))
        if (step + 1) % max(1, settings.val_every) == 0 or step + 1 == settings.steps:
            # keep the best validated query, not the last: learning can overfit the few training clips
            score = _val_sdri(net, v.detach(), vmix, vtgt)
            val_hist.append((step + 1, score))
            if score > best[0]:
                best = (score, step + 1, v.detach().clone())
        if progress:
            progress(step + 1, settings.steps, float(np.mean(hist[-10:])))
    val_best, best_step, vec = best
    return LearnResult(vec.numpy().astype(np.float32), np.asarray(start_vector, np.float32), kind, val_start,
                       val_best, settings.steps, time.monotonic() - t0, len(train), len(val), interferer_desc, hist,
                       best_step, val_hist)
