"""On-the-fly training mixtures from the corpus (``plugin-bridge corpus build`` output).

Each example: a target clip of one label plus 1-2 interferers from *other* labels of *other* confusable
groups, loudness-matched (RMS over the active part) and mixed at a random target-to-interference ratio
in [-10, +10] dB, after augmentation (gain, EQ, reverb, small speed change, all through Pedalboard).
A fraction of examples ask for a label that is absent from the mixture, with a silent target, so the
model learns to return nothing rather than guess.  Queries are drawn from the label's name, synonyms
and captions (``models/training/labels.json``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from plugin_bridge.metrics import rms

__all__ = ["Corpus", "Clip", "MixerConfig", "Mixer", "Example"]

RATE = 16000


@dataclass
class Clip:
    id: str
    label: str
    family: str
    group: str
    package: str
    path: str
    audio: np.ndarray | None = None  # int16 mono at RATE


#: Families that never meet in one mixture: a full music mix contains instruments, so "piano" over a
#: game soundtrack (or "music" over a piano) would have no single right answer.
CONFLICTING_FAMILIES = {"music": {"instruments"}, "instruments": {"music"}}


@dataclass
class Corpus:
    root: str
    clips: list[Clip]
    labels: dict  # label -> {family, group, synonyms, captions}
    #: umbrella queries (labels.json "umbrellas"): name -> {members | members_family, synonyms, captions};
    #: only those with at least two member labels in this corpus
    umbrellas: dict = field(default_factory=dict)

    @classmethod
    def load(cls, root: str, split: str, labels_json: str, load_audio: bool = True,
             reserved_packages: tuple[str, ...] = ()) -> "Corpus":
        with open(labels_json, encoding="utf-8") as f:
            doc = json.load(f)
        vocab = doc["labels"]
        clips = []
        with open(os.path.join(root, "manifest.jsonl"), encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                e = json.loads(line)
                if e.get("split") != split or e["label"] not in vocab:
                    continue
                if e.get("package") in reserved_packages:
                    raise ValueError(f"manifest lists a reserved package: {e['package']} ({e['path']})")
                clips.append(Clip(e["id"], e["label"], e["family"], e.get("group", e["id"]),
                                  e.get("package", ""), os.path.join(root, e["path"])))
        if load_audio:
            import soundfile as sf

            for c in clips:
                x, sr = sf.read(c.path, dtype="int16", always_2d=True)
                if sr != RATE:
                    raise ValueError(f"{c.path}: corpus clips must be {RATE} Hz, got {sr}")
                c.audio = x[:, 0].copy()
        present = {c.label for c in clips}
        labels = {k: v for k, v in vocab.items() if k in present}
        umbrellas = {}
        for name, info in (doc.get("umbrellas") or {}).items():
            members = umbrella_members(info, labels)
            if len(members) >= 2:
                umbrellas[name] = dict(info, members=members)
        return cls(root, clips, labels, umbrellas)

    def by_label(self) -> dict[str, list[Clip]]:
        out: dict[str, list[Clip]] = {}
        for c in self.clips:
            out.setdefault(c.label, []).append(c)
        return out


@dataclass
class MixerConfig:
    seconds: float = 3.0
    snr_db: tuple[float, float] = (-10.0, 10.0)
    n_interferers: tuple[int, int] = (1, 2)
    absent_fraction: float = 0.1
    level_db: tuple[float, float] = (-35.0, -12.0)  # mixture RMS
    augment: bool = True
    reverb_prob: float = 0.25
    eq_prob: float = 0.4
    speed_prob: float = 0.3
    speed_range: tuple[float, float] = (0.94, 1.06)
    #: Share of *targets* per family (e.g. {"instruments": 0.5, "environmental": 0.3, "speech": 0.2});
    #: None = every family equally (speech, one label, then gets a third of all targets).  Interferers
    #: are always drawn with equal family shares.
    family_weights: dict[str, float] | None = None
    #: share of examples whose query is an umbrella ("effects", "ambience"): the target is the sum of 1-3
    #: of its member labels' clips, the interferers come from outside it
    umbrella_fraction: float = 0.0


@dataclass
class Example:
    mixture: np.ndarray
    target: np.ndarray
    label: str
    query: str
    labels_in_mix: list[str] = field(default_factory=list)
    snr_db: float = 0.0
    umbrella: bool = False  # ``label`` names an umbrella query (Corpus.umbrellas), not a corpus label


def umbrella_members(info: dict, labels: dict) -> list[str]:
    """The labels an umbrella query stands for: its explicit ``members`` plus every label of its
    ``members_family`` (a list or one name), restricted to ``labels``."""
    fams = info.get("members_family") or []
    fams = [fams] if isinstance(fams, str) else list(fams)
    out = [m for m in info.get("members", []) if m in labels]
    out += [k for k, v in sorted(labels.items()) if v.get("family") in fams and k not in out]
    return out


def label_text(label: str) -> str:
    """Label keys use underscores (``acoustic_guitar``); people type spaces."""
    return label.replace("_", " ")


def query_texts(label: str, info: dict) -> list[str]:
    texts = [label_text(label), *info.get("synonyms", []), *info.get("captions", [])]
    return list(dict.fromkeys(t for t in texts if t))


class Mixer:
    def __init__(self, corpus: Corpus, cfg: MixerConfig = MixerConfig(), seed: int = 0):
        self.corpus = corpus
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        self.by_label = corpus.by_label()
        self.labels = sorted(self.by_label)
        if len(self.labels) < 2:
            raise ValueError("the corpus needs at least two labels to make mixtures")
        self.families: dict[str, list[str]] = {}
        for lab in self.labels:
            self.families.setdefault(corpus.labels[lab]["family"], []).append(lab)
        self.n = int(round(cfg.seconds * RATE))

    def group_of(self, label: str) -> str:
        return self.corpus.labels[label].get("group", label)

    def _allowed(self, label: str, exclude_groups: set[str], exclude_labels: set[str],
                 in_mix_families: set[str]) -> bool:
        fam = self.corpus.labels[label]["family"]
        return (self.group_of(label) not in exclude_groups and label not in exclude_labels
                and not (CONFLICTING_FAMILIES.get(fam, set()) & in_mix_families))

    def _pick_label(self, exclude_groups: set[str], weights: dict[str, float] | None = None,
                    exclude_labels: set[str] = frozenset(), in_mix_families: set[str] = frozenset(),
                    family: str | None = None) -> str:
        ok = lambda l: self._allowed(l, exclude_groups, exclude_labels, in_mix_families)  # noqa: E731
        fams = [f for f, labs in self.families.items() if any(ok(l) for l in labs)]
        if family is not None:
            if family not in fams:
                raise ValueError(f"no label of family {family!r} can be picked here (families: {sorted(fams)})")
            fams, weights = [family], None
        if not fams:
            raise ValueError("no label is left to pick as an interferer")
        if weights:
            w = np.array([max(0.0, float(weights.get(f, 0.0))) for f in fams])
            if w.sum() <= 0:
                raise ValueError(f"family_weights {weights} give no weight to any family of the corpus ({fams})")
            k = int(np.searchsorted(np.cumsum(w / w.sum()), self.rng.random(), side="right"))
            fam = fams[min(k, len(fams) - 1)]
        else:
            fam = fams[self.rng.integers(len(fams))]
        labs = [l for l in self.families[fam] if ok(l)]
        return labs[self.rng.integers(len(labs))]

    def _crop(self, clip: Clip) -> np.ndarray:
        x = clip.audio.astype(np.float32) / 32768.0
        n = self.n
        if x.size >= n:
            s = int(self.rng.integers(0, x.size - n + 1))
            return x[s:s + n].copy()
        out = np.zeros(n, np.float32)
        s = int(self.rng.integers(0, n - x.size + 1))
        out[s:s + x.size] = x
        return out

    def _augment(self, x: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        if not cfg.augment:
            return x
        import pedalboard as pb

        rng = self.rng
        if rng.random() < cfg.speed_prob:
            from pedalboard.io import StreamResampler

            r = rng.uniform(*cfg.speed_range)
            rs = StreamResampler(RATE * r, RATE, 1)
            y = np.concatenate([rs.process(x[None]), rs.process()], axis=1)[0]
            x = np.pad(y, (0, max(0, self.n - y.size)))[: self.n].astype(np.float32)
        fx = []
        if rng.random() < cfg.eq_prob:
            fx.append(pb.PeakFilter(cutoff_frequency_hz=float(np.exp(rng.uniform(np.log(200), np.log(5000)))),
                                    gain_db=float(rng.uniform(-8, 8)), q=float(rng.uniform(0.5, 2.0))))
            if rng.random() < 0.5:
                fx.append(pb.HighpassFilter(float(rng.uniform(40, 300))))
            if rng.random() < 0.3:
                fx.append(pb.LowpassFilter(float(rng.uniform(3000, 7900))))
        if rng.random() < cfg.reverb_prob:
            fx.append(pb.Reverb(room_size=float(rng.uniform(0.1, 0.7)), wet_level=float(rng.uniform(0.05, 0.3)),
                                dry_level=1.0, damping=float(rng.uniform(0.2, 0.8))))
        if fx:
            x = pb.Pedalboard(fx)(x[None].astype(np.float32), RATE)[0][: self.n]
        return x.astype(np.float32)

    def _source(self, label: str) -> np.ndarray:
        cl = self.by_label[label]
        return self._augment(self._crop(cl[self.rng.integers(len(cl))]))

    def example(self, family: str | None = None, n_interferers: int | None = None,
                umbrella: str | None = None) -> Example:
        """One mixture.  ``family`` forces the target's family, ``n_interferers`` the number of other
        sources, ``umbrella`` an umbrella query (all three for building balanced dev sets)."""
        cfg = self.cfg
        rng = self.rng
        absent = rng.random() < cfg.absent_fraction
        if umbrella is None and family is None and self.corpus.umbrellas and rng.random() < cfg.umbrella_fraction:
            names = sorted(self.corpus.umbrellas)
            umbrella = names[rng.integers(len(names))]
        if umbrella is not None:
            info = self.corpus.umbrellas[umbrella]
            members = list(info["members"])
            tlabels = [members[rng.integers(len(members))]]
            for _ in range(int(rng.integers(0, 3))):  # 1-3 member sources of different groups
                rest = [m for m in members if self.group_of(m) not in {self.group_of(t) for t in tlabels}]
                if rest:
                    tlabels.append(rest[rng.integers(len(rest))])
            qlabel, qinfo, exclude = umbrella, info, set(members)
        else:
            tlabels = [self._pick_label(set(), cfg.family_weights, family=family)]
            qlabel, qinfo, exclude = tlabels[0], self.corpus.labels[tlabels[0]], set()
        groups = {self.group_of(t) for t in tlabels}
        fams = {self.corpus.labels[t]["family"] for t in tlabels}
        k = n_interferers if n_interferers is not None else int(rng.integers(cfg.n_interferers[0],
                                                                             cfg.n_interferers[1] + 1))
        ilabels = []
        for _ in range(k):
            if not any(self._allowed(l, groups, exclude, fams) for l in self.labels):
                if not ilabels:
                    raise ValueError(f"no label can interfere with {qlabel!r} in this corpus")
                break  # fewer interferers than drawn: every other label is excluded (group, family)
            lab = self._pick_label(groups, exclude_labels=exclude, in_mix_families=fams)
            groups.add(self.group_of(lab))
            fams.add(self.corpus.labels[lab]["family"])
            ilabels.append(lab)
        target = np.zeros(self.n, np.float32)
        for j, lab in enumerate(tlabels):
            s = self._source(lab)
            r = rms(s)
            if r > 0:  # members of an umbrella target within +-6 dB of each other
                target += s / r * (10 ** (rng.uniform(-6, 6) / 20) if j else 1.0)
        noise = np.zeros(self.n, np.float32)
        for lab in ilabels:
            s = self._source(lab)
            r = rms(s)
            if r > 0:
                noise += s / r
        rt, rn = rms(target), rms(noise)
        snr = float(rng.uniform(*cfg.snr_db))
        if rt > 0 and rn > 0:
            noise *= rt / rn * 10 ** (-snr / 20)
        if absent:
            # the query names the (now removed) target's label: the mixture holds only interferers
            mix = noise
            target = np.zeros_like(noise)
        else:
            mix = target + noise
        level = rms(mix)
        if level > 0:
            g = 10 ** (rng.uniform(*cfg.level_db) / 20) / level
            mix, target = mix * g, target * g
        peak = float(np.max(np.abs(mix)))
        if peak > 0.99:
            mix, target = mix * 0.99 / peak, target * 0.99 / peak
        texts = query_texts(qlabel, qinfo)
        q = texts[rng.integers(len(texts))]
        return Example(mix.astype(np.float32), target.astype(np.float32), qlabel, q,
                       ([] if absent else tlabels) + ilabels, snr, umbrella is not None)

    def batch(self, n: int) -> list[Example]:
        return [self.example() for _ in range(n)]

    def batch_arrays(self, n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``batch(n)`` as the trainer feeds it: mixtures (n, L), targets (n, L) and the query texts."""
        exs = self.batch(n)
        return np.stack([e.mixture for e in exs]), np.stack([e.target for e in exs]), [e.query for e in exs]


class BatchPrefetcher:
    """Draws the next training batch on a background thread while the current step runs.

    The batches are the ones ``mixer.batch_arrays`` would have given, in the same order.  ``rng_state`` is
    the mixer's RNG state where the next batch not yet *taken* starts, which is what a checkpoint must
    record: a run resumed from it draws the same batches as one that never stopped (a batch drawn ahead but
    not taken is drawn again).

    The mixer is single-threaded numpy and Pedalboard work (7.6 % of a training step on 2 cores).  Where the
    network keeps every core busy, overlapping it buys nothing measurable (the 2-core machine: 2.28 s per
    compiled step with or without it, ``train --time-steps``); it pays where a core is free, as on a GPU
    machine."""

    def __init__(self, mixer: Mixer, n: int):
        from concurrent.futures import ThreadPoolExecutor

        self.mixer, self.n = mixer, n
        self.rng_state = mixer.rng.bit_generator.state
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mixer")
        self._next = self._pool.submit(self._draw)

    def _draw(self):
        return self.mixer.batch_arrays(self.n), self.mixer.rng.bit_generator.state

    def take(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(mixtures (n, L), targets (n, L), query texts) of the next batch; starts drawing the one after."""
        arrays, after = self._next.result()
        self._next = self._pool.submit(self._draw)
        self.rng_state = after
        return arrays

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
