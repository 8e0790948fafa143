"""Native-rate spectral processing: apply a mask computed on the model's grid to audio at any rate.

The network runs at its own sample rate (e.g. 32 kHz for AudioSep, 16 kHz for the embedded model) on an
STFT of ``n_fft``/``hop`` samples. We never resample the separated output: instead the input is analysed
at its *native* rate with the window and hop scaled by ``native_rate / model_rate``, so the native STFT
frames cover the same stretches of time and its bins lie on (or between) the model's Hz grid (where the
scaled window's length transforms slowly, as 1412 samples at 44.1 kHz, it is zero-padded to a fast FFT
length; see ``native_grid``). The model's mask is then carried onto the native grid by bilinear
interpolation in time and frequency (an exact copy when the rate ratio makes the grids coincide, e.g. 48
kHz for a 16 kHz model or 32 kHz for AudioSep) and multiplied onto the native STFT, which keeps the full
band of the input.

The model's Nyquist bin and the bins above it get a rule: per frame, the mean mask magnitude over the top
octave of the model's band (Nyquist bin excluded), with no phase rotation.  Every stem and the residual
use the same rule, so the stems still sum to the mix.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["Grid", "native_grid", "fast_fft_length", "stft", "istft", "interp_mask_to_native",
           "high_band_fill"]


@dataclass(frozen=True)
class Grid:
    """An STFT grid: ``hop`` samples between frames, a periodic Hann window of ``win`` samples (default
    ``n_fft``) centred in frames of ``n_fft`` samples (``torch.stft``'s ``win_length`` convention)."""

    rate: int
    n_fft: int
    hop: int
    win: int | None = None

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def win_length(self) -> int:
        return self.win or self.n_fft


def fast_fft_length(n: int) -> int:
    """The smallest even 2^a * 3^b >= n: lengths pocketfft transforms fastest.  The embedded model's 32 ms
    window is 1412 samples at 44.1 kHz (4 x 353, a prime): scipy.fft transformed 1,400 such frames about 8x
    slower than the same frames zero-padded to 1458 (2 x 3^6)."""
    best, p3 = None, 1
    while p3 < 2 * n:
        p = 2 * p3
        while p < n:
            p *= 2
        best = p if best is None else min(best, p)
        p3 *= 3
    return best


def native_grid(model: Grid, native_rate: int) -> Grid:
    """The STFT grid at ``native_rate`` whose frames match ``model``'s in seconds: the same hop and
    window duration (rounded to whole, even sample counts).  At a whole multiple of the model's rate the
    native bins are the model's bins (and more above them); at other rates (44.1 kHz) the window is
    zero-padded to a fast FFT length and the bins, ``native_rate / n_fft`` Hz apart, lie between the
    model's (``interp_mask_to_native`` interpolates)."""
    ratio = Fraction(native_rate, model.rate)
    win = int(round(model.win_length * ratio))
    win = max(win + win % 2, 16)  # even, so the Nyquist bin exists
    hop = max(1, int(round(model.hop * ratio)))
    # a whole multiple keeps n_fft = win, so the native bins include the model's (the separator reads the
    # network's input off them); any other rate pads the window to a fast length
    n_fft = win if (ratio.denominator == 1 and win == model.win_length * ratio) else fast_fft_length(win)
    return Grid(native_rate, n_fft, hop, None if n_fft == win else win)


_WINDOWS: dict[tuple[int, int], np.ndarray] = {}


def _window(n_fft: int, win: int | None = None) -> np.ndarray:
    """Periodic Hann window of ``win`` samples (as ``torch.hann_window(win, periodic=True)``), zero-padded
    on both sides to ``n_fft`` (as ``torch.stft`` does), float32."""
    win = win or n_fft
    if (n_fft, win) not in _WINDOWS:
        n = np.arange(win, dtype=np.float64)
        w = np.zeros(n_fft, np.float64)
        left = (n_fft - win) // 2
        w[left:left + win] = 0.5 - 0.5 * np.cos(2 * np.pi * n / win)
        _WINDOWS[(n_fft, win)] = w.astype(np.float32)
    return _WINDOWS[(n_fft, win)]


# The STFT pair is numpy + scipy.fft (no torch on the ONNX Runtime path); it equals torch.stft / torch.istft
# with center=True, a periodic Hann window and reflect padding to float32 precision (tests/test_startup.py).
# scipy.fft rather than numpy.fft: it keeps float32 / complex64 and vectorises the batch of frames, about
# 2.5x faster on one core for a 15 s segment of 48 kHz stereo (1536-point frames); the network's threads
# are idle while it runs, so it may use them too (``workers``: the caller's thread setting, else up to 8).
# Imported on first use (about 0.2 s here), so that opening the app or the CLI's help does not pay for it.
_FFT_WORKERS = max(1, min(os.cpu_count() or 1, 8))


def _fft():
    import scipy.fft

    return scipy.fft


def stft(x: np.ndarray, grid: Grid, workers: int | None = None) -> np.ndarray:
    """(..., L) real -> (..., T, F) complex64, centred with reflect padding (as AudioSep), T = 1 + L // hop."""
    x = np.asarray(x, np.float32)
    shape = x.shape
    L = shape[-1]
    flat = x.reshape(-1, L)
    half = grid.n_fft // 2
    mode = "reflect" if L > half else "constant"
    xp = np.pad(flat, ((0, 0), (half, half)), mode=mode)
    frames = np.lib.stride_tricks.sliding_window_view(xp, grid.n_fft, axis=-1)[:, ::grid.hop]
    spec = _fft().rfft(frames * _window(grid.n_fft, grid.win), axis=-1, workers=workers or _FFT_WORKERS).astype(np.complex64, copy=False)
    return spec.reshape(*shape[:-1], spec.shape[-2], spec.shape[-1])


def istft(spec: np.ndarray, grid: Grid, length: int, workers: int | None = None) -> np.ndarray:
    """(..., T, F) complex -> (..., length) float32: windowed overlap-add divided by the squared-window sum."""
    shape = spec.shape
    T = shape[-2]
    flat = np.asarray(spec).reshape(-1, T, shape[-1])
    n_fft, hop = grid.n_fft, grid.hop
    w = _window(n_fft, grid.win)
    frames = _fft().irfft(flat, n=n_fft, axis=-1, workers=workers or _FFT_WORKERS).astype(np.float32, copy=False)
    frames *= w  # (N, T, n_fft)
    R = -(-n_fft // hop)
    out = np.zeros((flat.shape[0], T + R - 1, hop), np.float32)
    ww = w * w
    env = np.zeros((T + R - 1, hop), np.float32)
    for j in range(R):  # frame t's j-th hop-long piece lands on output block t + j (the last piece may be shorter)
        a, b = j * hop, min((j + 1) * hop, n_fft)
        out[:, j:j + T, :b - a] += frames[..., a:b]
        env[j:j + T, :b - a] += ww[a:b]
    half = n_fft // 2
    out = out.reshape(flat.shape[0], -1)[:, half:half + length]
    env = env.reshape(-1)[half:half + length]
    if out.shape[-1] < length:
        out = np.pad(out, ((0, 0), (0, length - out.shape[-1])))
        env = np.pad(env, (0, length - env.shape[-1]))
    out = out / np.where(env > 1e-11, env, 1.0)
    return out.reshape(*shape[:-2], length)


def _interp_weights(n_out: int, step_ratio: float, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear-interpolation indices/weights for positions k*step_ratio, clamped to [0, n_in-1]."""
    pos = np.arange(n_out, dtype=np.float64) * step_ratio
    pos = np.clip(pos, 0.0, n_in - 1)
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0
    # snap tiny float noise so that coinciding grids copy exactly
    frac[np.abs(frac) < 1e-9] = 0.0
    near_one = np.abs(frac - 1.0) < 1e-9
    i0[near_one] += 1
    frac[near_one] = 0.0
    i0 = np.clip(i0, 0, n_in - 1)
    i1 = np.clip(i0 + 1, 0, n_in - 1)
    return i0, i1, frac.astype(np.float32)


def high_band_fill(mask_mag: np.ndarray, model: Grid) -> np.ndarray:
    """Per-frame magnitude used above the model's Nyquist: mean over its top octave (..., T)."""
    n = model.n_bins
    lo = max(1, (n - 1) // 2)
    hi = n - 1  # exclude the Nyquist bin, whose complex mask is forced to zero upstream
    return mask_mag[..., lo:hi].mean(axis=-1)


def interp_mask_to_native(mask: np.ndarray, model: Grid, native: Grid, n_frames: int) -> np.ndarray:
    """Carry a complex mask (..., Tm, Fm) on ``model``'s grid to ``native``'s (..., n_frames, Fn).

    Frame k of the native STFT is centred at k*hop_n/rate_n seconds; bin i at i*rate_n/n_fft_n Hz.
    """
    Tm, Fm = mask.shape[-2], mask.shape[-1]
    t_ratio = (native.hop / native.rate) * (model.rate / model.hop)
    f_ratio = (native.rate / native.n_fft) * (model.n_fft / model.rate)
    t0, t1, tw = _interp_weights(n_frames, t_ratio, Tm)
    tw_t = tw[:, None]
    m = mask[..., t0, :] * (1 - tw_t) + mask[..., t1, :] * tw_t if np.any(tw) else mask[..., t0, :]

    # The model's own Nyquist bin carries no estimate (AudioSep forces its complex mask to 0): use the
    # high-band rule there too, so there is no notch at the model's Nyquist frequency.
    fill = high_band_fill(np.abs(m), model)  # (..., n_frames)
    m = np.concatenate([m[..., :-1], fill[..., None].astype(m.dtype)], axis=-1)

    n_native_bins = native.n_bins
    freqs = np.arange(n_native_bins, dtype=np.float64) * native.rate / native.n_fft
    in_band = freqs <= model.rate / 2 + 1e-9
    n_in = int(in_band.sum())
    f0, f1, fw = _interp_weights(n_in, f_ratio, Fm)
    fw_t = fw
    out_in = m[..., f0] * (1 - fw_t) + m[..., f1] * fw_t if np.any(fw) else m[..., f0]
    if n_in == n_native_bins:
        return out_in
    n_hi = n_native_bins - n_in
    hi = np.broadcast_to(fill[..., None].astype(out_in.dtype), (*fill.shape, n_hi))
    return np.concatenate([out_in, hi], axis=-1)
