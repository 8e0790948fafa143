"""Configurable ResUNet separator with additive FiLM conditioning (the AudioSep family).

One implementation serves every model we run:

* ``ResUNetConfig.audiosep()`` is the official AudioSep ``ResUNet30`` (32 kHz, 2048/320 STFT,
  six levels, 3-channel complex mask).  Its ``state_dict`` uses the official key names, so an
  AudioSep checkpoint's ``ss_model.*`` tensors load strictly (see ``plugin_bridge.checkpoints``).
* The embedded default model is another configuration (lower rate, fewer channels, fewer levels).

Tensor layout is (batch, channels, time, freq) everywhere, as upstream.  The network part
(:meth:`ResUNet.mask_logits`) takes a *magnitude* spectrogram and a condition vector and has no
complex ops, so it exports to ONNX; the STFT/ISTFT live outside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plugin_bridge.models.config import ResUNetConfig

__all__ = ["ResUNetConfig", "ResUNet", "MaskTriple"]


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope=0.01)


class ConvBlockRes(nn.Module):
    """Pre-activation residual block: BN + FiLM -> lrelu -> conv3x3, twice, plus a 1x1 shortcut."""

    def __init__(self, in_c: int, out_c: int, momentum: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_c, momentum=momentum)
        self.conv1 = nn.Conv2d(in_c, out_c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_c, momentum=momentum)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(in_c, out_c, 1) if in_c != out_c else None

    def film_dims(self) -> dict[str, int]:
        return {"beta1": self.bn1.num_features, "beta2": self.bn2.num_features}

    def forward(self, x, film, prefix):
        h = self.conv1(_lrelu(_film(self.bn1(x), film, prefix + "->beta1")))
        h = self.conv2(_lrelu(_film(self.bn2(h), film, prefix + "->beta2")))
        return (self.shortcut(x) if self.shortcut is not None else x) + h


def gamma_name(beta_name: str) -> str:
    """``...->beta1`` -> ``...->gamma1``: the full-FiLM scale that sits beside a beta."""
    return beta_name[:-5] + "gamma" + beta_name[-1]


def _film(x: torch.Tensor, film: dict[str, torch.Tensor], beta_name: str) -> torch.Tensor:
    """x * (1 + gamma) + beta; gamma only where the model has full FiLM."""
    gamma = film.get(gamma_name(beta_name))
    return (x if gamma is None else x * (1 + gamma)) + film[beta_name]


class EncoderBlock(nn.Module):
    def __init__(self, in_c: int, out_c: int, pool: tuple[int, int], momentum: float):
        super().__init__()
        self.conv_block1 = ConvBlockRes(in_c, out_c, momentum)
        self.pool = tuple(pool)

    def forward(self, x, film, prefix):
        y = self.conv_block1(x, film, prefix + "->conv_block1")
        pooled = F.avg_pool2d(y, kernel_size=self.pool) if self.pool != (1, 1) else y
        return pooled, y


class DecoderBlock(nn.Module):
    def __init__(self, in_c: int, out_c: int, up: tuple[int, int], momentum: float):
        super().__init__()
        # registration order matches upstream: conv1, bn1, conv_block2, bn2
        self.conv1 = nn.ConvTranspose2d(in_c, out_c, kernel_size=up, stride=up, bias=False)
        self.bn1 = nn.BatchNorm2d(in_c, momentum=momentum)
        self.conv_block2 = ConvBlockRes(2 * out_c, out_c, momentum)
        # Unused in forward (as upstream); kept so the official state_dict loads strictly.
        self.bn2 = nn.BatchNorm2d(in_c, momentum=momentum)

    def film_dims(self) -> dict[str, int]:
        return {"beta1": self.bn1.num_features, "beta2": self.bn2.num_features}

    def forward(self, x, skip, film, prefix):
        u = self.conv1(_lrelu(_film(self.bn1(x), film, prefix + "->beta1")))
        z = torch.cat([u, skip], dim=1)
        return self.conv_block2(z, film, prefix + "->conv_block2")


class ResUNetBase(nn.Module):
    def __init__(self, cfg: ResUNetConfig):
        super().__init__()
        self.cfg = cfg
        m = cfg.momentum
        ch = cfg.encoder_channels
        self.bn0 = nn.BatchNorm2d(cfg.n_bins, momentum=m)
        self.pre_conv = nn.Conv2d(cfg.input_channels, ch[0], 1)
        self.n_levels = len(ch)
        in_c = ch[0]
        for i, (c, p) in enumerate(zip(ch, cfg.encoder_pools), start=1):
            self.add_module(f"encoder_block{i}", EncoderBlock(in_c, c, p, m))
            in_c = c
        self.conv_block7a = EncoderBlock(in_c, cfg.bottleneck_channels, (1, 1), m)
        in_c = cfg.bottleneck_channels
        for i in range(1, self.n_levels + 1):
            level = self.n_levels - i  # mirrors encoder level (0-based)
            out_c = ch[level]
            self.add_module(f"decoder_block{i}", DecoderBlock(in_c, out_c, cfg.encoder_pools[level], m))
            in_c = out_c
        self.after_conv = nn.Conv2d(in_c, cfg.input_channels * cfg.K, 1)

    def film_meta(self) -> list[tuple[str, int]]:
        """(name, channels) for every FiLM beta, in upstream pre-order, '->'-joined names."""
        meta: list[tuple[str, int]] = []

        def walk(module: nn.Module, path: list[str]):
            for name, child in module.named_children():
                p = path + [name]
                if isinstance(child, (ConvBlockRes, DecoderBlock)):
                    for k, v in child.film_dims().items():
                        meta.append(("->".join(p + [k]), v))
                walk(child, p) if isinstance(child, (EncoderBlock, DecoderBlock)) else None

        walk(self, [])
        return meta

    def forward(self, mag: torch.Tensor, film: dict[str, torch.Tensor]) -> torch.Tensor:
        """mag: (B, C, T, F) linear magnitude -> mask logits (B, C*K, T, F)."""
        cfg = self.cfg
        x = mag
        if cfg.input_transform == "log1p":
            x = torch.log1p(x)
        T = x.shape[2]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        pad_t = (-T) % cfg.time_multiple
        x = F.pad(x, (0, 0, 0, pad_t))
        x = x[..., : x.shape[-1] - 1]  # drop Nyquist bin
        x = self.pre_conv(x)
        skips = []
        for i in range(1, self.n_levels + 1):
            x, skip = getattr(self, f"encoder_block{i}")(x, film, f"encoder_block{i}")
            skips.append(skip)
        x, _ = self.conv_block7a(x, film, "conv_block7a")
        for i in range(1, self.n_levels + 1):
            x = getattr(self, f"decoder_block{i}")(x, skips[self.n_levels - i], film, f"decoder_block{i}")
        x = self.after_conv(x)
        x = F.pad(x, (0, 1))  # zero logits for the Nyquist bin
        return x[:, :, :T, :]


class FiLM(nn.Module):
    """One Linear(condition -> C) per beta (additive, as AudioSep); with ``gamma`` also one per gamma
    (multiplicative, zero-initialised so that a beta-only model's weights start as the same function)."""

    def __init__(self, meta: list[tuple[str, int]], condition_size: int, gamma: bool = False):
        super().__init__()
        self.names = [n for n, _ in meta]
        for name, c in meta:
            lin = nn.Linear(condition_size, c)
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
            self.add_module(name, lin)
        if gamma:
            for name, c in meta:
                gname = gamma_name(name)
                lin = nn.Linear(condition_size, c)
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
                self.add_module(gname, lin)
                self.names.append(gname)

    def forward(self, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: getattr(self, n)(cond)[:, :, None, None] for n in self.names}


@dataclass
class MaskTriple:
    """A complex ratio mask as magnitude and unit phasor: M = mag * (cos + j sin)."""

    mag: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor


class ResUNet(nn.Module):
    def __init__(self, cfg: ResUNetConfig | None = None):
        super().__init__()
        self.cfg = (cfg or ResUNetConfig.audiosep()).validate()
        self.base = ResUNetBase(self.cfg)
        self.film = FiLM(self.base.film_meta(), self.cfg.condition_size, gamma=self.cfg.film_gamma)
        self.register_buffer("window", torch.hann_window(self.cfg.n_fft, periodic=True), persistent=False)

    # -- network core (ONNX-exportable) ------------------------------------------------------------
    def mask_logits(self, mag: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.base(mag, self.film(cond))

    def masks_from_logits(self, logits: torch.Tensor) -> MaskTriple:
        return masks_from_logits(logits, self.cfg.K)

    # -- waveform helpers ----------------------------------------------------------------------------
    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> complex (B, C, T, F)."""
        B, C, L = wave.shape
        spec = torch.stft(wave.reshape(B * C, L), self.cfg.n_fft, self.cfg.hop, window=self.window,
                          center=True, pad_mode="reflect", return_complex=True)
        return spec.reshape(B, C, spec.shape[-2], spec.shape[-1]).transpose(-1, -2)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        B, C, T, Fb = spec.shape
        wave = torch.istft(spec.transpose(-1, -2).reshape(B * C, Fb, T), self.cfg.n_fft, self.cfg.hop,
                           window=self.window, center=True, length=length)
        return wave.reshape(B, C, length)

    def forward(self, wave: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Waveform in, separated waveform out (model rate), as upstream ``ResUNet30``."""
        spec = self.stft(wave)
        masks = self.masks_from_logits(self.mask_logits(magnitude(spec), cond))
        return self.istft(apply_mask(spec, masks), wave.shape[-1])


def magnitude(spec: torch.Tensor) -> torch.Tensor:
    """|X| with the power clamped at 1e-10, exactly as upstream feeds the network."""
    return torch.clamp(spec.real ** 2 + spec.imag ** 2, min=1e-10) ** 0.5


def masks_from_logits(logits: torch.Tensor, K: int) -> MaskTriple:
    B, CK, T, Fb = logits.shape
    x = logits.reshape(B, CK // K, K, T, Fb)
    mag = torch.sigmoid(x[:, :, 0])
    if K == 1:
        return MaskTriple(mag, torch.ones_like(mag), torch.zeros_like(mag))
    r = torch.tanh(x[:, :, 1])
    i = torch.tanh(x[:, :, 2])
    norm = torch.clamp(torch.sqrt(r * r + i * i), min=1e-10)
    return MaskTriple(mag, r / norm, i / norm)


def apply_mask(spec: torch.Tensor, m: MaskTriple) -> torch.Tensor:
    """Y = X * mag * exp(j angle); equals upstream's magnitude/phase recombination exactly."""
    re, im = spec.real, spec.imag
    out_re = m.mag * (re * m.cos - im * m.sin)
    out_im = m.mag * (im * m.cos + re * m.sin)
    return torch.complex(out_re, out_im)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_padded(net: ResUNet, wave: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """Model forward with the end padded by one window (so the last samples get a full ISTFT envelope)."""
    L = wave.shape[-1]
    x = torch.nn.functional.pad(wave, (0, net.cfg.n_fft))
    return net(x, cond)[..., :L]
