"""``ResUNetConfig``: the separator's architecture and STFT settings, without torch (so the ONNX Runtime
path can read a model's configuration and run its cached graph without importing torch)."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

__all__ = ["ResUNetConfig"]


@dataclass(frozen=True)
class ResUNetConfig:
    sample_rate: int = 32000
    n_fft: int = 2048
    hop: int = 320
    input_channels: int = 1
    condition_size: int = 512
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256, 384, 384)
    encoder_pools: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (2, 2), (2, 2), (2, 2), (1, 2))
    bottleneck_channels: int = 384
    mask: str = "complex"  # "complex": sigmoid magnitude + phase rotation (K=3); "magnitude": K=1
    input_transform: str = "linear"  # "linear" (AudioSep) or "log1p"
    momentum: float = 0.01
    name: str = "resunet"
    #: Full FiLM: a multiplicative ``gamma`` (applied as ``1 + gamma``, zero-initialised) beside the additive
    #: ``beta`` before every BatchNorm'd activation.  AudioSep uses beta only (False keeps its key names).
    film_gamma: bool = False

    # -- presets ---------------------------------------------------------------------------------
    @classmethod
    def audiosep(cls) -> "ResUNetConfig":
        return cls(name="audiosep-resunet30")

    # -- derived -----------------------------------------------------------------------------------
    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def K(self) -> int:
        return 3 if self.mask == "complex" else 1

    @property
    def time_multiple(self) -> int:
        return math.prod(p[0] for p in self.encoder_pools)

    @property
    def freq_multiple(self) -> int:
        return math.prod(p[1] for p in self.encoder_pools)

    def validate(self) -> "ResUNetConfig":
        if self.mask not in ("complex", "magnitude"):
            raise ValueError(f"mask must be 'complex' or 'magnitude', got {self.mask!r}")
        if self.input_transform not in ("linear", "log1p"):
            raise ValueError(f"input_transform must be 'linear' or 'log1p', got {self.input_transform!r}")
        if len(self.encoder_channels) != len(self.encoder_pools) or not self.encoder_channels:
            raise ValueError("encoder_channels and encoder_pools must have the same, non-zero length")
        if (self.n_fft // 2) % self.freq_multiple:
            raise ValueError(
                f"n_fft/2={self.n_fft // 2} must be divisible by the frequency pooling {self.freq_multiple}")
        if self.hop <= 0 or self.hop > self.n_fft:
            raise ValueError("hop must be in 1..n_fft")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["encoder_channels"] = list(self.encoder_channels)
        d["encoder_pools"] = [list(p) for p in self.encoder_pools]
        if not self.film_gamma:
            del d["film_gamma"]  # beta-only configs keep the JSON they had before the field existed
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ResUNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ResUNet config fields: {sorted(unknown)}")
        d = dict(d)
        if "encoder_channels" in d:
            d["encoder_channels"] = tuple(int(c) for c in d["encoder_channels"])
        if "encoder_pools" in d:
            d["encoder_pools"] = tuple((int(a), int(b)) for a, b in d["encoder_pools"])
        return cls(**d).validate()
