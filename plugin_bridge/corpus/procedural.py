"""Procedural clean-up / noise / signal labels: sounds that real package data lacks but that follow simple,
well-known physics or standards.  Every generator is deterministic in its ``rng`` (seeded from the unit
name) and returns mono float32 at 16 kHz.  The docstrings are written so that the model card can quote
them verbatim; ``tests/test_corpus_procedural.py`` checks that each spectrum does what its docstring says.

Labels (family ``environmental``) and confusable groups (the mixer never uses one as interferer of another
in the same group): hum -> "machines" (with machinery and engine); hiss, room_tone, wind_noise -> "noise";
crackle -> "clicks"; beep, alarm, phone_ring, siren -> "alarm"; applause -> "human sounds".
Dev clips are a held-out seed range (the last ``DEV_UNITS`` units of each label).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt

from .common import SR, ClipMeta, PartWriter, manifest_row, short_hash, write_clip

PACKAGE = "plugin-bridge-procedural"
LICENCE = "GPL-3.0-or-later"
UNITS_PER_LABEL = 110     # ~7 s average -> ~13 minutes per label
DEV_UNITS = 11            # units UNITS_PER_LABEL-DEV_UNITS .. UNITS_PER_LABEL-1 are dev
C_SOUND = 343.0


def _t(n: int, sr: int) -> np.ndarray:
    return np.arange(n) / sr


def _smooth_noise(rng, n: int, sr: int, rate_hz: float) -> np.ndarray:
    """Band-limited random process (values ~N(0,1)) varying at about ``rate_hz``."""
    k = max(2, int(n / sr * rate_hz) + 2)
    pts = rng.standard_normal(k)
    return np.interp(np.linspace(0, k - 1, n), np.arange(k), pts)


def coloured_noise(rng, n: int, beta: float, sr: int = SR, f_lo: float = 20.0) -> np.ndarray:
    """Gaussian noise whose power spectral density falls as 1/f^beta (beta 0 white, 1 pink = -3 dB/octave,
    2 brown = -6 dB/octave), shaped in the frequency domain; flat below ``f_lo`` to avoid DC drift."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec *= np.maximum(f, f_lo) ** (-beta / 2.0)
    x = np.fft.irfft(spec, n)
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


def _ramp(x: np.ndarray, sr: int, ms: float = 5.0) -> np.ndarray:
    m = min(len(x) // 2, int(ms * 1e-3 * sr))
    if m > 0:
        w = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, m))
        x[:m] *= w
        x[-m:] *= w[::-1]
    return x


def _tone(freq, n: int, sr: int, wave: str = "sine", phase0: float = 0.0) -> np.ndarray:
    """Sine or band-limited square (odd harmonics 1/k below Nyquist); ``freq`` scalar or per-sample."""
    f = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    ph = phase0 + 2 * np.pi * np.cumsum(f) / sr
    if wave == "sine":
        return np.sin(ph)
    y = np.zeros(n)
    fmax = float(np.max(f))
    k = 1
    while k * fmax < 0.45 * sr:
        y += np.sin(k * ph) / k
        k += 2
    return y * (4 / np.pi)


def _gate(n: int, sr: int, pattern: list[tuple[float, float]], offset: float = 0.0) -> np.ndarray:
    """0/1 envelope repeating ``pattern`` = [(on seconds, off seconds), ...], 3 ms raised-cosine edges."""
    g = np.zeros(n)
    t = -offset
    period = sum(a + b for a, b in pattern)
    while t < n / sr:
        for on, off in pattern:
            a, b = int(max(t, 0) * sr), int(min(t + on, n / sr) * sr)
            if b > a:
                g[a:b] = _ramp(np.ones(b - a), sr, 3.0)
            t += on + off
        if period <= 0:
            break
    return g


# ----------------------------------------------------------------------------- generators
def gen_hum(rng, dur: float, sr: int = SR):
    """Mains hum / buzz: the mains frequency f0 (50 or 60 Hz) and its harmonics k*f0 (k = 1..K, K 4-20),
    amplitudes falling as k^-a (a 0.5-2; "buzz" variants keep strong odd harmonics, as from transformer
    magnetostriction and rectifier loads), a slow frequency drift of at most +-0.5 % (grid frequency
    wander) and a slow level wobble (+-0-30 % at 0.1-1 Hz); plus an optional noise floor 40-60 dB under."""
    n = int(dur * sr)
    f0 = float(rng.choice([50.0, 60.0]))
    drift = 1.0 + float(rng.uniform(0.0005, 0.005)) * np.tanh(_smooth_noise(rng, n, sr, 0.2))
    f = f0 * drift
    K = int(rng.integers(4, 21))
    a = float(rng.uniform(0.5, 2.0))
    buzz = rng.random() < 0.4
    ph = 2 * np.pi * np.cumsum(f) / sr
    y = np.zeros(n)
    for k in range(1, K + 1):
        if k * f0 * 1.01 >= 0.45 * sr:
            break
        amp = k ** (-a) * (1.0 if (not buzz or k % 2) else 0.3) * float(rng.uniform(0.5, 1.0))
        y += amp * np.sin(k * ph + rng.uniform(0, 2 * np.pi))
    wob = 1.0 + float(rng.uniform(0, 0.3)) * np.sin(2 * np.pi * float(rng.uniform(0.1, 1.0)) * _t(n, sr)
                                                      + rng.uniform(0, 2 * np.pi))
    y = y * wob / (np.max(np.abs(y)) + 1e-9)
    y += 10 ** (-rng.uniform(40, 60) / 20) * coloured_noise(rng, n, 1.0, sr)
    return y.astype(np.float32), f"f0={f0:g}Hz harmonics={K} slope=k^-{a:.2f} buzz={buzz}"


def gen_hiss(rng, dur: float, sr: int = SR):
    """Hiss / broadband noise of several colours: white (flat power spectrum), pink (1/f, -3 dB per
    octave), brown (1/f^2, -6 dB per octave, rumble-like) or tape hiss (white noise with a rising high
    shelf, about +6-12 dB above 3 kHz, and a slight 0.2-1 Hz level flutter)."""
    n = int(dur * sr)
    colour = str(rng.choice(["white", "pink", "brown", "tape"]))
    if colour == "tape":
        x = coloured_noise(rng, n, 0.0, sr)
        sos = butter(2, float(rng.uniform(2500, 4000)), "highpass", fs=sr, output="sos")
        x = x + (10 ** (rng.uniform(6, 12) / 20) - 1) * sosfilt(sos, x)
        x *= 1.0 + 0.05 * np.sin(2 * np.pi * float(rng.uniform(0.2, 1.0)) * _t(n, sr))
    else:
        x = coloured_noise(rng, n, {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour], sr)
    return (x / (np.max(np.abs(x)) + 1e-9)).astype(np.float32), f"colour={colour}"


def gen_crackle(rng, dur: float, sr: int = SR):
    """Clicks and crackle (vinyl-like): a Poisson train of impulses (2-80 per second) whose amplitudes
    follow a heavy-tailed Pareto law, each a 0.1-1.5 ms decaying noise burst of random polarity; rarer
    louder pops (3-8 ms, low-passed); optionally one scratch click repeating at the record's rotation
    period (33 1/3 rpm = 1.8 s, 45 rpm = 1.33 s); and a quiet surface-noise bed (pink noise 35-50 dB down)."""
    n = int(dur * sr)
    y = np.zeros(n)
    rate = float(np.exp(rng.uniform(np.log(2), np.log(80))))
    k = rng.poisson(rate * dur)
    pos = rng.integers(0, n, k)
    amps = np.minimum((rng.pareto(1.5, k) + 1) * 0.05, 1.0)
    for p, a in zip(pos, amps):
        L = max(2, int(rng.uniform(0.1, 1.5) * 1e-3 * sr))
        burst = rng.standard_normal(L) * np.exp(-np.arange(L) / (L / 3))
        e = min(n, p + L)
        y[p:e] += a * float(rng.choice([-1, 1])) * burst[: e - p]
    sos = butter(2, 1500, "lowpass", fs=sr, output="sos")
    for p in rng.integers(0, n, rng.poisson(rate * dur / 20)):
        L = int(rng.uniform(3, 8) * 1e-3 * sr)
        burst = sosfilt(sos, rng.standard_normal(L)) * np.hanning(L)
        e = min(n, p + L)
        y[p:e] += float(rng.uniform(0.3, 1.0)) * burst[: e - p] * 2
    scratch = rng.random() < 0.4
    if scratch:
        period = float(rng.choice([60 / (100 / 3), 60 / 45]))
        t0 = rng.uniform(0, period)
        for p in np.arange(t0, dur, period):
            i = int(p * sr)
            L = int(0.002 * sr)
            e = min(n, i + L)
            y[i:e] += 0.8 * np.exp(-np.arange(e - i) / (L / 4))
    y /= np.max(np.abs(y)) + 1e-9
    y += 10 ** (-rng.uniform(35, 50) / 20) * coloured_noise(rng, n, 1.0, sr)
    return y.astype(np.float32), f"rate={rate:.1f}/s scratch={scratch}"


def gen_beep(rng, dur: float, sr: int = SR):
    """Beeps: a pure tone or band-limited square wave (odd harmonics 1/k) at 400-3000 Hz, gated into
    repeating patterns of single, double or triple beeps (50-500 ms on, 50 ms-1 s off), 5 ms edges;
    this covers appliance beeps, censor bleeps, reversing-truck beepers and test tones."""
    n = int(dur * sr)
    f = float(rng.uniform(400, 3000))
    wave = str(rng.choice(["sine", "square"]))
    on = float(rng.uniform(0.05, 0.5))
    gap = float(rng.uniform(0.05, 0.3))
    rest = float(rng.uniform(0.1, 1.0))
    k = int(rng.choice([1, 2, 3]))
    pattern = [(on, gap)] * (k - 1) + [(on, rest)]
    if rng.random() < 0.15:          # a long censor bleep
        pattern = [(float(rng.uniform(0.5, 2.0)), float(rng.uniform(0.3, 1.0)))]
    g = _gate(n, sr, pattern, offset=float(rng.uniform(0, 0.3)))
    y = _tone(f, n, sr, wave) * g
    return (y / (np.max(np.abs(y)) + 1e-9)).astype(np.float32), f"f={f:.0f}Hz wave={wave} pattern={pattern}"


def gen_alarm(rng, dur: float, sr: int = SR):
    """Alarms: (a) two-tone alarm alternating between two frequencies (600-1200 Hz, ratio 1.2-1.5) 1-4
    times a second; (b) smoke-alarm "temporal-three" pattern (ISO 8201: three 0.5 s beeps 0.5 s apart,
    then 1.5 s off) on a 3.0-3.5 kHz piezo tone with harmonics; (c) smoke-alarm low-battery chirps (30 ms
    chirps every 1-3 s); (d) alarm-clock bursts of 4 quick beeps at 2-4 kHz; (e) a warble (tone frequency
    modulated +-10-20 % at 5-15 Hz)."""
    n = int(dur * sr)
    kind = str(rng.choice(["two_tone", "temporal3", "chirp", "clock", "warble"]))
    t = _t(n, sr)
    if kind == "two_tone":
        f1 = float(rng.uniform(600, 1200)); f2 = f1 * float(rng.uniform(1.2, 1.5))
        rate = float(rng.uniform(1, 4))
        f = np.where((t * rate) % 1.0 < 0.5, f1, f2)
        y = _tone(f, n, sr, str(rng.choice(["sine", "square"])))
    elif kind == "temporal3":
        f = float(rng.uniform(3000, 3500))
        y = _tone(f, n, sr, "square") * _gate(n, sr, [(0.5, 0.5), (0.5, 0.5), (0.5, 1.5)], float(rng.uniform(0, 1)))
    elif kind == "chirp":
        f = float(rng.uniform(3000, 3500))
        y = _tone(f, n, sr, "square") * _gate(n, sr, [(0.03, float(rng.uniform(1, 3)))], float(rng.uniform(-0.5, 0)))
    elif kind == "clock":
        f = float(rng.uniform(2000, 4000))
        y = _tone(f, n, sr, "square") * _gate(n, sr, [(0.06, 0.06)] * 3 + [(0.06, 0.5)], float(rng.uniform(0, 0.5)))
    else:
        fc = float(rng.uniform(600, 2000)); dev = float(rng.uniform(0.1, 0.2)); fm = float(rng.uniform(5, 15))
        y = _tone(fc * (1 + dev * np.sin(2 * np.pi * fm * t)), n, sr, "sine")
    return (y / (np.max(np.abs(y)) + 1e-9)).astype(np.float32), f"kind={kind}"


# (name, frequencies Hz, cadence [(on s, off s), ...]) of telephone ring / ringback tones
RING_CADENCES = [
    ("north-american ringback", (440.0, 480.0), [(2.0, 4.0)]),
    ("uk ringback", (400.0, 450.0), [(0.4, 0.2), (0.4, 2.0)]),
    ("european ringback", (425.0,), [(1.0, 4.0)]),
    ("japanese ringback", (400.0,), [(1.0, 2.0)]),
]


def gen_phone_ring(rng, dur: float, sr: int = SR):
    """Phone rings: either a dual-tone ringback cadence (North America 440+480 Hz 2 s on / 4 s off; UK
    400+450 Hz 0.4 on, 0.2 off, 0.4 on, 2 s off; Europe 425 Hz 1 s on / 4 s off; Japan 400 Hz 1 s / 2 s,
    the tone 16 Hz-modulated in Japan and UK variants) or an electronic ringer: two tones (700-1500 Hz)
    alternating at 16-25 Hz, played in the same cadences, as a telephone in the room rings."""
    n = int(dur * sr)
    name, freqs, cadence = RING_CADENCES[int(rng.integers(len(RING_CADENCES)))]
    offset = float(rng.uniform(0, 1.0))
    t = _t(n, sr)
    if rng.random() < 0.5:
        y = sum(_tone(f, n, sr, "sine", rng.uniform(0, 6.3)) for f in freqs)
        kind = f"ringback {name}"
    else:
        f1 = float(rng.uniform(700, 1500)); f2 = f1 * float(rng.uniform(1.2, 1.4)); ar = float(rng.uniform(16, 25))
        y = _tone(np.where((t * ar) % 1.0 < 0.5, f1, f2), n, sr, str(rng.choice(["sine", "square"])))
        kind = f"ringer {f1:.0f}/{f2:.0f}Hz@{ar:.0f}Hz in {name} cadence"
    y = y * _gate(n, sr, cadence, offset)
    return (y / (np.max(np.abs(y)) + 1e-9)).astype(np.float32), kind


def doppler_warp(phase_fn, amp_fn, n: int, sr: int, v: float, d: float, t0: float):
    """Moving source passing the listener at speed ``v`` (m/s) and closest distance ``d`` (m) at ``t0``:
    the sound heard at time t was emitted at tau with t = tau + r(tau)/c, r(tau) = sqrt(d^2 + v^2 (tau-t0)^2);
    the observed frequency is f * c / (c + dr/dtau) and the level falls as 1/r."""
    tau = np.arange(-sr, n + sr) / sr
    r = np.sqrt(d ** 2 + (v * (tau - t0)) ** 2)
    t_arr = tau + r / C_SOUND
    t = np.arange(n) / sr
    tau_t = np.interp(t, t_arr, tau)
    r_t = np.sqrt(d ** 2 + (v * (tau_t - t0)) ** 2)
    return np.sin(phase_fn(tau_t)) * amp_fn(tau_t) * (d / r_t), tau_t


def gen_siren(rng, dur: float, sr: int = SR):
    """Sirens: wail (frequency sweeping between 500-800 Hz and 1200-1700 Hz over 2-6 s, slow rise and
    faster fall), yelp (the same sweep every 0.15-0.4 s) or hi-lo two-tone (e.g. 435/580 Hz alternating
    every 0.5-1.5 s), with 3-6 harmonics (horn-loudspeaker timbre); in 60 % of clips the source passes the
    listener at 8-30 m/s (Doppler shift f*c/(c+v_r), level 1/r, see doppler_warp), otherwise it stays put."""
    n = int(dur * sr)
    kind = str(rng.choice(["wail", "yelp", "hilo"]))
    lo = float(rng.uniform(500, 800)); hi = float(rng.uniform(1200, 1700))
    period = float(rng.uniform(2, 6)) if kind == "wail" else float(rng.uniform(0.15, 0.4))
    rise = float(rng.uniform(0.55, 0.8))
    if kind == "hilo":
        lo = float(rng.uniform(400, 500)); hi = lo * float(rng.uniform(1.25, 1.4)); period = 2 * float(rng.uniform(0.5, 1.5))
    nh = int(rng.integers(3, 7))
    hamp = [k ** -float(rng.uniform(0.8, 1.5)) for k in range(1, nh + 1)]
    grid = np.arange(-2 * sr, n + 2 * sr) / sr
    ph_off = rng.uniform(0, period)

    def f_src(tt):
        u = ((tt + ph_off) / period) % 1.0
        if kind == "hilo":
            return np.where(u < 0.5, lo, hi)
        s = np.where(u < rise, u / rise, 1 - (u - rise) / (1 - rise))
        return lo + (hi - lo) * np.sin(0.5 * np.pi * s) ** 2 if kind == "wail" else lo + (hi - lo) * s

    phase_grid = 2 * np.pi * np.cumsum(f_src(grid)) / sr

    def phase_fn(tt):
        return np.interp(tt, grid, phase_grid)

    moving = rng.random() < 0.6
    y = np.zeros(n)
    if moving:
        v = float(rng.uniform(8, 30)); d = float(rng.uniform(5, 30)); t0 = float(rng.uniform(0.3, 0.7)) * dur
        for k, a in enumerate(hamp, 1):
            part, _ = doppler_warp(lambda tt, k=k: k * phase_fn(tt), lambda tt: 1.0, n, sr, v, d, t0)
            y += a * part
        desc = f"kind={kind} doppler v={v:.0f}m/s d={d:.0f}m"
    else:
        ph = phase_fn(_t(n, sr))
        for k, a in enumerate(hamp, 1):
            y += a * np.sin(k * ph)
        desc = f"kind={kind} static"
    return (y / (np.max(np.abs(y)) + 1e-9)).astype(np.float32), desc


def gen_room_tone(rng, dur: float, sr: int = SR):
    """Room tone: the low-level background of a quiet room - pink-to-brown noise (spectral slope 1/f^1 to
    1/f^1.6) low-passed at 2-6 kHz (ventilation / air handling), plus 2-5 faint room-mode resonances
    (narrow band-passed noise at the axial modes c/2L of a 3-8 m room, 20-60 Hz ... 300 Hz), no tonal hum."""
    n = int(dur * sr)
    beta = float(rng.uniform(1.0, 1.6))
    x = coloured_noise(rng, n, beta, sr)
    x = sosfilt(butter(2, float(rng.uniform(2000, 6000)), "lowpass", fs=sr, output="sos"), x)
    modes = []
    for _ in range(int(rng.integers(2, 6))):
        L = float(rng.uniform(3, 8))
        f = C_SOUND / (2 * L) * int(rng.integers(1, 7))
        f = min(f, 300.0)
        bw = f * 0.05
        sos = butter(2, [max(15.0, f - bw), f + bw], "bandpass", fs=sr, output="sos")
        x = x + float(rng.uniform(0.5, 2.0)) * sosfilt(sos, coloured_noise(rng, n, 0.0, sr))
        modes.append(round(f))
    x *= 1.0 + 0.03 * _smooth_noise(rng, n, sr, 0.5)
    return (x / (np.max(np.abs(x)) + 1e-9)).astype(np.float32), f"slope=1/f^{beta:.2f} modes={modes}Hz"


def gen_wind_noise(rng, dur: float, sr: int = SR):
    """Wind noise on a microphone: turbulent pressure at the capsule, i.e. brown-ish noise (1/f^2) low-passed
    at 80-400 Hz, its level driven by a gust envelope (log-normal random process varying at 0.3-2 Hz, 6-20 dB
    swings) and occasional buffets that overload the capsule (soft-clipped with tanh)."""
    n = int(dur * sr)
    x = coloured_noise(rng, n, 2.0, sr)
    fc = float(rng.uniform(80, 400))
    x = sosfilt(butter(2, fc, "lowpass", fs=sr, output="sos"), x)
    x /= np.std(x) + 1e-9
    swing = float(rng.uniform(6, 20))
    env = 10 ** (swing / 20 * np.clip(_smooth_noise(rng, n, sr, float(rng.uniform(0.3, 2.0))), -2, 2) / 2)
    y = x * env
    drive = float(rng.uniform(0.2, 1.0))
    y = np.tanh(drive * y / (np.std(y) + 1e-9)) if rng.random() < 0.5 else y
    return (y / (np.max(np.abs(y)) + 1e-9)).astype(np.float32), f"lowpass={fc:.0f}Hz gusts={swing:.0f}dB"


def gen_applause(rng, dur: float, sr: int = SR):
    """Applause: 10-200 people, each clapping 2-6 times a second with 10-30 % timing jitter; every clap a
    1-3 kHz band-passed noise burst decaying in 5-15 ms with its own level and centre; the crowd's overall
    level swells in over 0.3-1 s and may fade out at the end."""
    n = int(dur * sr)
    y = np.zeros(n + sr)
    people = int(rng.integers(10, 201))
    for _ in range(people):
        rate = float(rng.uniform(2, 6)); jit = float(rng.uniform(0.1, 0.3))
        fc = float(rng.uniform(1000, 3000)); tau = float(rng.uniform(0.005, 0.015)); lvl = float(rng.uniform(0.3, 1.0))
        L = int(5 * tau * sr)
        sos = butter(2, [fc / 1.6, min(fc * 1.6, 0.45 * sr)], "bandpass", fs=sr, output="sos")
        clap = sosfilt(sos, rng.standard_normal(L)) * np.exp(-np.arange(L) / (tau * sr)) * lvl
        t = float(rng.uniform(0, 1 / rate))
        while t < dur:
            i = int(t * sr)
            y[i:i + L] += clap * float(rng.uniform(0.7, 1.0))
            t += (1 / rate) * (1 + jit * rng.standard_normal())
            t = max(t, i / sr + 0.05)
    y = y[:n]
    env = np.minimum(1.0, _t(n, sr) / float(rng.uniform(0.3, 1.0)))
    if rng.random() < 0.5:
        env *= np.clip((dur - _t(n, sr)) / float(rng.uniform(0.5, 2.0)), 0, 1)
    y *= env
    return (y / (np.max(np.abs(y)) + 1e-9)).astype(np.float32), f"people={people}"


# label -> (generator, confusable group)
GENERATORS = {
    "hum": (gen_hum, "machines"),
    "hiss": (gen_hiss, "noise"),
    "room_tone": (gen_room_tone, "noise"),
    "wind_noise": (gen_wind_noise, "noise"),
    "crackle": (gen_crackle, "clicks"),
    "beep": (gen_beep, "alarm"),
    "alarm": (gen_alarm, "alarm"),
    "phone_ring": (gen_phone_ring, "alarm"),
    "siren": (gen_siren, "alarm"),
    "applause": (gen_applause, "human sounds"),
}


def unit_rng(label: str, j: int) -> np.random.Generator:
    return np.random.default_rng([7919, int(short_hash("procedural", label, str(j), n=8), 16)])


def generate(label: str, j: int, sr: int = SR) -> tuple[np.ndarray, str]:
    """Clip ``j`` of ``label`` (deterministic): 4-10 s long."""
    rng = unit_rng(label, j)
    dur = float(rng.uniform(4.0, 10.0))
    fn = GENERATORS[label][0]
    return fn(rng, dur, sr)


def build_procedural(out_dir: Path, labels=None, units: int = UNITS_PER_LABEL, log=print) -> float:
    """Write ``units`` clips per procedural label (resumable); the last ``DEV_UNITS`` seeds are dev."""
    from plugin_bridge import __version__ as version
    total = 0.0
    writer = PartWriter(Path(out_dir) / "parts" / "procedural.jsonl")
    for label in labels or GENERATORS:
        dev_from = units - max(1, round(DEV_UNITS * units / UNITS_PER_LABEL))
        for j in range(units):
            unit = f"procedural:{label}:{j:05d}"
            if writer.has(unit, out_dir):
                total += sum(r["duration"] for r in writer.done[unit])
                continue
            x, desc = generate(label, j)
            x = 0.7 * x
            split = "dev" if j >= dev_from else "train"
            meta = ClipMeta("environmental", label, f"procedural:{label}:{j:05d}", PACKAGE, version,
                            f"procedural.gen_{label}(seed unit {j}): {desc}", LICENCE, split=split)
            cid = f"proc-{label}-{j:05d}"
            rel, sha, d = write_clip(Path(out_dir), "environmental", label, cid, x[: int(10 * SR)])
            writer.add(unit, [manifest_row(cid, rel, sha, d, meta)])
            total += d
        log(f"procedural/{label}: {units} clips")
    writer.close()
    return total


def methods() -> dict[str, str]:
    """label -> the generator's method statement (its docstring on one line), for the model card."""
    import inspect
    return {lab: " ".join(inspect.getdoc(fn).split()) for lab, (fn, _) in GENERATORS.items()}
