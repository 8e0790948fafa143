"""Shared helpers of the corpus builder: audio I/O at 16 kHz, trimming, cutting, splits, manifest rows."""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

SR = 16000
MIN_S = 1.0
MAX_S = 10.0
SILENT_DBFS = -50.0
PEAK_MAX = 0.99
QUIET_PEAK = 0.25      # clips whose peak is below this are raised to it, never further
DEV_FRACTION = 0.09    # share of groups held out as dev (in-distribution validation)
MIN_DEV_CLIPS = 3      # per label, when the label has >= MIN_GROUPS_FOR_DEV groups
MIN_GROUPS_FOR_DEV = 15

FAMILIES = ("instruments", "speech", "environmental", "music")

MANIFEST_FIELDS = ("id", "path", "family", "label", "split", "group", "package", "version",
                   "source_path", "licence", "duration", "sha256", "sample_rate")


# ----------------------------------------------------------------------------- audio helpers
def resample(x: np.ndarray, sr_in: int, sr_out: int = SR) -> np.ndarray:
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    from scipy.signal import resample_poly
    g = math.gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g, axis=0).astype(np.float32)


def to_mono(x: np.ndarray) -> np.ndarray:
    if x.ndim == 2:
        return x.mean(axis=1).astype(np.float32)
    return x.astype(np.float32, copy=False)


def load_audio(path: str | os.PathLike, max_seconds: float | None = None, sr: int = SR,
               start_s: float = 0.0) -> np.ndarray:
    """Read any audio file (wav/ogg/flac/mp3…) as mono float32 at ``sr`` (from ``start_s``, at most
    ``max_seconds``).  Falls back to ffmpeg."""
    import soundfile as sf
    try:
        with sf.SoundFile(str(path)) as f:
            if start_s > 0:
                f.seek(int(start_s * f.samplerate))
            frames = -1 if max_seconds is None else int(max_seconds * f.samplerate)
            x = f.read(frames=frames, dtype="float32", always_2d=True)
            sr_in = f.samplerate
    except Exception:
        cmd = ["ffmpeg", "-v", "error", "-nostdin"] + (["-ss", str(start_s)] if start_s > 0 else []) + ["-i", str(path)]
        if max_seconds is not None:
            cmd += ["-t", str(max_seconds)]
        cmd += ["-ac", "1", "-ar", str(sr), "-f", "f32le", "-"]
        out = subprocess.run(cmd, capture_output=True, check=False)
        if out.returncode != 0 or not out.stdout:
            raise ValueError(f"cannot decode {path}: {out.stderr.decode(errors='replace')[:200]}")
        return np.frombuffer(out.stdout, dtype=np.float32).copy()
    x = to_mono(x)
    x = np.nan_to_num(x)
    return resample(x, sr_in, sr)


def audio_duration(path: str | os.PathLike) -> float:
    import soundfile as sf
    try:
        return float(sf.info(str(path)).duration)
    except Exception:
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                              str(path)], capture_output=True, text=True)
        return float(out.stdout.strip() or 0.0)


def load_excerpts(path: str | os.PathLike, positions=(0.3, 0.65), seconds: float = MAX_S) -> list[np.ndarray]:
    """``seconds``-long excerpts starting at the given fractions of a long recording (a music track: its
    middle, not the intro or the fade-out), decoded without reading the rest of the file."""
    dur = audio_duration(path)
    out = []
    for pos in positions:
        start = max(0.0, min(pos * dur, dur - seconds))
        x = load_audio(path, max_seconds=seconds, start_s=start)
        if len(x) >= int(MIN_S * SR) and dbfs(x) >= SILENT_DBFS:
            out.append(x[: int(seconds * SR)])
    return out


def dbfs(x: np.ndarray) -> float:
    if x.size == 0:
        return -200.0
    r = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20 * math.log10(r + 1e-12)


def frame_rms_db(x: np.ndarray, frame: int = 320) -> np.ndarray:
    n = len(x) // frame
    if n == 0:
        return np.array([dbfs(x)])
    f = x[: n * frame].reshape(n, frame).astype(np.float64)
    return 10 * np.log10(np.mean(f * f, axis=1) + 1e-12)


def trim_silence(x: np.ndarray, floor_db: float = -55.0, rel_db: float = 45.0, pad_s: float = 0.03,
                 frame: int = 320) -> np.ndarray:
    """Cut leading/trailing frames quieter than max(floor_db, loudest frame - rel_db)."""
    if x.size == 0:
        return x
    db = frame_rms_db(x, frame)
    thr = max(floor_db, float(db.max()) - rel_db)
    on = np.flatnonzero(db > thr)
    if on.size == 0:
        return x[:0]
    pad = int(pad_s * SR)
    a = max(0, on[0] * frame - pad)
    b = min(len(x), (on[-1] + 1) * frame + pad)
    return x[a:b]


def cut_pieces(x: np.ndarray, max_s: float = MAX_S, min_s: float = MIN_S,
               max_pieces: int | None = None) -> list[np.ndarray]:
    """Cut into equal pieces of at most ``max_s``; drop near-silent pieces and too-short ones."""
    n_max = int(max_s * SR)
    if len(x) < int(min_s * SR):
        return []
    n = max(1, math.ceil(len(x) / n_max))
    step = math.ceil(len(x) / n)
    out = []
    for i in range(n):
        p = x[i * step:(i + 1) * step]
        if n > 1:
            p = trim_silence(p)
        if len(p) < int(min_s * SR) or dbfs(p) < SILENT_DBFS:
            continue
        out.append(p[:n_max])
    if max_pieces is not None and len(out) > max_pieces:
        idx = np.linspace(0, len(out) - 1, max_pieces).round().astype(int)
        out = [out[i] for i in idx]
    return out


def normalise(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0:
        return x
    if peak > PEAK_MAX:
        return (x * (PEAK_MAX / peak)).astype(np.float32)
    if peak < QUIET_PEAK:
        return (x * (QUIET_PEAK / peak)).astype(np.float32)
    return x.astype(np.float32)


def flac_bytes(x: np.ndarray) -> bytes:
    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), SR, subtype="PCM_16", format="FLAC")
    return buf.getvalue()


def write_clip(out_dir: Path, family: str, label: str, clip_id: str, x: np.ndarray) -> tuple[str, str, float]:
    """Normalise + write one clip.  Returns (relative path, sha256 of flac bytes, duration)."""
    x = normalise(x)
    rel = f"clips/{family}/{label}/{clip_id}.flac"
    p = out_dir / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    data = flac_bytes(x)
    tmp = p.with_suffix(".flac.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, p)
    return rel, hashlib.sha256(data).hexdigest(), round(len(x) / SR, 3)


def write_pieces(out_dir: Path, x: np.ndarray, cid_prefix: str, meta: "ClipMeta") -> tuple[list[dict], float]:
    """Cut ``x`` into <= 10 s pieces, write each as clip ``<cid_prefix>-<k>``; (manifest rows, seconds)."""
    rows, total = [], 0.0
    for k, piece in enumerate(cut_pieces(x)):
        cid = f"{cid_prefix}-{k}"
        rel, sha, d = write_clip(out_dir, meta.family, meta.label, cid, piece)
        rows.append(manifest_row(cid, rel, sha, d, meta))
        total += d
    return rows, total


def usable(x: np.ndarray) -> bool:
    return len(x) >= int(MIN_S * SR) and len(x) <= int(MAX_S * SR) + 1 and dbfs(x) >= SILENT_DBFS


# ----------------------------------------------------------------------------- ids / splits
def short_hash(*parts: str, n: int = 12) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:n]


def group_hash01(group: str) -> float:
    """Deterministic number in [0, 1) from a group id."""
    h = hashlib.sha256(("split-v1:" + group).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64


def assign_splits(label_groups: dict[str, dict[str, float]], dev_fraction: float = DEV_FRACTION,
                  min_dev_weight: float | None = None, max_dev_share: float = 0.25) -> dict[tuple[str, str], str]:
    """Split whole groups per label (deterministic: SHA-256 of the group id).

    ``label_groups[label][group] = weight`` (seconds of usable audio, or clip count).
    1. a group goes to dev when its hash is below ``dev_fraction``;
    2. groups that make dev much larger than intended (> 2.5 x dev_fraction of the weight) are put back;
    3. labels with >= MIN_GROUPS_FOR_DEV groups are topped up (next-lowest hash first) until dev has
       MIN_DEV_CLIPS groups and, if given, ``min_dev_weight`` of weight — never beyond ``max_dev_share``;
    4. labels with 6..MIN_GROUPS_FOR_DEV-1 groups and no dev group hold out the lowest-hash group that
       carries at most 20 % of the weight; labels with fewer than 6 groups are train-only.
    Returns {(label, group): split}.
    """
    out: dict[tuple[str, str], str] = {}
    for label, groups in label_groups.items():
        ranked = sorted(groups, key=lambda g: (group_hash01(g), g))
        total = float(sum(groups.values())) or 1.0
        dev = [g for g in ranked if group_hash01(g) < dev_fraction]

        def share() -> float:
            return sum(groups[g] for g in dev) / total
        if len(ranked) < 6:
            dev = []
        else:
            while len(dev) > 1 and share() > 2.5 * dev_fraction:
                dev.remove(max(dev, key=lambda g: (groups[g], g)))
            if len(ranked) >= MIN_GROUPS_FOR_DEV:
                for g in ranked:
                    if len(dev) >= MIN_DEV_CLIPS and (min_dev_weight is None or sum(groups[d] for d in dev) >= min_dev_weight):
                        break
                    if g in dev or (sum(groups[d] for d in dev) + groups[g]) / total > max_dev_share:
                        continue
                    dev.append(g)
            elif not dev:
                for g in ranked:
                    if groups[g] / total <= 0.20:
                        dev.append(g)
                        break
        dset = set(dev)
        for g in ranked:
            out[(label, g)] = "dev" if g in dset else "train"
    return out


def split_of(group: str, dev_fraction: float = DEV_FRACTION) -> str:
    return "dev" if group_hash01(group) < dev_fraction else "train"


# ----------------------------------------------------------------------------- manifest rows
@dataclass
class ClipMeta:
    family: str
    label: str
    group: str
    package: str
    version: str
    source_path: str
    licence: str
    split: str = "train"
    gender: str | None = None
    language: str | None = None
    extra: dict = field(default_factory=dict)


def manifest_row(clip_id: str, rel: str, sha: str, dur: float, m: ClipMeta) -> dict:
    row = {"id": clip_id, "path": rel, "family": m.family, "label": m.label, "split": m.split,
           "group": m.group, "package": m.package, "version": m.version, "source_path": m.source_path,
           "licence": m.licence, "duration": dur, "sha256": sha, "sample_rate": SR}
    if m.gender:
        row["gender"] = m.gender
    if m.language:
        row["language"] = m.language
    return row


def check_row(row: dict) -> None:
    missing = [k for k in MANIFEST_FIELDS if k not in row or row[k] in (None, "")]
    if missing:
        raise ValueError(f"manifest row {row.get('id')} lacks {missing}")
    if row["family"] not in FAMILIES or row["split"] not in ("train", "dev"):
        raise ValueError(f"manifest row {row['id']}: bad family/split")


class PartWriter:
    """Append-only JSONL of finished work units: ``{"unit": key, "rows": [...]}``.  Makes builds resumable."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, list[dict]] = {}
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # torn last line after a crash
                    self.done[rec["unit"]] = rec["rows"]
        self._fh = open(self.path, "a", encoding="utf-8")

    def has(self, unit: str, out_dir: Path | None = None) -> bool:
        rows = self.done.get(unit)
        if rows is None:
            return False
        if out_dir is not None and not all((out_dir / r["path"]).exists() for r in rows):
            return False
        return True

    def add(self, unit: str, rows: list[dict]) -> None:
        self.done[unit] = rows
        self._fh.write(json.dumps({"unit": unit, "rows": rows}, ensure_ascii=False) + "\n")
        self._fh.flush()

    def rows(self) -> Iterator[dict]:
        for rows in self.done.values():
            yield from rows

    def close(self) -> None:
        self._fh.close()


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=str(path.parent))
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_jsonl_atomic(path: Path, rows: Iterable[dict]) -> int:
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=False) for r in rows]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)
