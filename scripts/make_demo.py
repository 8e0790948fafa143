#!/usr/bin/env python3
"""Make the bundled demo session in plugin_bridge/data/demo/ (deterministic): a 12-second post-production
scene for the dialogue / music / effects split.

Tracks (mono, 48 kHz, 24-bit FLAC, 12 s), every recorded source from a file the corpus holds out of training
(its dev split: whole files kept aside for validation, so the model has never trained on them):
  dialogue.flac  two lines by the espeak-ng voice en-gb-scotland+m4 (a dev-split voice), a little room tone
  music.flac     a music bed under the dialogue: 0ad-data "Ammon-Ra" (from 40 s, faded in and out)
  fx.flac        effects: a birdsong ambience bed (0ad-data day_temperate_13), footsteps on dirt (0ad-data),
                 a door closing (ufoai-sound door3-close), footsteps on gravel (ufoai-sound)
  mix.flac       the sum of the three tracks
Levels follow a dialogue-first mix, fixed here before any model was scored on it: music bed 12 dB under the
dialogue (RMS while speaking), effect spots peaking 6 dB under the dialogue's peak, the ambience bed 22 dB
under the dialogue.  Plus CREDITS.md and SHA256SUMS.  Needs: espeak-ng, soundfile, scipy; the 0ad-data and
ufoai-sound .debs are downloaded (never installed) into --scratch if they are not there yet.

    python scripts/make_demo.py --manifest CORPUS/manifest.jsonl [--out plugin_bridge/data/demo] [--scratch DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from plugin_bridge.corpus.build import default_scratch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SR = 48000
SECONDS = 12.0
N = int(SR * SECONDS)
VOICE = "en-gb-scotland+m4"
LINES = [
    (0.7, "Right, we're rolling. Take three, from the top of the scene."),
    (6.3, "Close the door quietly, and keep the music under the dialogue."),
]
#: (package, member inside the package's archive, start in the scene s, offset in the file s, length s or None)
MUSIC = ("0ad-data", "audio/music/Ammon-Ra.ogg", 0.0, 40.0, SECONDS)
AMBIENCE = ("0ad-data", "audio/ambient/dayscape/day_temperate_13.ogg", 0.0, 3.0, SECONDS)
SPOTS = [
    ("0ad-data", "audio/actor/human/movement/hstep_dirt_MN_12.ogg", 3.3, 0.0, None),
    ("ufoai-sound", "sound/doors/door3-close.ogg", 5.1, 0.0, None),
    ("ufoai-sound", "sound/footsteps/gravel1.ogg", 10.4, 0.0, None),
    ("ufoai-sound", "sound/footsteps/gravel1.ogg", 10.95, 0.0, None),
]
MUSIC_UNDER_DB = 12.0
SPOT_PEAK_UNDER_DB = 6.0
AMBIENCE_UNDER_DB = 22.0


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    from math import gcd
    from scipy.signal import resample_poly
    g = gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def quantise16(x: np.ndarray) -> np.ndarray:
    """Keep 15 significant bits inside the 24-bit container (FLAC stores the wasted bits for free), so the
    four files stay under 1.5 MB; noise floor about -90 dBFS, inaudible at demo levels."""
    return (np.round(np.clip(x, -1, 1) * 16383.0) / 16384.0).astype(np.float32)


def dialogue() -> np.ndarray:
    import soundfile as sf
    out = np.zeros(N, np.float32)
    with tempfile.TemporaryDirectory() as td:
        for i, (start, text) in enumerate(LINES):
            wav = Path(td) / f"l{i}.wav"
            subprocess.run(["espeak-ng", "-v", VOICE, "-s", "150", "-w", str(wav), text], check=True,
                           capture_output=True)
            y, sr = sf.read(str(wav), dtype="float32")
            y = resample(y, sr, SR)
            y = y / (np.abs(y).max() + 1e-9) * 0.5
            a = int(start * SR)
            b = min(N, a + len(y))
            out[a:b] += y[: b - a]
    # room tone: quiet low-passed noise (deterministic)
    from scipy.signal import butter, lfilter
    rng = np.random.default_rng(20261122)
    b_, a_ = butter(2, 600 / (SR / 2))
    tone = lfilter(b_, a_, rng.normal(0, 1, N)).astype(np.float32)
    tone *= 10 ** (-60 / 20) / (np.sqrt(np.mean(tone ** 2)) + 1e-12)
    return out + tone


def speaking_rms(x: np.ndarray) -> float:
    """RMS over the 50 ms frames where the dialogue is within 30 dB of its loudest frame."""
    f = x[: len(x) // 2400 * 2400].reshape(-1, 2400)
    e = np.sqrt(np.mean(f ** 2, axis=1))
    return float(np.sqrt(np.mean(e[e > e.max() * 10 ** (-30 / 20)] ** 2)))


def _source(scratch: Path, spec) -> np.ndarray:
    from plugin_bridge.corpus import sources
    from plugin_bridge.corpus.common import load_audio
    pkg, member, at, offset, length = spec
    root = sources.download_and_unpack(pkg, scratch / "debs", scratch / "x")
    y = load_audio(root / "zip" / member, sr=SR, start_s=offset, max_seconds=length)
    out = np.zeros(N, np.float32)
    a = int(at * SR)
    b = min(N, a + len(y))
    out[a:b] = y[: b - a]
    return out


def _fade(y: np.ndarray, seconds: float) -> np.ndarray:
    n = int(seconds * SR)
    y = y.copy()
    y[:n] *= np.linspace(0, 1, n, dtype=np.float32)
    y[-n:] *= np.linspace(1, 0, n, dtype=np.float32)
    return y


def music(scratch: Path, ref_rms: float) -> np.ndarray:
    y = _fade(_source(scratch, MUSIC), 1.5)
    return y * (ref_rms * 10 ** (-MUSIC_UNDER_DB / 20) / (np.sqrt(np.mean(y ** 2)) + 1e-12))


def fx(scratch: Path, ref_rms: float, ref_peak: float) -> np.ndarray:
    bed = _fade(_source(scratch, AMBIENCE), 0.5)
    bed *= ref_rms * 10 ** (-AMBIENCE_UNDER_DB / 20) / (np.sqrt(np.mean(bed ** 2)) + 1e-12)
    out = bed
    for spec in SPOTS:
        y = _source(scratch, spec)
        out = out + y * (ref_peak * 10 ** (-SPOT_PEAK_UNDER_DB / 20) / (np.abs(y).max() + 1e-12))
    return out.astype(np.float32)


CREDITS = """# Demo session credits

A 12-second post-production scene (mono, 48 kHz, 24-bit FLAC) made by `scripts/make_demo.py` (deterministic),
for the dialogue / music / effects split: `plugin-bridge separate mix.flac -q dialogue -q music -q effects`.
Every recorded source is a file of the corpus's **dev split** (whole files held out of training and used
only for validation), so the shipped model has never trained on any of them.  Levels (set before any model was
scored on the scene): music bed {music_db:.0f} dB under the dialogue, effect spots peaking {spot_db:.0f} dB under
the dialogue's peak, ambience bed {amb_db:.0f} dB under the dialogue.

| file | content | source package | licence | attribution |
|---|---|---|---|---|
| `dialogue.flac` | two spoken lines by the espeak-ng voice `{voice}` + synthetic low-level room tone | `espeak-ng-data` {espeak_v} | GPL-3+ | the eSpeak NG authors |
| `music.flac` | music bed: `{music}` in `public.zip` (from {music_off:.0f} s, faded) | `0ad-data` {oad_v} | CC-BY-SA-3.0 | "0 A.D." (c) Wildfire Games, CC-BY-SA-3.0, http://play0ad.com |
| `fx.flac` | ambience `{amb}` (0ad-data); footsteps `{spot0}` (0ad-data); door `{spot1}` and footsteps `{spot2}` in `0snd.pk3` (ufoai-sound {ufo_v}) | `0ad-data`, `ufoai-sound` | CC-BY-SA-3.0 | "0 A.D." (c) Wildfire Games; UFO: Alien Invasion, (c) 2002-2014 The UFO:AI Team |
| `mix.flac` | sum of the three tracks | (derived) | CC-BY-SA-3.0 (the 0ad-data and ufoai-sound parts) | as above |

Corpus split of each recorded file (from the corpus manifest): {splits}.
Texts of the dialogue were written for this demo.  SHA-256 of the files: see `SHA256SUMS`.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "plugin_bridge" / "data" / "demo")
    ap.add_argument("--scratch", type=Path, default=None,
                    help="where the 0ad-data and ufoai-sound packages are unpacked (default: the corpus build's "
                         "scratch folder)")
    ap.add_argument("--manifest", type=Path, required=True,
                    help="corpus manifest (CORPUS/manifest.jsonl): every recorded source must be in its dev split")
    args = ap.parse_args(argv)
    args.scratch = args.scratch or default_scratch()
    import soundfile as sf
    from plugin_bridge.corpus.sources import dpkg_version, deb_version
    args.out.mkdir(parents=True, exist_ok=True)
    d = dialogue()
    ref_rms, ref_peak = speaking_rms(d), float(np.abs(d).max())
    tracks = {"dialogue": d, "music": music(args.scratch, ref_rms), "fx": fx(args.scratch, ref_rms, ref_peak)}
    mix = sum(tracks.values())
    peak = float(np.abs(mix).max())
    if peak > 0.95:
        g = 0.95 / peak
        tracks = {k: v * g for k, v in tracks.items()}
        mix = mix * g
    tracks = {k: quantise16(v) for k, v in tracks.items()}
    mix = quantise16(sum(tracks.values()))
    sums = []
    for name, y in list(tracks.items()) + [("mix", mix)]:
        p = args.out / f"{name}.flac"
        sf.write(str(p), y, SR, subtype="PCM_24", format="FLAC")
        sums.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}")
    (args.out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    members = [MUSIC[1], AMBIENCE[1]] + [sp[1] for sp in SPOTS]
    splits = {m: set() for m in members}
    for line in args.manifest.read_text().splitlines():
        d = json.loads(line)
        for part in d["source_path"].split(" + "):
            for m in members:
                if part.strip().endswith(m):
                    splits[m].add(d["split"])
    if any(v - {"dev"} for v in splits.values()):
        raise SystemExit(f"a demo source is not (only) in the dev split: {splits}")
    split_text = "; ".join(f"`{m.rsplit('/', 1)[-1]}` {', '.join(sorted(v)) or 'not in the corpus'}"
                           for m, v in splits.items())
    (args.out / "CREDITS.md").write_text(CREDITS.format(
        music_db=MUSIC_UNDER_DB, spot_db=SPOT_PEAK_UNDER_DB, amb_db=AMBIENCE_UNDER_DB, voice=VOICE,
        espeak_v=dpkg_version("espeak-ng-data") or "", music=MUSIC[1], music_off=MUSIC[3],
        oad_v=deb_version(args.scratch / "debs", "0ad-data") or "",
        ufo_v=deb_version(args.scratch / "debs", "ufoai-sound") or "", amb=AMBIENCE[1], spot0=SPOTS[0][1],
        spot1=SPOTS[1][1], spot2=SPOTS[2][1], splits=split_text))
    total = sum((args.out / f).stat().st_size for f in ("dialogue.flac", "music.flac", "fx.flac", "mix.flac"))
    print(f"demo written to {args.out}: {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
