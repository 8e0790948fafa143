"""Native-rate spectral processing: apply a mask computed on the model's grid to audio at any rate.

The network runs at its own sample rate (e.g. 32 kHz for AudioSep, 16 kHz for the embedded model) on an
STFT of ``n_fft``/``hop`` samples.  We never resample the separated output: instead the input is
analysed at its *native* rate with the window and hop scaled by ``native_rate / model_rate``, so the
native STFT frames cover the same stretches of time and its bins lie on (or between) the model's Hz
grid.  The model's mask is then carried onto the native grid by bilinear interpolation in time and
frequency (an exact copy when the rate ratio makes the grids coincide, e.g. 48 kHz for a 16 kHz model
or 32 kHz for AudioSep) and multiplied onto the native STFT, which keeps the full band of the input.

The model's Nyquist bin and the bins above it get a rule: per frame, the mean mask magnitude over the top
octave of the model's band (Nyquist bin excluded), with no phase rotation.  Every stem and the residual
use the same rule, so the stems still sum to the mix.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

__all__ = ["Grid", "native_grid", "stft", "istft", "interp_mask_to_native", "high_band_fill", "resample"]


@dataclass(frozen=True)
class Grid:
    rate: int
    n_fft: int
    hop: int

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1


def native_grid(model: Grid, native_rate: int) -> Grid:
    """The STFT grid at ``native_rate`` whose frames and bins match ``model``'s in seconds and Hz."""
    ratio = Fraction(native_rate, model.rate)
    n_fft = int(round(model.n_fft * ratio))
    n_fft += n_fft % 2  # even, so the Nyquist bin exists
    hop = max(1, int(round(model.hop * ratio)))
    return Grid(native_rate, max(n_fft, 16), hop)


_WINDOWS: dict[tuple[int, str], torch.Tensor] = {}


def _window(n_fft: int) -> torch.Tensor:
    key = (n_fft, "hann")
    if key not in _WINDOWS:
        _WINDOWS[key] = torch.hann_window(n_fft, periodic=True, dtype=torch.float32)
    return _WINDOWS[key]


def stft(x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """(..., L) real -> (..., T, F) complex, centred with reflect padding (as AudioSep)."""
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    L = shape[-1]
    pad_mode = "reflect" if L > grid.n_fft // 2 else "constant"
    spec = torch.stft(flat, grid.n_fft, grid.hop, window=_window(grid.n_fft), center=True,
                      pad_mode=pad_mode, return_complex=True)
    return spec.transpose(-1, -2).reshape(*shape[:-1], spec.shape[-1], spec.shape[-2])


def istft(spec: torch.Tensor, grid: Grid, length: int) -> torch.Tensor:
    shape = spec.shape
    flat = spec.reshape(-1, shape[-2], shape[-1]).transpose(-1, -2)
    wave = torch.istft(flat, grid.n_fft, grid.hop, window=_window(grid.n_fft), center=True, length=length)
    return wave.reshape(*shape[:-2], length)


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


def high_band_fill(mask_mag: torch.Tensor, model: Grid) -> torch.Tensor:
    """Per-frame magnitude used above the model's Nyquist: mean over its top octave (..., T)."""
    n = model.n_bins
    lo = max(1, (n - 1) // 2)
    hi = n - 1  # exclude the Nyquist bin, whose complex mask is forced to zero upstream
    return mask_mag[..., lo:hi].mean(dim=-1)


def interp_mask_to_native(mask: torch.Tensor, model: Grid, native: Grid, n_frames: int) -> torch.Tensor:
    """Carry a complex mask (..., Tm, Fm) on ``model``'s grid to ``native``'s (..., n_frames, Fn).

    Frame k of the native STFT is centred at k*hop_n/rate_n seconds; bin i at i*rate_n/n_fft_n Hz.
    """
    Tm, Fm = mask.shape[-2], mask.shape[-1]
    t_ratio = (native.hop / native.rate) * (model.rate / model.hop)
    f_ratio = (native.rate / native.n_fft) * (model.n_fft / model.rate)
    t0, t1, tw = _interp_weights(n_frames, t_ratio, Tm)
    tw_t = torch.from_numpy(tw)[:, None]
    m = mask[..., t0, :] * (1 - tw_t) + mask[..., t1, :] * tw_t if np.any(tw) else mask[..., t0, :]

    # The model's own Nyquist bin carries no estimate (AudioSep forces its complex mask to 0): use the
    # high-band rule there too, so there is no notch at the model's Nyquist frequency.
    fill = high_band_fill(m.abs(), model)  # (..., n_frames)
    m = torch.cat([m[..., :-1], fill[..., None].to(m.dtype)], dim=-1)

    n_native_bins = native.n_bins
    freqs = np.arange(n_native_bins, dtype=np.float64) * native.rate / native.n_fft
    in_band = freqs <= model.rate / 2 + 1e-9
    n_in = int(in_band.sum())
    f0, f1, fw = _interp_weights(n_in, f_ratio, Fm)
    fw_t = torch.from_numpy(fw)
    out_in = m[..., f0] * (1 - fw_t) + m[..., f1] * fw_t if np.any(fw) else m[..., f0]
    if n_in == n_native_bins:
        return out_in
    n_hi = n_native_bins - n_in
    hi = fill[..., None].expand(*fill.shape, n_hi).to(out_in.dtype)
    return torch.cat([out_in, hi], dim=-1)


def resample(x: np.ndarray, rate: int, target: int, quality: str = "WindowedSinc16") -> np.ndarray:
    """(C, n) at ``rate`` -> (C, round(n * target / rate)) at ``target`` (Pedalboard's streaming resampler)."""
    n_out = int(round(x.shape[-1] * target / rate))
    if rate == target:
        return x
    from pedalboard import Resample
    from pedalboard.io import StreamResampler

    r = StreamResampler(float(rate), float(target), x.shape[0], getattr(Resample.Quality, quality))
    y = np.concatenate([r.process(np.ascontiguousarray(x, np.float32)), r.process()], axis=1)
    if y.shape[1] < n_out:
        y = np.pad(y, ((0, 0), (0, n_out - y.shape[1])))
    return y[:, :n_out]
