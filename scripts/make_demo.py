#!/usr/bin/env python3
"""Make the bundled demo session in plugin_bridge/data/demo/ (deterministic).

Tracks (mono, 48 kHz, 24-bit FLAC, 12 s):
  dialogue.flac  flite ``kal16`` voice (CMU flite, BSD-style) with a little synthetic room tone
  music.flac     piano + string-ensemble phrase rendered by FluidSynth through FluidR3_GM (MIT)
  fx.flac        a real birdsong ambience from 0ad-data (CC-BY-SA-3.0, Wildfire Games), a train package
  mix.flac       the sum of the three tracks
Plus CREDITS.md.  Needs: flite, the fluid-soundfont-gm package, pyfluidsynth, soundfile, scipy; the 0ad-data
.deb is downloaded (never installed) into --scratch if it is not there yet.

    python scripts/make_demo.py --manifest CORPUS/manifest.jsonl [--out plugin_bridge/data/demo] [--scratch DIR]
"""
from __future__ import annotations

import argparse
import hashlib
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
FLUIDR3 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
FX_PACKAGE = "0ad-data"
FX_MEMBER = "audio/ambient/dayscape/day_temperate_gen_02.ogg"     # inside public.zip
FX_OFFSET_S = 2.0
LINES = [
    (0.6, "Right, we're rolling. Take three, from the top of the scene."),
    (5.4, "Keep the birds in the background, and bring the piano up slowly."),
]


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
            subprocess.run(["flite", "-voice", "kal16", "-t", text, "-o", str(wav)], check=True, capture_output=True)
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


def music() -> np.ndarray:
    import fluidsynth
    fs = fluidsynth.Synth(samplerate=float(SR), gain=0.3)
    sfid = fs.sfload(FLUIDR3)
    fs.program_select(0, sfid, 0, 0)     # piano
    fs.program_select(1, sfid, 0, 48)    # string ensemble
    fs.cc(0, 91, 40)
    fs.cc(1, 91, 60)
    fs.cc(1, 7, 80)
    beat = 0.5  # 120 bpm
    chords = [[48, 55, 60, 64], [45, 52, 57, 60], [41, 48, 53, 57], [43, 50, 55, 59]]   # C Am F G
    melody = [72, 71, 72, 76, 74, 72, 69, 71, 72, 69, 65, 67, 69, 72, 71, 67, 74, 72, 71, 67, 74, 76, 74, 71]
    ev = []
    for bar in range(6):
        ch = chords[bar % 4]
        t0 = 0.5 + bar * 4 * beat
        for p in ch[1:]:
            ev.append((t0, 1, 1, p, 62))
            ev.append((t0 + 4 * beat - 0.05, 0, 1, p, 0))
        ev.append((t0, 1, 0, ch[0] - 12, 70))
        ev.append((t0 + 2 * beat, 0, 0, ch[0] - 12, 0))
        for k in range(4):
            p = melody[(bar * 4 + k) % len(melody)]
            on = t0 + k * beat
            ev.append((on, 1, 0, p, 84 if k == 0 else 72))
            ev.append((on + beat * 0.9, 0, 0, p, 0))
    ev.sort(key=lambda e: (e[0], e[1]))
    chunks, cur = [], 0
    for t, on, ch, p, v in ev:
        n = int(t * SR) - cur
        if n > 0:
            chunks.append(fs.get_samples(n))
            cur += n
        if on:
            fs.noteon(ch, p, v)
        else:
            fs.noteoff(ch, p)
    chunks.append(fs.get_samples(max(0, N - cur)))
    fs.delete()
    y = np.concatenate(chunks).astype(np.float32).reshape(-1, 2).mean(axis=1) / 32768.0
    y = y[:N]
    fade = int(1.0 * SR)
    y[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    return y / (np.abs(y).max() + 1e-9) * 0.3


def fx(scratch: Path) -> np.ndarray:
    from plugin_bridge.corpus import sources
    from plugin_bridge.corpus.common import load_audio
    root = sources.download_and_unpack(FX_PACKAGE, scratch / "debs", scratch / "x")
    y = load_audio(root / "zip" / FX_MEMBER, sr=SR)
    y = y[int(FX_OFFSET_S * SR):]
    if len(y) < N:
        y = np.tile(y, int(np.ceil(N / len(y))))
    y = y[:N].copy()
    fade = int(0.5 * SR)
    y[:fade] *= np.linspace(0, 1, fade, dtype=np.float32)
    y[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    rms = np.sqrt(np.mean(y ** 2)) + 1e-12
    return y * (10 ** (-30 / 20) / rms)


CREDITS = """# Demo session credits

A 12-second demo session (mono, 48 kHz, 24-bit FLAC) made by `scripts/make_demo.py` (deterministic).

| file | content | source package | licence | attribution |
|---|---|---|---|---|
| `dialogue.flac` | two spoken lines by the flite `kal16` voice + synthetic low-level room tone | `flite` {flite_v} (CMU Flite, voice kal16) | BSD-style (CMU Flite licence) | Carnegie Mellon University, Language Technologies Institute |
| `music.flac` | piano + string-ensemble phrase (C-Am-F-G) written in the script, rendered by FluidSynth | `fluid-soundfont-gm` {fluid_v} (FluidR3_GM.sf2) | MIT | FluidR3_GM by Frank Wen |
| `fx.flac` | birdsong ambience, from `{fx_member}` in `public.zip` (from {fx_off:.0f} s, faded) | `0ad-data` {oad_v} | CC-BY-SA-3.0 | "0 A.D." sounds (c) Wildfire Games, CC-BY-SA-3.0, http://play0ad.com |
| `mix.flac` | sum of the three tracks | (derived) | CC-BY-SA-3.0 (because of fx.flac) | as above |

The fx recording comes from a package used for training (0ad-data). In the corpus it is cut into clips of
label `birds`; its split in the corpus is: **{fx_split}**.  Texts of the dialogue were written for this demo.
SHA-256 of the files: see `SHA256SUMS`.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "plugin_bridge" / "data" / "demo")
    ap.add_argument("--scratch", type=Path, default=None,
                    help="where the 0ad-data package is unpacked (default: the corpus build's scratch folder)")
    ap.add_argument("--manifest", type=Path, required=True,
                    help="corpus manifest (CORPUS/manifest.jsonl), only used to report the fx file's split in CREDITS.md")
    args = ap.parse_args(argv)
    args.scratch = args.scratch or default_scratch()
    import soundfile as sf
    from plugin_bridge.corpus.sources import dpkg_version, deb_version
    args.out.mkdir(parents=True, exist_ok=True)
    tracks = {"dialogue": dialogue(), "music": music(), "fx": fx(args.scratch)}
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
    fx_split = "unknown (no corpus manifest found)"
    if args.manifest.exists():
        import json
        splits = {json.loads(l)["split"] for l in args.manifest.read_text().splitlines()
                  if FX_MEMBER in l}
        fx_split = ", ".join(sorted(splits)) if splits else "not in the corpus"
    (args.out / "CREDITS.md").write_text(CREDITS.format(
        flite_v=dpkg_version("flite") or "", fluid_v=dpkg_version("fluid-soundfont-gm") or "",
        oad_v=deb_version(args.scratch / "debs", "0ad-data") or "", fx_member=FX_MEMBER, fx_off=FX_OFFSET_S,
        fx_split=fx_split))
    total = sum((args.out / f).stat().st_size for f in ("dialogue.flac", "music.flac", "fx.flac", "mix.flac"))
    print(f"demo written to {args.out}: {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
