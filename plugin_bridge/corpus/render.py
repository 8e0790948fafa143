"""Instrument family: solo parts rendered with FluidSynth through FluidR3_GM (MIT).

Note material is generated (melodies, chords, arpeggios, strums, bass lines, drum patterns — random but
musical, seeded) or taken from the music21 corpus (Palestrina masses and folk tunes only: Bach chorales and
Beethoven/Mozart/Haydn quartets are reserved for evaluation and are never read here).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import SR, ClipMeta, PartWriter, cut_pieces, manifest_row, resample, short_hash, split_of, write_pieces, \
    trim_silence, write_clip

FLUIDR3 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
FLUIDR3_PACKAGE = ("fluid-soundfont-gm", "MIT")
# MuseScore General (train only; ~190 of its presets are FluidR3Mono, the rest is new: AKAI piano (PD),
# VSCO strings (CC0), PD trumpet, S. C. Collins synths) — a second timbre family for robustness.
MUSESCORE_PACKAGE = ("musescore-general-soundfont", "MIT (parts PD or CC0)")
MUSESCORE_SF3 = "usr/share/sounds/sf3/MuseScore_General_Full.sf3"
MSG_MINUTES = 10.0
RENDER_SR = 32000

SCALES = {
    "major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10], "dorian": [0, 2, 3, 5, 7, 9, 10],
    "mixolydian": [0, 2, 4, 5, 7, 9, 10], "harmonic_minor": [0, 2, 3, 5, 7, 8, 11],
    "penta_major": [0, 2, 4, 7, 9], "penta_minor": [0, 3, 5, 7, 10], "blues": [0, 3, 5, 6, 7, 10],
}
PROGRESSIONS = [[0, 3, 4, 0], [0, 5, 3, 4], [0, 4, 5, 3], [1, 4, 0, 0], [0, 3, 0, 4], [5, 3, 0, 4],
                [0, 2, 3, 4], [0, 6, 5, 4], [0, 3, 6, 2], [0, 0, 3, 4]]

# GM program (0-based) -> (name, low, high) playable range used for that program
PROGRAMS = {
    0: ("Acoustic Grand Piano", 28, 100), 1: ("Bright Acoustic Piano", 28, 100),
    4: ("Electric Piano 1", 36, 88), 5: ("Electric Piano 2", 36, 88),
    16: ("Drawbar Organ", 36, 88), 17: ("Percussive Organ", 36, 88), 18: ("Rock Organ", 36, 88),
    19: ("Church Organ", 29, 88),
    24: ("Nylon Guitar", 40, 79), 25: ("Steel Guitar", 40, 81),
    26: ("Jazz Guitar", 40, 81), 27: ("Clean Guitar", 40, 84), 29: ("Overdriven Guitar", 40, 84),
    30: ("Distortion Guitar", 40, 84),
    33: ("Fingered Bass", 28, 55), 34: ("Picked Bass", 28, 55), 35: ("Fretless Bass", 28, 55),
    40: ("Violin", 55, 96), 110: ("Fiddle", 55, 91),
    42: ("Cello", 36, 74),
    44: ("Tremolo Strings", 36, 88), 48: ("String Ensemble 1", 36, 88), 49: ("String Ensemble 2", 36, 88),
    46: ("Orchestral Harp", 31, 96),
    56: ("Trumpet", 54, 84), 59: ("Muted Trumpet", 54, 82),
    57: ("Trombone", 40, 72), 58: ("Tuba", 28, 58), 60: ("French Horn", 41, 77), 61: ("Brass Section", 45, 80),
    64: ("Soprano Sax", 56, 87), 65: ("Alto Sax", 49, 81), 66: ("Tenor Sax", 44, 76), 67: ("Baritone Sax", 36, 69),
    71: ("Clarinet", 50, 89),
    72: ("Piccolo", 74, 102), 73: ("Flute", 60, 96),
    80: ("Square Lead", 48, 88), 81: ("Saw Lead", 48, 88), 87: ("Bass & Lead", 40, 80),
    88: ("New Age Pad", 36, 84), 89: ("Warm Pad", 36, 84), 90: ("Polysynth Pad", 36, 84),
    91: ("Choir Pad", 40, 84), 94: ("Halo Pad", 36, 84), 95: ("Sweep Pad", 36, 84),
    52: ("Choir Aahs", 48, 79), 53: ("Voice Oohs", 48, 79),
    11: ("Vibraphone", 53, 89), 12: ("Marimba", 45, 96), 13: ("Xylophone", 65, 100),
}
DRUM_KITS = {0: "Standard", 8: "Room", 16: "Power", 24: "Electronic", 25: "TR-808", 32: "Jazz", 40: "Brush"}


@dataclass(frozen=True)
class InstrumentLabel:
    label: str
    programs: tuple[int, ...]
    styles: tuple[str, ...]
    sustained: bool = False   # vibrato/expression makes sense


INSTRUMENT_LABELS: dict[str, InstrumentLabel] = {l.label: l for l in [
    InstrumentLabel("piano", (0, 1), ("keys", "arpeggio", "block", "melody", "alberti")),
    InstrumentLabel("electric_piano", (4, 5), ("keys", "block", "arpeggio", "melody")),
    InstrumentLabel("organ", (16, 17, 18, 19), ("sustain", "block", "melody", "keys")),
    InstrumentLabel("acoustic_guitar", (24, 25), ("strum", "arpeggio", "melody")),
    InstrumentLabel("electric_guitar", (26, 27, 29, 30), ("strum", "melody", "arpeggio", "power")),
    InstrumentLabel("bass_guitar", (33, 34, 35), ("bass",)),
    InstrumentLabel("violin", (40, 110), ("melody",), True),
    InstrumentLabel("cello", (42,), ("melody", "slow_melody"), True),
    InstrumentLabel("string_ensemble", (48, 49, 44), ("sustain", "block", "octave_melody"), True),
    InstrumentLabel("harp", (46,), ("arpeggio", "melody", "block")),
    InstrumentLabel("trumpet", (56, 59), ("melody",), True),
    InstrumentLabel("brass", (57, 58, 60, 61), ("melody", "slow_melody", "block"), True),
    InstrumentLabel("saxophone", (64, 65, 66, 67), ("melody",), True),
    InstrumentLabel("clarinet", (71,), ("melody", "slow_melody"), True),
    InstrumentLabel("flute", (73, 72), ("melody", "slow_melody"), True),
    InstrumentLabel("synth_lead", (80, 81, 87), ("melody", "arpeggio")),
    InstrumentLabel("synth_pad", (88, 89, 90, 91, 94, 95), ("sustain",)),
    InstrumentLabel("choir", (52, 53), ("sustain", "slow_melody"), True),
    InstrumentLabel("mallets", (11, 12, 13), ("melody", "arpeggio")),
    InstrumentLabel("drums", tuple(DRUM_KITS), ("drums",)),
]}

# note events: (start_s, end_s, pitch, velocity)
Note = tuple


# ----------------------------------------------------------------------------- note generators
def _scale_pitches(tonic: int, scale: list[int], lo: int, hi: int) -> list[int]:
    return [p for p in range(lo, hi + 1) if (p - tonic) % 12 in scale]


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _vel(rng, base: int, accent: bool = False) -> int:
    v = base + (12 if accent else 0) + rng.normal(0, 6)
    return int(np.clip(v, 20, 127))


def _chord(tonic: int, scale: list[int], degree: int, n: int = 3) -> list[int]:
    """Pitch classes (relative to C) of a diatonic chord on ``degree`` with ``n`` stacked thirds."""
    if len(scale) < 7:
        scale = SCALES["major"]
    return [(tonic + scale[(degree + 2 * k) % 7] + 12 * ((degree + 2 * k) // 7)) for k in range(n)]


def _voice(chord: list[int], lo: int, hi: int, center: int) -> list[int]:
    """Place chord tones (pitch classes with offsets) in one octave starting near ``center`` within range."""
    base = chord[0]
    shift = 12 * round((center - base) / 12)
    out = [p + shift for p in chord]
    while out and max(out) > hi:
        out = [p - 12 for p in out]
    while out and min(out) < lo:
        out = [p + 12 for p in out]
    return [p for p in out if lo <= p <= hi]


def gen_melody(rng, lo, hi, dur, tempo, values=(0.5, 1, 1, 1.5, 2), legato=0.9, rest_p=0.08, vel=80,
               tonic=None, scale=None):
    tonic = int(rng.integers(0, 12)) if tonic is None else tonic
    scale = scale or SCALES[rng.choice(list(SCALES))]
    pitches = _scale_pitches(tonic, scale, lo, hi)
    if len(pitches) < 3:
        pitches = list(range(lo, hi + 1))
    beat = 60.0 / tempo
    idx = int(rng.integers(len(pitches) // 4, max(len(pitches) // 4 + 1, 3 * len(pitches) // 4)))
    steps = np.array([-4, -3, -2, -1, 0, 1, 2, 3, 4, 5, -5])
    sp = np.array([1, 2, 8, 14, 4, 14, 8, 2, 1, 0.5, 0.5]); sp = sp / sp.sum()
    t, notes, k = 0.0, [], 0
    while t < dur:
        v = float(rng.choice(values)) * beat
        if rng.random() < rest_p and notes:
            t += v
            continue
        idx = idx + int(rng.choice(steps, p=sp))
        if idx < 0:
            idx = -idx
        if idx >= len(pitches):
            idx = 2 * (len(pitches) - 1) - idx
        idx = int(np.clip(idx, 0, len(pitches) - 1))
        on = max(0.0, t + rng.normal(0, 0.008))
        notes.append((on, on + v * legato, pitches[idx], _vel(rng, vel, accent=(k % 4 == 0))))
        t += v
        k += 1
    return notes


def gen_chords(rng, lo, hi, dur, tempo, style, vel=75, key=None):
    """``key`` = (tonic, scale, progression) shared by the parts of an arrangement; None draws one."""
    if key is None:
        tonic = int(rng.integers(0, 12))
        scale = SCALES[rng.choice(["major", "minor", "dorian", "mixolydian", "harmonic_minor"])]
        prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    else:
        tonic, scale, prog = key
    beat = 60.0 / tempo
    bar_beats = int(rng.choice([4, 4, 3])) if style != "strum" else 4
    chord_beats = bar_beats * int(rng.choice([1, 1, 2])) if style in ("sustain",) else bar_beats
    n4 = int(rng.choice([3, 3, 4]))
    center = int(rng.integers(lo + 6, max(lo + 7, hi - 12)))
    notes = []
    t, ci = 0.0, 0
    while t < dur:
        ch = _chord(tonic, scale, prog[ci % len(prog)], n4)
        tones = _voice(ch, lo, hi, center)
        span = chord_beats * beat
        if not tones:
            t += span; ci += 1; continue
        if style in ("sustain", "block") :
            hits = [0.0] if style == "sustain" else \
                [b * beat for b in (_pick(rng, [[0, 2], [0, 1, 2, 3], [0, 1.5, 3], [0]]) if bar_beats == 4 else [0, 1, 2])]
            length = span if style == "sustain" else beat * float(rng.choice([0.5, 0.9, 1.8]))
            for h in hits:
                a = rng.integers(-1, 1)
                for p in tones + ([tones[0] - 12] if style == "sustain" and tones[0] - 12 >= lo and a else []):
                    on = t + h + abs(rng.normal(0, 0.01))
                    notes.append((on, on + min(length, span - h) * 0.98, p, _vel(rng, vel, h == 0)))
        elif style in ("arpeggio", "alberti"):
            sub = float(rng.choice([0.5, 0.25, 1 / 3])) if style == "arpeggio" else 0.5
            ext = tones + [p + 12 for p in tones if p + 12 <= hi]
            if style == "alberti" and len(tones) >= 3:
                pattern = [tones[0], tones[2], tones[1], tones[2]]
            else:
                kind = rng.integers(3)
                pattern = ext if kind == 0 else ext[::-1] if kind == 1 else ext + ext[-2:0:-1]
            n_steps = int(round(span / (sub * beat)))
            ring = float(rng.choice([1.0, 2.0, 4.0]))
            for s in range(n_steps):
                on = t + s * sub * beat + rng.normal(0, 0.006)
                notes.append((max(0, on), on + sub * beat * ring, pattern[s % len(pattern)], _vel(rng, vel, s == 0)))
        elif style in ("strum", "power"):
            if style == "power":
                root = tones[0] if tones[0] < 60 else tones[0] - 12
                tones = [p for p in (root, root + 7, root + 12) if lo <= p <= hi]
            else:
                tones = sorted(set(tones + [p + 12 for p in tones if p + 12 <= hi][:2] + [p - 12 for p in tones[:1] if p - 12 >= lo]))
            patt = _pick(rng, [[0, 1, 2, 3], [0, 1.5, 2, 3, 3.5], [0, 0.5, 1.5, 2.5, 3], [0, 2], [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]])
            for j, h in enumerate(patt):
                down = (h * 2) % 2 == 0
                order = tones if down else tones[::-1]
                gap = float(rng.uniform(0.008, 0.025))
                end = t + h * beat + beat * float(rng.choice([0.45, 0.9]))
                for i, p in enumerate(order):
                    on = t + h * beat + i * gap
                    notes.append((on, max(end, on + 0.05), p, _vel(rng, vel - (0 if down else 10), j == 0)))
        t += span
        ci += 1
    return notes


def gen_keys(rng, lo, hi, dur, tempo, vel=75):
    """Piano-style texture: left-hand bass/chords plus right-hand melody."""
    split = int(np.clip(60, lo + 12, hi - 12))
    tonic = int(rng.integers(0, 12))
    scale_name = rng.choice(["major", "minor", "dorian", "mixolydian"])
    scale = SCALES[scale_name]
    beat = 60.0 / tempo
    prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    notes = []
    t, ci = 0.0, 0
    lh = rng.integers(3)
    while t < dur:
        ch = _chord(tonic, scale, prog[ci % len(prog)], 3)
        bass = _voice(ch[:1], max(lo, 28), split - 1, split - 18)
        tones = _voice(ch, max(lo, 40), split + 4, split - 7)
        if lh == 0 and bass:                    # bass note + chord on 2 and 4
            notes.append((t, t + 4 * beat, bass[0], _vel(rng, vel, True)))
            for b in (1, 3):
                for p in tones:
                    notes.append((t + b * beat, t + (b + 0.8) * beat, p, _vel(rng, vel - 15)))
        elif lh == 1:                          # broken chord
            patt = (bass + tones) if bass else tones
            for s in range(8):
                on = t + s * 0.5 * beat
                notes.append((on, on + 1.5 * beat, patt[s % len(patt)], _vel(rng, vel - 10, s == 0)))
        else:                                  # held chord
            for p in (bass + tones):
                notes.append((t, t + 4 * beat * 0.97, p, _vel(rng, vel - 8, True)))
        t += 4 * beat
        ci += 1
    notes += gen_melody(rng, split, hi, dur, tempo, values=(0.5, 0.5, 1, 1, 2), vel=vel + 5, tonic=tonic, scale=scale)
    return notes


def gen_bass(rng, lo, hi, dur, tempo, vel=85, key=None):
    if key is None:
        tonic = int(rng.integers(0, 12))
        scale = SCALES[rng.choice(["major", "minor", "dorian", "mixolydian"])]
        prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    else:
        tonic, scale, prog = key
    beat = 60.0 / tempo
    kind = int(rng.integers(5))
    notes = []
    t, ci = 0.0, 0
    while t < dur:
        root = _voice(_chord(tonic, scale, prog[ci % len(prog)], 1), lo, hi, lo + 8)[0]
        if key is not None:           # an arrangement stays diatonic: the chord's own fifth (dim. on vii/ii)
            up = (_chord(tonic, scale, prog[ci % len(prog)], 3)[2] - root) % 12
            fifth = root + up if root + up <= hi else root + up - 12
        else:
            fifth = root + 7 if root + 7 <= hi else root - 5
        octave = root + 12 if root + 12 <= hi else root
        if kind == 0:
            patt = [(0, 2, root), (2, 2, root)]
        elif kind == 1:
            patt = [(0, 1, root), (1, 1, fifth), (2, 1, root), (3, 1, fifth)]
        elif kind == 2:
            patt = [(b * 0.5, 0.45, octave if b % 2 else root) for b in range(8)]
        elif kind == 3:                     # walking
            sp = _scale_pitches(tonic, scale, lo, hi)
            i = sp.index(root) if root in sp else 0
            patt = [(b, 0.9, sp[int(np.clip(i + d, 0, len(sp) - 1))]) for b, d in enumerate([0, 1, 2, int(rng.choice([3, 4, -1]))])]
        else:                               # syncopated
            patt = [(0, 0.75, root), (0.75, 0.5, root), (1.5, 1, fifth), (3, 0.5, octave), (3.5, 0.5, root)]
        for b, d, p in patt:
            on = t + b * beat + rng.normal(0, 0.006)
            notes.append((max(0, on), on + d * beat * 0.92, int(p), _vel(rng, vel, b == 0)))
        t += 4 * beat
        ci += 1
    return notes


KICK, SNARE, SIDE, CLAP, HHC, HHP, HHO, CRASH, RIDE, TOM_L, TOM_M, TOM_H, TAMB, COWB = \
    36, 38, 37, 39, 42, 44, 46, 49, 51, 45, 47, 50, 54, 56
DRUM_PATTERNS = {   # 16 steps per bar; lists of (instrument, steps)
    "rock": {KICK: [0, 8, 10], SNARE: [4, 12], HHC: list(range(0, 16, 2))},
    "pop": {KICK: [0, 6, 8], SNARE: [4, 12], HHC: list(range(16))},
    "four": {KICK: [0, 4, 8, 12], CLAP: [4, 12], HHO: [2, 6, 10, 14], HHC: [0, 4, 8, 12]},
    "funk": {KICK: [0, 3, 10], SNARE: [4, 7, 12, 15], HHC: list(range(16))},
    "shuffle": {KICK: [0, 8], SNARE: [4, 12], RIDE: [0, 3, 4, 7, 8, 11, 12, 15]},
    "jazz": {RIDE: [0, 4, 7, 8, 12, 15], HHP: [4, 12], KICK: [0], SIDE: [14]},
    "halftime": {KICK: [0, 3, 10], SNARE: [8], HHC: list(range(0, 16, 2))},
    "bossa": {KICK: [0, 3, 4, 8, 11, 12], SIDE: [0, 3, 6, 10, 13], HHC: list(range(0, 16, 2))},
    "latin": {KICK: [0, 8], COWB: [0, 3, 6, 10, 12], TAMB: list(range(0, 16, 2)), SNARE: [4, 12]},
}


def gen_drums(rng, dur, tempo, vel=90):
    name = list(DRUM_PATTERNS)[int(rng.integers(len(DRUM_PATTERNS)))]
    patt = DRUM_PATTERNS[name]
    step = 60.0 / tempo / 4
    swing = float(rng.choice([0, 0, 0.08, 0.15])) if name in ("shuffle", "jazz") else 0.0
    notes, t, bar = [], 0.0, 0
    while t < dur:
        fill = bar % 4 == 3 and rng.random() < 0.6
        for inst, steps in patt.items():
            for s in steps:
                if fill and s >= 8:
                    continue
                on = t + s * step + (swing * step if s % 2 else 0) + rng.normal(0, 0.004)
                v = vel - (18 if inst in (HHC, HHP) and s % 4 else 0) + (8 if s == 0 else 0)
                notes.append((max(0, on), on + 0.2, inst, _vel(rng, v)))
        if fill:
            toms = [TOM_H, TOM_H, TOM_M, TOM_M, TOM_L, TOM_L, SNARE, SNARE]
            for i, s in enumerate(range(8, 16)):
                on = t + s * step
                notes.append((on, on + 0.2, toms[i] if rng.random() < 0.7 else SNARE, _vel(rng, vel)))
        if bar == 0 and rng.random() < 0.5 or (bar % 4 == 0 and bar and rng.random() < 0.5):
            notes.append((t, t + 0.5, CRASH, _vel(rng, vel)))
        t += 16 * step
        bar += 1
    return notes


def make_material(style: str, rng, lo: int, hi: int, dur: float):
    tempo = float(rng.uniform(60, 150))
    vel = int(rng.choice([55, 70, 85, 100, 112]))
    if style == "melody":
        return gen_melody(rng, lo, hi, dur, tempo, vel=vel)
    if style == "slow_melody":
        return gen_melody(rng, lo, hi, dur, tempo * 0.7, values=(1, 2, 2, 3, 4), legato=0.97, rest_p=0.04, vel=vel)
    if style == "octave_melody":
        m = gen_melody(rng, lo + 12, hi, dur, tempo * 0.8, values=(1, 1, 2, 2, 3), legato=0.97, vel=vel)
        return m + [(a, b, p - 12, v) for a, b, p, v in m if p - 12 >= lo]
    if style == "keys":
        return gen_keys(rng, lo, hi, dur, tempo, vel=vel)
    if style == "bass":
        return gen_bass(rng, lo, hi, dur, tempo, vel=vel)
    if style == "drums":
        return gen_drums(rng, dur, tempo, vel=vel)
    return gen_chords(rng, lo, hi, dur, tempo, style, vel=vel)


# ----------------------------------------------------------------------------- music21 note material
RESERVED_M21 = ("bach", "beethoven", "mozart", "haydn")


def music21_parts(n_palestrina: int = 200, essen_files: int = 2, seed: int = 0) -> list[tuple[str, list[tuple[float, float, int]]]]:
    """Monophonic parts from allowed music21 corpus pieces: [(material id, [(start_ql, dur_ql, midi)])].

    Only Palestrina (Humdrum) and essenFolksong (ABC) are read; Bach chorales and the Beethoven / Mozart /
    Haydn quartets are reserved for evaluation and are refused.
    """
    from music21 import corpus
    rng = np.random.default_rng(seed)
    pal = sorted(str(p) for p in corpus.getComposer("palestrina"))
    pal = [pal[i] for i in sorted(rng.choice(len(pal), size=min(n_palestrina, len(pal)), replace=False))]
    ess = sorted(str(p) for p in corpus.getComposer("essenFolksong"))
    ess = [ess[i] for i in sorted(rng.choice(len(ess), size=min(essen_files, len(ess)), replace=False))]
    out = []
    for comp, p in [("palestrina", p) for p in pal] + [("essenFolksong", p) for p in ess]:
        if any(r in p.lower() for r in RESERVED_M21):
            raise ValueError(f"reserved note material: {p}")
        try:
            s = corpus.parse(p)
        except Exception:
            continue
        scores = list(s.scores) if hasattr(s, "scores") and len(s.scores) else [s]
        for si, sc in enumerate(scores):
            for pi, part in enumerate(sc.parts if hasattr(sc, "parts") and len(sc.parts) else [sc]):
                notes = []
                for n in part.flatten().notes:
                    if n.isChord:
                        n = n.notes[-1]
                    if n.duration.quarterLength <= 0:
                        continue
                    notes.append((float(n.offset), float(n.duration.quarterLength), int(n.pitch.midi)))
                if len(notes) >= 8:
                    out.append((f"m21:{comp}:{Path(p).stem}:{si}:{pi}", notes))
    return out


def build_m21_cache(path: Path, **kw) -> int:
    import json
    parts = music21_parts(**kw)
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(parts))
    os.replace(tmp, path)
    return len(parts)


def material_from_part(part_notes, rng, lo, hi, dur):
    tempo = float(rng.uniform(70, 130))
    ql = 60.0 / tempo
    start = part_notes[int(rng.integers(0, max(1, len(part_notes) - 8)))][0]
    ps = [p for _, _, p in part_notes]
    mid = (min(ps) + max(ps)) / 2
    shift = 12 * round(((lo + hi) / 2 - mid) / 12)
    while max(ps) + shift > hi and min(ps) + shift - 12 >= lo - 6:
        shift -= 12
    while min(ps) + shift < lo and max(ps) + shift + 12 <= hi + 6:
        shift += 12
    vel = int(rng.choice([60, 75, 90, 105]))
    notes = []
    for off, d, p in part_notes:
        t = (off - start) * ql
        if t < 0:
            continue
        if t > dur:
            break
        q = int(np.clip(p + shift, lo, hi))
        notes.append((t, t + d * ql * 0.95, q, _vel(rng, vel, off % 4 == 0)))
    return notes


# ----------------------------------------------------------------------------- rendering
class Renderer:
    def __init__(self, sf2: str = FLUIDR3, sr: int = RENDER_SR):
        import fluidsynth
        self.sr = sr
        self.font = sf2
        self.fs = fluidsynth.Synth(samplerate=float(sr), gain=0.3)
        self.sfid = self.fs.sfload(sf2)
        if self.sfid < 0:
            raise RuntimeError(f"cannot load soundfont {sf2}")

    def render(self, notes, program: int, drums: bool, rng, tail: float = 1.2) -> np.ndarray:
        fs = self.fs
        ch = 9 if drums else 0
        fs.system_reset()
        fs.program_select(ch, self.sfid, 128 if drums else 0, program)
        fs.cc(ch, 7, int(rng.integers(95, 127)))
        fs.cc(ch, 10, 64)
        fs.cc(ch, 91, int(rng.choice([0, 20, 40, 70])))   # reverb send
        fs.cc(ch, 93, int(rng.choice([0, 0, 20])))        # chorus send
        if not drums and rng.random() < 0.5:
            fs.cc(ch, 1, int(rng.integers(0, 50)))          # modulation (vibrato on many presets)
        ev = []
        for a, b, p, v in notes:
            ev.append((a, 1, p, v))
            ev.append((max(b, a + 0.03), 0, p, 0))
        ev.sort(key=lambda e: (e[0], e[1]))
        chunks, cur = [], 0
        for t, on, p, v in ev:
            n = int(t * self.sr) - cur
            if n > 0:
                chunks.append(fs.get_samples(n)); cur += n
            if on:
                fs.noteon(ch, int(p), int(v))
            else:
                fs.noteoff(ch, int(p))
        chunks.append(fs.get_samples(int(tail * self.sr)))
        fs.all_notes_off(ch) if hasattr(fs, "all_notes_off") else None
        fs.all_sounds_off(ch) if hasattr(fs, "all_sounds_off") else None
        fs.get_samples(int(0.2 * self.sr))
        y = np.concatenate(chunks).astype(np.float32).reshape(-1, 2).mean(axis=1) / 32768.0
        return resample(y, self.sr, SR)


RENDER_BLOCK = 64  # units rendered by one fresh synth (resume granularity of the bit-exact replay)
M21_SHARE = 0.25   # share of a melodic label's minutes rendered from music21 parts (when available)


def render_label(out_dir: Path, parts_dir: Path, label: str, minutes: float, seed: int = 1234,
                 m21_material=None, log=print, msg_font: str | None = None, msg_minutes: float = MSG_MINUTES) -> float:
    """Render clips for one instrument label until ``minutes`` of audio exist (resumable).

    Two deterministic unit series: ``label:gen:NNNNN`` (generated material, 75 %) and ``label:m21:NNNNN``
    (music21 parts, 25 %, melodic labels only; falls back to generated material when music21 is missing).
    """
    spec = INSTRUMENT_LABELS[label]
    writer = PartWriter(parts_dir / f"instruments-{label}.jsonl")
    drums = label == "drums"
    melodic = any(s in ("melody", "slow_melody") for s in spec.styles)
    share = M21_SHARE if melodic else 0.0
    renderer = None
    total = 0.0
    series_list = [("gen", minutes * (1 - share)), ("m21", minutes * share)]
    if msg_font:
        series_list.append(("msg", msg_minutes))
    for series, budget in series_list:
        if series == "m21" and budget > 0 and not m21_material:
            log(f"instruments/{label}: no music21 material available, m21 series skipped")
            continue
        font_name = "MuseScoreGeneral" if series == "msg" else "FluidR3"
        if series == "msg":
            pkg, lic = MUSESCORE_PACKAGE
            version = _deb_or_dpkg_version(pkg, Path(msg_font))
        else:
            pkg, lic = FLUIDR3_PACKAGE
            version = fluidr3_version()
        font = msg_font if series == "msg" else FLUIDR3

        def uname(j: int) -> str:
            return f"{label}:{series}:{j:05d}"

        def udur(j: int) -> float:
            return sum(r["duration"] for r in writer.done[uname(j)])

        have = 0.0
        i = 0
        empty = 0
        while have < budget * 60 and empty < 50:
            b0 = i
            # dry pass: is every unit this block still needs already on disk?
            h, j, need = have, b0, False
            while j < b0 + RENDER_BLOCK and h < budget * 60:
                if not writer.has(uname(j), out_dir):
                    need = True
                    break
                h += udur(j)
                j += 1
            if not need:
                have, i = h, j
                continue
            # FluidSynth carries state (block phase, effect tails) from clip to clip: every block starts
            # from a fresh synth and replays its done units, so resumed builds are bit-identical.
            renderer = None
            for j in range(b0, b0 + RENDER_BLOCK):
                if have >= budget * 60:
                    break
                unit = uname(j)
                rng = np.random.default_rng([seed, int(short_hash(unit, n=8), 16)])
                prog = spec.programs[j % len(spec.programs)]
                dur = float(rng.uniform(4.0, 8.5))
                if drums:
                    lo, hi = 0, 127
                    mat_id = f"gen-drums-{j:05d}"
                    notes = make_material("drums", rng, lo, hi, dur)
                    desc = f"generated drum pattern #{j}, kit {prog} ({DRUM_KITS[prog]}) on channel 10"
                else:
                    _, lo, hi = PROGRAMS[prog]
                    if series == "m21" or (series == "msg" and m21_material and j % 4 == 3 and melodic):
                        mid, part = m21_material[int(rng.integers(len(m21_material)))]
                        mat_id = mid
                        notes = material_from_part(part, rng, lo, hi, dur)
                        desc = f"music21 corpus part {mid}, GM program {prog} ({PROGRAMS[prog][0]})"
                    else:
                        style = spec.styles[int(rng.integers(len(spec.styles)))]
                        mat_id = f"gen-{style}-{j:05d}"
                        notes = make_material(style, rng, lo, hi, dur)
                        desc = f"generated {style} material #{j}, GM program {prog} ({PROGRAMS[prog][0]})"
                done = writer.has(unit, out_dir)
                rows = []
                if notes:
                    if renderer is None:
                        renderer = Renderer(font)
                    y = trim_silence(renderer.render(notes, prog, drums, rng))
                    if done:
                        have += udur(j)
                        empty = 0
                        continue
                    group = f"{font_name}:{'kit' if drums else 'prog'}{prog}:{mat_id}"
                    if series == "msg":
                        desc = desc + " [MuseScore_General_Full.sf3]"
                    meta = ClipMeta("instruments", label, group, pkg, version, desc, lic, split=split_of(group))
                    for k, piece in enumerate(cut_pieces(y)):
                        cid = f"inst-{label}-{series}-{j:05d}-{k}"
                        rel, sha, d = write_clip(out_dir, "instruments", label, cid, piece)
                        rows.append(manifest_row(cid, rel, sha, d, meta))
                        have += d
                elif done:
                    continue
                writer.add(unit, rows)
                empty = 0 if rows else empty + 1
                if empty >= 50:
                    log(f"instruments/{label}/{series}: 50 empty renders in a row, giving up")
                    break
            i = b0 + RENDER_BLOCK if have < budget * 60 else j + 1
        total += have
    writer.close()
    log(f"instruments/{label}: {total / 60:.1f} min")
    return total


_FLUID_VERSION = None


def _deb_or_dpkg_version(pkg: str, font: Path) -> str:
    from .sources import dpkg_version
    v = dpkg_version(pkg)
    if v:
        return v
    # unpacked from a .deb in <scratch>/x/<pkg>/usr/share/sounds/sf3/...: look for the .deb next to it
    try:
        debs = Path(font).parents[6] / "debs"
        for f in sorted(debs.glob(f"{pkg}_*.deb")):
            return f.name.split("_")[1].replace("%3a", ":")
    except IndexError:
        pass
    return "unknown"


def ensure_musescore(scratch: Path, log=print) -> str | None:
    """apt-get download + unpack musescore-general-soundfont into scratch (never installed)."""
    import subprocess
    root = Path(scratch) / "x" / MUSESCORE_PACKAGE[0]
    sf3 = root / MUSESCORE_SF3
    if sf3.exists():
        return str(sf3)
    debs = Path(scratch) / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    try:
        if not list(debs.glob(f"{MUSESCORE_PACKAGE[0]}_*.deb")):
            subprocess.run(["apt-get", "download", MUSESCORE_PACKAGE[0]], cwd=debs, capture_output=True, timeout=600)
        deb = sorted(debs.glob(f"{MUSESCORE_PACKAGE[0]}_*.deb"))
        if not deb:
            return None
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(deb[-1]), str(root)], check=True)
    except Exception as exc:
        log(f"MuseScore General unavailable: {exc}")
        return None
    return str(sf3) if sf3.exists() else None


def fluidr3_version() -> str:
    global _FLUID_VERSION
    if _FLUID_VERSION is None:
        from .sources import dpkg_version
        _FLUID_VERSION = dpkg_version("fluid-soundfont-gm") or "3.1"
    return _FLUID_VERSION


# ----------------------------------------------------------------------------- real drum kits (hydrogen)
HYDROGEN_PACKAGE = "hydrogen-drumkits"
HYDROGEN_DIR = "usr/share/hydrogen/data/drumkits"
# train kits and their licence (debian/copyright of hydrogen-drumkits, per .h2drumkit; reviewed).
# circAfrique is reserved for evaluation; "Gimme A Hand" is hand percussion, not a drum kit.
HYDROGEN_KITS = {
    "ForzeeStereo": "GPL-2", "BJA_Pacific": "CC-BY-SA-3.0-us", "rumpf_kit_z01_h2": "CC-BY-3.0",
    "Millo-Drums_v.1": "GPL-2", "Millo_MultiLayered2": "GPL-2", "Millo_MultiLayered3": "GPL-2",
    "ColomboAcousticDrumkit": "GPL-2+ with composition exception", "The Black Pearl 1.0": "GPL-2",
    "Audiophob": "CC0", "ElectricEmpireKit": "GPL-2+", "HardElectro1": "GPL-2+", "VariBreaks": "GPL-2+",
}
HYDROGEN_RESERVED = ("circAfrique",)


def _drum_role(name: str) -> int | None:
    n = name.lower()
    if "roll" in n or "zap" in n or n.strip() in ("fx", "click"):
        return None
    if "kick" in n or "bass drum" in n or "bassdrum" in n or re.search(r"\bbd\b", n):
        return KICK
    if "clap" in n:
        return CLAP
    if "stick" in n and "snare" not in n:
        return SIDE
    if "snare" in n:
        return SNARE
    if "hat" in n or "hh" in n:
        if "open" in n or re.search(r"\bop\b|ohh|semi", n):
            return HHO
        if "pedal" in n or re.search(r"\bpd\b", n):
            return HHP
        return HHC
    if "ride" in n:
        return RIDE
    if "crash" in n or "cymbal" in n or "splash" in n:
        return CRASH
    if "tom" in n:
        if re.search(r"floor|low|\blo\b|16", n):
            return TOM_L
        if re.search(r"hi|high", n):
            return TOM_H
        return TOM_M
    if "cowbell" in n:
        return COWB
    if "tambourine" in n:
        return TAMB
    return None


def load_hydrogen_kit(kit_dir: Path) -> dict[int, list[list[tuple[float, float, float, Path]]]]:
    """role -> instruments -> layers (min_vel, max_vel, gain, file)."""
    import xml.etree.ElementTree as ET
    txt = (kit_dir / "drumkit.xml").read_text("utf-8", errors="replace")
    txt = re.sub(r"\sxmlns(:\w+)?=\"[^\"]*\"", "", txt)
    root = ET.fromstring(txt)
    roles: dict[int, list] = {}
    for ins in root.iter("instrument"):
        name = (ins.findtext("name") or "").strip()
        role = _drum_role(name)
        if role is None:
            continue
        gain = float(ins.findtext("gain") or 1.0) * float(ins.findtext("volume") or 1.0)
        layers = []
        for lay in ins.iter("layer"):
            fn = lay.findtext("filename")
            if fn and (kit_dir / fn).exists():
                layers.append((float(lay.findtext("min") or 0), float(lay.findtext("max") or 1),
                               float(lay.findtext("gain") or 1) * gain, kit_dir / fn))
        fn = ins.findtext("filename")
        if not layers and fn and (kit_dir / fn).exists():
            layers.append((0.0, 1.0, gain, kit_dir / fn))
        if layers:
            roles.setdefault(role, []).append(layers)
    return roles


def render_hydrogen(out_dir: Path, parts_dir: Path, scratch: Path, minutes_per_kit: float, seed: int = 4321,
                    log=print) -> float:
    """Real recorded drum kits (hydrogen-drumkits, train kits only) played with the generated grooves."""
    from .common import load_audio
    import subprocess
    root = Path(scratch) / "x" / HYDROGEN_PACKAGE
    if not (root / HYDROGEN_DIR).exists():
        debs = Path(scratch) / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        if not list(debs.glob(f"{HYDROGEN_PACKAGE}_*.deb")):
            subprocess.run(["apt-get", "download", HYDROGEN_PACKAGE], cwd=debs, capture_output=True)
        deb = sorted(debs.glob(f"{HYDROGEN_PACKAGE}_*.deb"))
        if not deb:
            log("hydrogen-drumkits unavailable: real drum kits skipped")
            return 0.0
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(deb[-1]), str(root)], check=True)
    version = _deb_or_dpkg_version(HYDROGEN_PACKAGE, root / "a/b/c/d/e/f")
    writer = PartWriter(parts_dir / "instruments-drums-hydrogen.jsonl")
    total = 0.0
    for kit, lic in HYDROGEN_KITS.items():
        assert not any(r in kit for r in HYDROGEN_RESERVED)
        kdir = root / HYDROGEN_DIR / kit
        if not (kdir / "drumkit.xml").exists():
            continue
        roles = None
        empty = 0
        cache: dict[Path, np.ndarray] = {}
        have = sum(r["duration"] for u, rows in writer.done.items() if u.startswith(f"drums:h2:{kit}:") for r in rows)
        i = 0
        while have < minutes_per_kit * 60:
            unit = f"drums:h2:{kit}:{i:05d}"
            if writer.has(unit, out_dir):
                i += 1
                continue
            if roles is None:
                roles = load_hydrogen_kit(kdir)
                if KICK not in roles or SNARE not in roles:
                    log(f"hydrogen kit {kit}: no kick/snare mapped, skipped")
                    break
            rng = np.random.default_rng([seed, int(short_hash(unit, n=8), 16)])
            notes = gen_drums(rng, float(rng.uniform(4.0, 8.5)), float(rng.uniform(70, 150)),
                              vel=int(rng.choice([60, 75, 90, 105, 118])))
            choice = {r: insts[int(rng.integers(len(insts)))] for r, insts in roles.items()}
            fallback = {HHO: HHC, HHP: HHC, RIDE: HHC, SIDE: SNARE, CLAP: SNARE, TOM_H: TOM_M, TOM_M: TOM_L,
                        TOM_L: SNARE, COWB: None, TAMB: None, CRASH: RIDE}
            y = np.zeros(int((max(b for _, b, _, _ in notes) + 3.0) * SR), np.float32)
            for a, _, p, v in notes:
                role, seen = p, set()
                while role is not None and role not in choice and role not in seen:
                    seen.add(role)
                    role = fallback.get(role)
                if role not in choice:
                    role = None
                if role is None:
                    continue
                layers = choice[role]
                vv = v / 127.0
                ok = [l for l in layers if l[0] <= vv <= l[1] + 1e-6] or layers
                lo, hi, g, f = ok[int(rng.integers(len(ok)))]
                if f not in cache:
                    try:
                        cache[f] = load_audio(f, max_seconds=4.0)
                    except Exception:
                        cache[f] = np.zeros(1, np.float32)
                s = cache[f] * (g * (0.35 + 0.65 * vv) ** 1.5)
                k = int(a * SR)
                n = min(len(s), len(y) - k)
                if n > 0:
                    y[k:k + n] += s[:n]
            y = trim_silence(y)
            group = f"hydrogen:{kit}:gen-drums-{i:05d}"
            meta = ClipMeta("instruments", "drums", group, HYDROGEN_PACKAGE, version,
                            f"{HYDROGEN_DIR}/{kit}/ samples played with generated drum pattern #{i}", lic,
                            split=split_of(group))
            rows, secs = write_pieces(out_dir, y, f"inst-drums-h2-{short_hash(kit, n=6)}-{i:05d}", meta)
            have += secs
            writer.add(unit, rows)
            i += 1
            empty = 0 if rows else empty + 1
            if empty >= 50:
                log(f"hydrogen kit {kit}: 50 empty renders in a row, giving up")
                break
        total += have
        log(f"instruments/drums hydrogen {kit}: {have / 60:.1f} min")
    writer.close()
    return total


# ----------------------------------------------------------------------------- full-mix arrangements ("music")
ARR_MELODY = (0, 4, 40, 73, 56, 65, 66, 71, 80, 81, 27, 29, 16, 52, 11, 12, 110, 60)
ARR_CHORDS = ((0, ("block", "arpeggio", "alberti", "sustain")), (4, ("block", "sustain", "arpeggio")),
              (48, ("sustain",)), (49, ("sustain",)), (89, ("sustain",)), (90, ("sustain", "block")),
              (16, ("sustain", "block")), (18, ("block",)), (24, ("strum", "arpeggio")), (25, ("strum",)),
              (27, ("strum", "block")), (30, ("power",)), (29, ("power", "strum")), (46, ("arpeggio",)),
              (61, ("block", "sustain")))
ARR_BASS = (33, 34, 35, 42, 58)
ARR_MINUTES = 30.0


def arrangement_notes(rng, dur: float):
    """Melody + chords + bass (+ drums in 85 %) in one key, progression and tempo.
    Returns [(program, drums?, notes, gain dB)] and a description."""
    tempo = float(rng.uniform(70, 145))
    tonic = int(rng.integers(0, 12))
    scale_name = str(rng.choice(["major", "minor", "dorian", "mixolydian"]))
    scale = SCALES[scale_name]
    prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    key = (tonic, scale, prog)
    mel = int(rng.choice(ARR_MELODY))
    ch_prog, styles = ARR_CHORDS[int(rng.integers(len(ARR_CHORDS)))]
    style = str(rng.choice(styles))
    bass = int(rng.choice(ARR_BASS))
    parts = []
    _, lo, hi = PROGRAMS[mel]
    parts.append((mel, False, gen_melody(rng, max(lo, 55), hi, dur, tempo, vel=int(rng.choice([80, 95, 105])),
                                         tonic=tonic, scale=scale), 0.0))
    _, lo, hi = PROGRAMS[ch_prog]
    parts.append((ch_prog, False, gen_chords(rng, lo, min(hi, 79), dur, tempo, style, vel=70, key=key),
                  float(rng.uniform(-8, -3))))
    _, lo, hi = PROGRAMS[bass]
    parts.append((bass, False, gen_bass(rng, lo, min(hi, 55), dur, tempo, vel=85, key=key), float(rng.uniform(-6, -2))))
    kit = None
    if rng.random() < 0.85:
        kit = int(rng.choice(list(DRUM_KITS)))
        parts.append((kit, True, gen_drums(rng, dur, tempo, vel=int(rng.choice([70, 85, 100]))), float(rng.uniform(-6, -2))))
    desc = (f"arrangement {scale_name} in {tonic} at {tempo:.0f} bpm: melody prog {mel} ({PROGRAMS[mel][0]}), "
            f"chords prog {ch_prog} ({PROGRAMS[ch_prog][0]}, {style}), bass prog {bass} ({PROGRAMS[bass][0]})"
            + (f", drums kit {kit} ({DRUM_KITS[kit]})" if kit is not None else ""))
    return parts, desc


def render_arrangements(out_dir: Path, parts_dir: Path, minutes: float = ARR_MINUTES, seed: int = 2718, log=print) -> float:
    """Full-mix "music" clips: multi-instrument arrangements rendered through FluidR3_GM (one fresh synth
    per arrangement, so resumed builds are bit-identical).  Group = arrangement (split by finalise_splits)."""
    writer = PartWriter(parts_dir / "music-arrangements.jsonl")
    pkg, lic = FLUIDR3_PACKAGE
    version = fluidr3_version()
    have, j = 0.0, 0
    while have < minutes * 60:
        unit = f"music:arr:{j:05d}"
        if writer.has(unit, out_dir):
            have += sum(r["duration"] for r in writer.done[unit])
            j += 1
            continue
        rng = np.random.default_rng([seed, int(short_hash(unit, n=8), 16)])
        dur = float(rng.uniform(6.0, 9.5))
        parts, desc = arrangement_notes(rng, dur)
        renderer = Renderer(FLUIDR3)
        mix = None
        for prog, drums, notes, gain in parts:
            y = renderer.render(notes, prog, drums, rng, tail=0.8)
            y = y / (np.sqrt(np.mean(y ** 2)) + 1e-9) * 10 ** (gain / 20)
            if mix is None:
                mix = y
            else:
                n = max(len(mix), len(y))
                mix = np.pad(mix, (0, n - len(mix))) + np.pad(y, (0, n - len(y)))
        del renderer
        mix = trim_silence(mix[: int(dur * SR)])
        group = f"arrangement:{j:05d}"
        meta = ClipMeta("music", "music", group, pkg, version, desc, lic, split=split_of(group))
        rows, secs = write_pieces(out_dir, mix, f"music-arr-{j:05d}", meta)
        have += secs
        writer.add(unit, rows)
        j += 1
    writer.close()
    log(f"music/arrangements: {have / 60:.1f} min ({j} arrangements)")
    return have
