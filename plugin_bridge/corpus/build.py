"""Orchestration of ``plugin-bridge corpus build``: sources -> clips -> manifest.jsonl + summary.json.

Resumable: every finished work unit is appended to ``DIR/parts/*.jsonl``; a rerun skips units whose
clips exist.  ``manifest.jsonl`` and ``summary.json`` are rewritten atomically from the parts at the end of
every phase, so they are always consistent.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from plugin_bridge.paths import cache_dir

from . import dedup, sources
from .common import (FAMILIES, SR, ClipMeta, PartWriter, assign_splits, atomic_write_text, check_row, cut_pieces,
                     dbfs, load_audio, load_excerpts, manifest_row, normalise, short_hash, trim_silence, write_clip, write_jsonl_atomic)



def default_scratch() -> Path:
    """Where .deb files are downloaded and unpacked unless the caller says: ``<user cache>/corpus-scratch``."""
    return Path(cache_dir()) / "corpus-scratch"

# environmental + real-speech packages, in priority order (earlier wins when duplicates are found)
REAL_PACKAGES = ["0ad-data", "widelands-data", "megaglest-data", "ufoai-sound", "minetest-data",
                 "tuxpaint-stamps-default", "wesnoth-1.16-data", "openarena-data", "lincity-ng-data",
                 "warzone2100-data", "torcs-data", "supertux-data", "warmux-data", "wordwarvi-sound",
                 "freeciv-data", "sonic-pi-samples", "lmms-common", "wesnoth-1.16-music", "warzone2100-music",
                 "hedgewars-data", "colobot-common-sounds"]
# game music tracks give 2 excerpts of 10 s each, at 30 % and 65 % of the track (~280 tracks -> ~90 min)
MAX_PIECES_BY_LABEL = {"music": 2}
EXCERPT_POSITIONS = {"music": (0.3, 0.65)}
MAX_PIECES_PER_FILE = 12       # a 3-minute ambience loop gives at most 12 clips
ONESHOT_MIN_S = 0.08
DEV_MIN_SECONDS = 12.0
HYDROGEN_MINUTES_PER_KIT = 1.5  # real drum kits (12 train kits) played with the generated grooves         # real-recording labels: aim for >= 3 dev clips' worth of audio
TTS_MINUTES_PER_VOICE = {"flite": 8.0, "festival": 6.0, "espeak-ng": 1.2}


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# ----------------------------------------------------------------------------- real recordings
def _fp_cache_load(path: Path) -> dict:
    if path.exists():
        try:
            z = np.load(path, allow_pickle=True)
            return dict(z["cache"].item())
        except Exception:
            return {}
    return {}


def _fp_for(cache: dict, p: Path) -> tuple[np.ndarray, float] | None:
    st = p.stat()
    key = f"{p}:{st.st_size}:{int(st.st_mtime)}"
    if key in cache:
        return cache[key]
    try:
        x = load_audio(p, max_seconds=dedup.FP_SECONDS + 1.0)
        import soundfile as sf
        try:
            dur = sf.info(str(p)).duration
        except Exception:
            dur = len(x) / SR
    except Exception:
        cache[key] = None
        return None
    x = trim_silence(x)
    if len(x) < int(0.05 * SR):
        cache[key] = None
        return None
    cache[key] = (dedup.fingerprint(x), float(dur))
    return cache[key]


def collect_real(scratch: Path, packages: list[str], rules, families: set[str]) -> list[sources.Labelled]:
    items: list[sources.Labelled] = []
    for pkg in packages:
        if sources.is_reserved(pkg) and pkg != sources.TUXPAINT:
            continue
        if not any(r.package == pkg for r in rules):
            continue
        try:
            root = sources.download_and_unpack(pkg, scratch / "debs", scratch / "x", log=log)
        except Exception as exc:  # a missing package only shrinks the corpus
            log(f"skip {pkg}: {exc}")
            continue
        got = sources.label_tree(rules, pkg, root, for_training=True)
        got = [g for g in got if _family_of(g.label) in families]
        log(f"{pkg}: {len(got)} labelled files")
        items += got
    return items


def _family_of(label: str) -> str:
    return label if label in ("speech", "music") else "environmental"


def reference_fingerprints(scratch: Path, cache: dict) -> tuple[list[np.ndarray], list[str]]:
    fps, names = [], []
    for pkg in sources.DEDUP_REFERENCE:
        try:
            root = sources.download_and_unpack(pkg, scratch / "debs", scratch / "x", log=log)
        except Exception as exc:
            log(f"WARNING: reference package {pkg} unavailable for de-duplication: {exc}")
            continue
        n = 0
        for p, sp in sources.iter_audio(root):
            low = sp.lower()
            if "/music" in low or (pkg == sources.TUXPAINT and "_desc" in low) or \
                    (pkg == sources.TUXPAINT and not _tuxpaint_nonspeech(sp)):
                continue
            r = _fp_for(cache, p)
            if r is None or r[1] > 300:
                continue
            fps.append(r[0]); names.append(f"{pkg}:{sp}"); n += 1
        log(f"reference {pkg}: {n} fingerprints")
    return fps, names


def _tuxpaint_nonspeech(sp: str) -> bool:
    """tuxpaint stamp sounds are '<stamp>.ogg'; spoken names/descriptions carry a language suffix."""
    import re
    stem = Path(sp).stem
    return re.search(r"_(desc|[a-z]{2}(_[A-Z]{2})?)$", stem) is None


def build_real(out: Path, scratch: Path, families: set[str], max_minutes: float | None,
               packages: list[str] | None = None) -> None:
    rules = sources.load_rules()
    items = collect_real(scratch, packages or REAL_PACKAGES, rules, families)
    if not items:
        log("no real recordings to process")
        return
    cache_path = scratch / "fp_cache.npz"
    cache = _fp_cache_load(cache_path)
    log(f"fingerprinting {len(items)} labelled files")
    fps, durs, keep_items = [], [], []
    for it in items:
        r = _fp_for(cache, it.path)
        if r is None:
            continue
        fps.append(r[0]); durs.append(r[1]); keep_items.append(it)
    ref_fps, ref_names = reference_fingerprints(scratch, cache)
    np.savez(cache_path, cache=np.array(cache, dtype=object))
    # environmental: spectral near-duplicates against each other and the reserved packages;
    # speech: exact duplicates only (identical decoded audio), the reserved packages hold no such speech
    env_idx = [i for i, it in enumerate(keep_items) if _family_of(it.label) == "environmental"]
    sp_idx = [i for i, it in enumerate(keep_items) if _family_of(it.label) != "environmental"]
    log(f"de-duplicating {len(env_idx)} environmental files against each other and {len(ref_fps)} reserved clips")
    keep = [True] * len(keep_items)
    reasons: dict[int, tuple[str, int, float]] = {}
    review: list[tuple[int, str, int, float]] = []
    k_env, r_env, rv_env = dedup.find_duplicates([fps[i] for i in env_idx], ref_fps)
    for a, i in enumerate(env_idx):
        keep[i] = k_env[a]
    for a, (kind, j, r) in r_env.items():
        reasons[env_idx[a]] = (kind, env_idx[j] if kind == "train" else j, r)
    for a, kind, j, r in rv_env:
        review.append((env_idx[a], kind, env_idx[j] if kind == "train" else j, r))
    seen_hash: dict[str, int] = {}
    for i in sp_idx:
        h = hashlib.sha1(fps[i].tobytes()).hexdigest()
        if h in seen_hash:
            keep[i] = False
            reasons[i] = ("train", seen_hash[h], 1.0)
        else:
            seen_hash[h] = i
    dropped_lines, review_lines = [], []
    for i, (kind, j, r) in sorted(reasons.items()):
        other = ref_names[j] if kind == "reserved" else f"{keep_items[j].package}:{keep_items[j].source_path}"
        dropped_lines.append(f"{r:.4f}\t{kind}\t{keep_items[i].package}:{keep_items[i].source_path}\t{other}")
    for i, kind, j, r in review:
        other = ref_names[j] if kind == "reserved" else f"{keep_items[j].package}:{keep_items[j].source_path}"
        review_lines.append(f"{r:.4f}\t{kind}\t{keep_items[i].package}:{keep_items[i].source_path}\t{other}")
    atomic_write_text(out / "dedup_dropped.tsv", "corr\tmatched\tdropped train file\tmatched file\n" + "\n".join(dropped_lines) + "\n")
    atomic_write_text(out / "dedup_review.tsv", "corr\tmatched\ttrain file\tother file (0.97-0.99: check by hand)\n" + "\n".join(review_lines) + "\n")
    log(f"dedup: dropped {len(reasons)} ({sum(1 for v in reasons.values() if v[0] == 'reserved')} match reserved), "
        f"{len(review)} pairs to review")
    items = [it for it, k in zip(keep_items, keep) if k]
    durs = [d for d, k in zip(durs, keep) if k]

    # licences
    lic_cache: dict[str, sources.CopyrightInfo] = {}
    versions: dict[str, str] = {}
    usable = []
    for it, d in zip(items, durs):
        if it.package not in lic_cache:
            lic_cache[it.package] = sources.parse_copyright(sources.copyright_path(scratch / "x" / it.package, it.package))
            versions[it.package] = sources.deb_version(scratch / "debs", it.package) or "unknown"
        inner = it.source_path[4:] if it.source_path.startswith("zip:") else it.source_path
        lic, _ = lic_cache[it.package].licence_for(sources.display_source_path(it.package, it.source_path), inner)
        if lic == "unknown":
            lic = sources.PACKAGE_LICENCE_FALLBACK.get(it.package, lic)
        if not sources.licence_allowed(lic):
            log(f"licence not allowed ({lic}): {it.package}:{it.source_path}")
            continue
        usable.append((it, d, lic))

    # splits: group = source file, per label
    label_groups: dict[str, dict[str, float]] = defaultdict(dict)
    for it, d, lic in usable:
        # weight = usable seconds (long files give at most MAX_PIECES_PER_FILE pieces of <= 10 s)
        label_groups[it.label][_group(it)] = min(max(d, 0.1), 10.0 * MAX_PIECES_BY_LABEL.get(it.label, MAX_PIECES_PER_FILE))
    splits = assign_splits(label_groups, min_dev_weight=DEV_MIN_SECONDS)

    by_pkg = defaultdict(list)
    for it, d, lic in usable:
        by_pkg[it.package].append((it, d, lic))
    minutes = defaultdict(float)
    for pkg, lst in by_pkg.items():
        writer = PartWriter(out / "parts" / f"real-{pkg}.jsonl")
        for r in writer.rows():
            minutes[r["label"]] += r["duration"] / 60
        short_pool = defaultdict(list)
        for it, d, lic in lst:
            unit = f"file:{it.package}:{it.source_path}"
            split = splits[(it.label, _group(it))]
            if writer.has(unit, out) and writer.done[unit]:
                continue          # long file already cut (short ones are re-read: they feed the sequences)
            if max_minutes and minutes[it.label] >= max_minutes:
                continue
            try:
                if it.label in EXCERPT_POSITIONS:
                    excerpts = load_excerpts(it.path, EXCERPT_POSITIONS[it.label])
                    x = np.zeros(SR, np.float32) if excerpts else np.zeros(0, np.float32)
                else:
                    # quiet recordings are raised as a whole (peak to QUIET_PEAK) before cutting, so the
                    # near-silence test of each piece is relative to the file's own level
                    x = normalise(trim_silence(load_audio(it.path)))
                    excerpts = None
            except Exception as exc:
                log(f"cannot read {it.path}: {exc}")
                writer.add(unit, [])
                continue
            rows = []
            if len(x) >= SR:
                fam = _family_of(it.label)
                meta = ClipMeta(fam, it.label, _group(it), it.package, versions[it.package],
                                sources.display_source_path(it.package, it.source_path), lic, split=split,
                                gender=it.gender, language=it.language)
                pieces = excerpts if excerpts is not None else cut_pieces(x, max_pieces=MAX_PIECES_PER_FILE)
                for k, piece in enumerate(pieces):
                    cid = f"{_slug(it.package)}-{short_hash(it.package, it.source_path)}-{k}"
                    rel, sha, dd = write_clip(out, fam, it.label, cid, piece)
                    rows.append(manifest_row(cid, rel, sha, dd, meta))
                    minutes[it.label] += dd / 60
            elif len(x) >= int(ONESHOT_MIN_S * SR) and dbfs(x) > -50:
                short_pool[(it.label, split, it.gender, it.language)].append((it, lic, x))
            if not writer.has(unit):
                writer.add(unit, rows)
        # one-shots shorter than 1 s: sequences of 2-7 events from the same package, label and split
        for (label, split, gender, language), pool in sorted(short_pool.items(), key=lambda kv: str(kv[0])):
            _concat_pool(out, writer, pkg, versions[pkg], label, split, gender, language, pool, minutes, max_minutes)
        writer.close()
    log("real recordings: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(minutes.items())))


def _group(it: sources.Labelled) -> str:
    return f"{it.package}:{it.source_path}"


def _slug(pkg: str) -> str:
    return pkg.replace("-data", "").replace("-sound", "").replace(".", "").replace("-", "")


def _concat_pool(out, writer, pkg, version, label, split, gender, language, pool, minutes, max_minutes):
    pool = sorted(pool, key=lambda t: t[0].source_path)
    seed = int(short_hash("concat", pkg, label, split, n=8), 16)
    rng = np.random.default_rng(seed)
    fam = _family_of(label)
    uses = 2 if len(pool) >= 4 else 3
    order = []
    for _ in range(uses):
        order += list(rng.permutation(len(pool)))
    k = 0
    pos = 0
    while pos < len(order):
        target = float(rng.uniform(2.0, 6.0))
        sel, total = [], 0.0
        while pos < len(order) and total < target and len(sel) < 7:
            it, lic, x = pool[order[pos]]
            if sel and pool[order[pos]][0].source_path == sel[-1][0].source_path:
                pos += 1
                continue
            sel.append(pool[order[pos]])
            total += len(x) / SR + 0.3
            pos += 1
        unit = f"concat:{pkg}:{label}:{split}:{gender}:{language}:{k:04d}"
        k += 1
        if writer.has(unit, out):
            continue
        if max_minutes and minutes[label] >= max_minutes:
            writer.add(unit, [])
            continue
        segs = []
        for j, (it, lic, x) in enumerate(sel):
            g = 10 ** (rng.uniform(-4, 2) / 20) * 0.7 / max(1e-4, float(np.max(np.abs(x))))
            segs.append(x * g)
            gap = float(rng.uniform(0.08, 0.5)) if fam == "environmental" else float(rng.uniform(0.25, 0.6))
            segs.append(np.zeros(int(gap * SR), dtype=np.float32))
        y = trim_silence(np.concatenate(segs)) if segs else np.zeros(0, np.float32)
        rows = []
        if len(y) >= SR:
            y = y[: int(10 * SR)]
            lics = sorted({lic for _, lic, _ in sel})
            meta = ClipMeta(fam, label, f"concat:{pkg}:{label}:{split}:{gender}:{language}:{k - 1:04d}", pkg, version,
                            " + ".join(sources.display_source_path(pkg, it.source_path) for it, _, _ in sel),
                            " AND ".join(lics), split=split, gender=gender, language=language)
            cid = f"{_slug(pkg)}-seq-{short_hash(unit)}"
            rel, sha, dd = write_clip(out, fam, label, cid, y)
            rows.append(manifest_row(cid, rel, sha, dd, meta))
            minutes[label] += dd / 60
        writer.add(unit, rows)


# ----------------------------------------------------------------------------- generated families
def _run_instruments(out: str, labels: list[str], minutes: float, m21_path: str | None,
                     msg_font: str | None = None, msg_minutes: float = 10.0, scratch: str | None = None,
                     hydrogen_minutes: float = 0.0) -> str:
    from . import render
    m21 = None
    if m21_path and os.path.exists(m21_path):
        with open(m21_path) as f:
            m21 = [(k, [tuple(n) for n in v]) for k, v in json.load(f)]
    for lab in labels:
        render.render_label(Path(out), Path(out) / "parts", lab, minutes, m21_material=m21, log=log,
                            msg_font=msg_font, msg_minutes=msg_minutes)
        if lab == "drums" and hydrogen_minutes > 0:
            render.render_hydrogen(Path(out), Path(out) / "parts", Path(scratch or default_scratch()), hydrogen_minutes, log=log)
    return f"instruments {labels}"


def _run_tts(out: str, scratch: str, voice_names: list[str], minutes_scale: float) -> str:
    from . import tts
    texts = tts.TextBank(Path(scratch) / "x")
    vs = {v.group: v for v in tts.all_voices()}
    for g in voice_names:
        v = vs[g]
        tts.tts_voice(Path(out), Path(out) / "parts", Path(scratch), v,
                      TTS_MINUTES_PER_VOICE[v.engine] * minutes_scale, texts, log=log)
    return f"tts {len(voice_names)} voices"


def ensure_text_packages(scratch: Path) -> None:
    pkgs = ["fortunes", "fortunes-min", "fortunes-de", "fortunes-es", "fortunes-it", "fortunes-ru", "fortunes-pl",
            "fortunes-cs", "wfrench", "wportuguese", "wdutch", "wswedish", "wdanish", "wnorwegian", "wbulgarian",
            "wukrainian", "wcatalan", "witalian", "wspanish", "wngerman", "wpolish", "dict-freedict-fin-eng"]
    for p in pkgs:
        root = scratch / "x" / p
        if (root / ".done").exists() or (root / "usr").exists():
            continue
        try:
            debs = scratch / "debs"
            debs.mkdir(parents=True, exist_ok=True)
            import subprocess
            if not list(debs.glob(f"{p}_*.deb")):
                subprocess.run(["apt-get", "download", p], cwd=debs, capture_output=True)
            deb = sorted(debs.glob(f"{p}_*.deb"))
            if deb:
                root.mkdir(parents=True, exist_ok=True)
                subprocess.run(["dpkg", "-x", str(deb[-1]), str(root)], check=True)
                (root / ".done").touch()
        except Exception as exc:
            log(f"text package {p} unavailable: {exc}")


def build_generated(out: Path, scratch: Path, families: set[str], max_minutes: float | None, jobs: int,
                    inst_minutes: float = 40.0, tts_scale: float = 1.0) -> None:
    from . import render, tts
    tasks = []
    m21_path = scratch / "m21_parts.json"
    if "instruments" in families:
        labels = list(render.INSTRUMENT_LABELS)
        mins = min(inst_minutes, max_minutes) if max_minutes else inst_minutes
        if not m21_path.exists():
            try:
                log("extracting music21 note material (Palestrina, essenFolksong)")
                render.build_m21_cache(m21_path)
            except Exception as exc:
                log(f"music21 material unavailable: {exc}")
        msg_font = render.ensure_musescore(scratch, log=log)
        msg_minutes = render.MSG_MINUTES * (mins / inst_minutes)
        chunks = [labels[i::max(1, jobs)] for i in range(max(1, jobs))]
        for ch in chunks:
            if ch:
                tasks.append((_run_instruments, (str(out), ch, mins, str(m21_path), msg_font, msg_minutes,
                                                 str(scratch), HYDROGEN_MINUTES_PER_KIT * (mins / inst_minutes))))
    if "speech" in families:
        ensure_text_packages(scratch)
        groups = [v.group for v in tts.all_voices()]
        scale = tts_scale
        if max_minutes:
            total = sum(TTS_MINUTES_PER_VOICE[v.engine] for v in tts.all_voices())
            scale = min(scale, max_minutes / max(total, 1e-6))
        chunks = [groups[i::max(1, jobs)] for i in range(max(1, jobs))]
        for ch in chunks:
            if ch:
                tasks.append((_run_tts, (str(out), str(scratch), ch, scale)))
    if "environmental" in families:
        from . import procedural
        log(f"procedural labels: {procedural.build_procedural(out, log=log) / 60:.1f} min")
    if "music" in families:
        render.render_arrangements(out, out / "parts", render.ARR_MINUTES * (min(1.0, max_minutes / 30) if max_minutes else 1.0), log=log)
    if not tasks:
        return
    if jobs <= 1:
        for fn, args in tasks:
            log(fn(*args))
        return
    # spawn, not fork: the procedural and arrangement stages above ran native threads (FluidSynth, BLAS) in
    # this process, and forked workers inherited their held locks: a --jobs 2 build hung in futex_wait
    # at the first instrument (seen 2026-12-03).
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
        futs = [ex.submit(fn, *args) for fn, args in tasks]
        for f in as_completed(futs):
            log(f"done: {f.result()}")


# ----------------------------------------------------------------------------- manifest + summary
def collect_rows(out: Path) -> list[dict]:
    rows = []
    for p in sorted((out / "parts").glob("*.jsonl")):
        pw = PartWriter(p)
        for r in pw.rows():
            if (out / r["path"]).exists():
                rows.append(r)
        pw.close()
    return rows


def finalise_splits(rows: list[dict]) -> None:
    """Generated material (instruments, TTS) is re-split here on whole groups (top-up to >= 3 dev clips);
    real recordings keep the split decided per source file before one-shots were sequenced."""
    lg: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        if _generated(r):
            lg[f"{r['family']}/{r['label']}"][r["group"]] += r["duration"]
    sp = assign_splits({k: dict(v) for k, v in lg.items()})
    for r in rows:
        if _generated(r):
            r["split"] = sp[(f"{r['family']}/{r['label']}", r["group"])]


def _generated(r: dict) -> bool:
    return r["family"] == "instruments" or r["group"].startswith(("tts:", "arrangement:"))


MIN_UNIQUE_SOURCES = 15      # clips per label
MIN_SOURCES_PER_LABEL = 4    # unique source recordings per real-recording label


def drop_thin_labels(rows: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """Labels need >= MIN_UNIQUE_SOURCES clips, and real-recording labels >= MIN_SOURCES_PER_LABEL
    unique source recordings (long ambiences are cut into many clips); thinner ones are dropped."""
    srcs: dict[str, set] = defaultdict(set)
    for r in rows:
        if not _generated(r):
            for sp in r["source_path"].split(" + "):
                srcs[r["label"]].add((r["package"], sp))
    dropped = {lab: f"only {len(s)} unique source files (< {MIN_SOURCES_PER_LABEL})"
               for lab, s in srcs.items() if len(s) < MIN_SOURCES_PER_LABEL and lab != "speech"}
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r["label"]] += 1
    for lab, n in counts.items():
        if lab in srcs and n < MIN_UNIQUE_SOURCES and lab not in dropped:
            dropped[lab] = f"only {n} clips (< {MIN_UNIQUE_SOURCES})"
    return [r for r in rows if r["label"] not in dropped], dropped


def write_manifest(out: Path, labels_json: bool | Path = True, scratch: Path | None = None) -> list[dict]:
    """Rewrite manifest.jsonl + summary.json (+ labels.json) from the parts.  ``labels_json``: True = write
    DIR/labels.json and the repo's models/training/labels.json; a Path = write DIR/labels.json and that
    file; False = DIR/labels.json only."""
    rows = collect_rows(out)
    rows, dropped = drop_thin_labels(rows)
    finalise_splits(rows)
    rows.sort(key=lambda r: (FAMILIES.index(r["family"]), r["label"], r["id"]))
    seen = set()
    uniq = []
    for r in rows:
        if r["id"] in seen:
            continue
        seen.add(r["id"])
        check_row(r)
        uniq.append(r)
    write_jsonl_atomic(out / "manifest.jsonl", uniq)
    summ = summarise(uniq, out, scratch)
    summ["dropped_labels"] = dropped
    atomic_write_text(out / "summary.json", json.dumps(summ, indent=2, ensure_ascii=False) + "\n")
    from .vocab import write_labels_json
    write_labels_json(uniq, out / "labels.json")
    if labels_json is True:
        write_labels_json(uniq, sources.LABELS_JSON)
    elif labels_json:
        write_labels_json(uniq, Path(labels_json))
    return uniq


def prune_orphans(out: Path) -> int:
    """Delete clip files that the current manifest does not reference (left by earlier recipe versions)."""
    keep = {json.loads(l)["path"] for l in (out / "manifest.jsonl").read_text().splitlines() if l.strip()}
    n = 0
    for p in (out / "clips").rglob("*.flac"):
        if p.relative_to(out).as_posix() not in keep:
            p.unlink()
            n += 1
    return n


def summarise(rows: list[dict], out: Path | None = None, scratch: Path | None = None) -> dict:
    def agg(key):
        d: dict[str, dict] = defaultdict(lambda: {"clips": 0, "minutes": 0.0})
        for r in rows:
            k = key(r)
            d[k]["clips"] += 1
            d[k]["minutes"] += r["duration"] / 60
        return {k: {"clips": v["clips"], "minutes": round(v["minutes"], 2)} for k, v in sorted(d.items())}
    att = attributions(rows, out, scratch)
    return {
        "clips": len(rows),
        "minutes": round(sum(r["duration"] for r in rows) / 60, 2),
        "sample_rate": SR,
        "by_family": agg(lambda r: r["family"]),
        "by_label": agg(lambda r: f"{r['family']}/{r['label']}"),
        "by_package": agg(lambda r: r["package"]),
        "by_licence": agg(lambda r: r["licence"]),
        "by_split": agg(lambda r: r["split"]),
        "by_label_split": agg(lambda r: f"{r['family']}/{r['label']}/{r['split']}"),
        "groups_per_label": {k: len(v) for k, v in sorted(_groups(rows).items())},
        "package_versions": package_versions(rows),
        "clip_digests": clip_digests(rows),
        "attributions_required": att,
    }


def package_versions(rows: list[dict]) -> dict[str, list[str]]:
    """package -> the Debian/PyPI versions its clips came from (a rebuild on a newer archive differs here)."""
    v: dict[str, set] = defaultdict(set)
    for r in rows:
        v[r["package"]].add(str(r["version"]))
    return {k: sorted(v[k]) for k in sorted(v)}


def clip_digests(rows: list[dict]) -> dict[str, str]:
    """``family/label/split`` -> a short SHA-256 of its sorted clip ids.  Two builds whose digests agree
    hold the same clips there (ids name a source file and piece, not the decoded bytes), so comparing two
    summaries says which labels and splits a rebuild changed, the dev split included."""
    ids: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        ids[f"{r['family']}/{r['label']}/{r['split']}"].append(r["id"])
    return {k: hashlib.sha256("\n".join(sorted(v)).encode()).hexdigest()[:16] for k, v in sorted(ids.items())}


def compare_summaries(a: dict, b: dict) -> list[str]:
    """What differs between two corpus builds' summary.json (A, B): clip counts per package (with the
    package versions when recorded) and the label splits whose clips differ.  Empty when they agree."""
    out = []
    if (a.get("clips"), a.get("minutes")) != (b.get("clips"), b.get("minutes")):
        out.append(f"clips: {a.get('clips')} ({a.get('minutes')} min) vs {b.get('clips')} ({b.get('minutes')} min)")
    va, vb = a.get("package_versions", {}), b.get("package_versions", {})
    pa, pb = a.get("by_package", {}), b.get("by_package", {})
    for pkg in sorted(set(pa) | set(pb) | set(va) | set(vb)):
        ca, cb = pa.get(pkg, {}).get("clips", 0), pb.get(pkg, {}).get("clips", 0)
        vers_a, vers_b = va.get(pkg), vb.get(pkg)
        other_version = bool(vers_a and vers_b and vers_a != vers_b)
        if ca != cb or other_version:
            vtxt = f" (version {', '.join(vers_a)} vs {', '.join(vers_b)})" if other_version else ""
            out.append(f"package {pkg}: {ca} vs {cb} clips{vtxt}")
    da, db = a.get("clip_digests"), b.get("clip_digests")
    sa, sb = a.get("by_label_split", {}), b.get("by_label_split", {})
    for key in sorted(set(sa) | set(sb) | set(da or {}) | set(db or {})):
        ca, cb = sa.get(key, {}).get("clips", 0), sb.get(key, {}).get("clips", 0)
        if ca != cb:
            out.append(f"{key}: {ca} vs {cb} clips")
        elif da is not None and db is not None and da.get(key) != db.get(key):
            out.append(f"{key}: same count ({ca}), other clips")
    if da is None or db is None:
        out.append("(clip digests missing in " + " and ".join(n for n, d in (("A", da), ("B", db)) if d is None) +
                   ": a summary written before they were recorded; only counts compared)")
    return out


def _groups(rows):
    g = defaultdict(set)
    for r in rows:
        g[f"{r['family']}/{r['label']}"].add(r["group"])
    return g


def attributions(rows: list[dict], out: Path | None = None, scratch: Path | None = None) -> list[dict]:
    """CC-BY / CC-BY-SA packages used, with the copyright holders debian/copyright names for them."""
    scratch_x = Path(scratch or default_scratch()) / "x"
    res = []
    pk = defaultdict(set)
    for r in rows:
        if "cc-by" in r["licence"].lower():
            pk[r["package"]].add(r["licence"])
    for pkg, lics in sorted(pk.items()):
        holders = []
        cp = sources.copyright_path(scratch_x / pkg, pkg)
        if cp.exists():
            info = sources.parse_copyright(cp)
            for st in info.stanzas:
                if any(l.split(" AND ")[0] in st.licence or st.licence in l for l in lics) and st.copyright:
                    holders.append(st.copyright)
        res.append({"package": pkg, "licences": sorted(lics),
                    "copyright_holders": sorted(set(holders))[:40] or ["see debian/copyright of the package"]})
    return res


# ----------------------------------------------------------------------------- entry point
def build(out: Path, scratch: Path | None = None, families: set[str] | None = None,
          max_minutes: float | None = None, jobs: int = 2, inst_minutes: float = 40.0, tts_scale: float = 1.0,
          packages: list[str] | None = None, ready_marker: bool = True,
          labels_json: bool | Path | None = None, prune: bool = False) -> dict:
    families = set(families or FAMILIES)
    bad = families - set(FAMILIES)
    if bad:
        raise sources.CorpusError(f"unknown families {sorted(bad)}; choose from {', '.join(FAMILIES)}")
    out = Path(out)
    scratch = Path(scratch or default_scratch())
    out.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    if not sources.LABEL_RULES.exists():
        raise sources.CorpusError(f"label rules missing: {sources.LABEL_RULES}")
    import shutil
    for tool in ("dpkg-deb", "apt-get"):
        if shutil.which(tool) is None and ({"environmental", "speech"} & families):
            raise sources.CorpusError(f"{tool} not found: the corpus builder needs Debian's package tools")
    if {"instruments", "music"} & families:
        try:  # checked up front: the renders come after the package stages, tens of minutes in
            import fluidsynth  # noqa: F401
        except ImportError as exc:
            raise sources.CorpusError(
                f"the instrument and music renders need FluidSynth ({exc}); install the system library "
                "(Debian/Ubuntu: apt-get install libfluidsynth3, or rerun scripts/setup.sh as root)") from None
        from .render import FLUIDR3, FLUIDR3_PACKAGE

        if not Path(FLUIDR3).exists():
            raise sources.CorpusError(f"the instrument and music renders need the FluidR3 General MIDI soundfont "
                                      f"{FLUIDR3}; install it (Debian/Ubuntu: apt-get install {FLUIDR3_PACKAGE[0]})")
    if "speech" in families:
        # the synthetic voices are a third of the speech family: a build without an engine would quietly be
        # another corpus (and another vocabulary count), so say so before anything runs
        from . import tts

        lacking = [e for e in tts.ENGINES if shutil.which(e) is None]
        if lacking:
            pkgs = [*tts.ENGINES, *(v.package for v in tts.FESTIVAL)]
            raise sources.CorpusError(f"the speech family's synthetic voices need {', '.join(lacking)}; install "
                                      f"them (Debian/Ubuntu: apt-get install {' '.join(pkgs)})")
    real_fams = {"environmental", "speech", "music"} & families
    # the repo's label vocabulary is only rewritten by a full, uncapped build
    full = families == set(FAMILIES) and max_minutes is None
    lj = (labels_json if labels_json is not None else full)
    if real_fams:
        build_real(out, scratch, real_fams, max_minutes, packages)
        # the repo's vocabulary is only written once every family is in (a partial one would drop labels
        # from training and flag known concepts in the app, should anything read it mid-build)
        write_manifest(out, labels_json=False, scratch=scratch)
    build_generated(out, scratch, families, max_minutes, jobs, inst_minutes, tts_scale)
    rows = write_manifest(out, labels_json=lj, scratch=scratch)
    if prune:
        log(f"pruned {prune_orphans(out)} clip files not in the manifest")
    fams = {r["family"] for r in rows}
    if ready_marker and set(FAMILIES) <= fams and not (out / "READY_V1").exists():
        atomic_write_text(out / "READY_V1", f"{len(rows)}\n")
    s = json.loads((out / "summary.json").read_text())
    log(f"corpus: {s['clips']} clips, {s['minutes']:.1f} min: " +
        ", ".join(f"{k} {v['minutes']:.0f} min" for k, v in s["by_family"].items()))
    return s
