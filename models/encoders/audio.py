"""Audio example encoder: a reference sound -> a 384-d unit vector in the MiniLM text-query space.

Small and CPU-fast: 16 kHz mono -> log-mel (64 bands, 1024/512 STFT) with the clip's mean removed (so
the level of the reference does not matter) -> four conv3x3/BN/ReLU/pool blocks -> mean+max pooling over
time and frequency -> two linear layers -> L2 normalisation.  Trained (``plugin_bridge/training/audio_encoder.py``)
to land on the MiniLM embeddings of each corpus clip's label texts, so an example query can be used,
mixed and negated exactly like a text query (see ``models/weights/AUDIO_ENCODER_CARD.md``).

Weights: ``models/weights/audio_encoder.safetensors`` (float16 on disk, float32 in memory); metadata
``config`` (the numbers below) and ``space`` (the text encoder id whose space it maps into).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from plugin_bridge.audio_io import StreamReader, probe, resample
from plugin_bridge.errors import AudioInputError, CheckpointError

__all__ = ["AudioEncoderConfig", "AudioEncoderNet", "AudioEncoder", "DEFAULT_AUDIO_WEIGHTS", "load_audio_encoder",
           "check_example", "MIN_EXAMPLE_SECONDS", "SILENCE_DBFS"]

DEFAULT_AUDIO_WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights",
                                     "audio_encoder.safetensors")
MIN_EXAMPLE_SECONDS = 0.25   # shorter references carry too little to describe a sound
SILENCE_DBFS = -70.0         # a reference whose RMS is below this is treated as silent


@dataclass(frozen=True)
class AudioEncoderConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 512
    n_mels: int = 64
    fmin: float = 40.0
    channels: tuple[int, ...] = (24, 48, 96, 128)
    hidden: int = 384
    dim: int = 384
    space: str = "minilm-l6-v2"

    def to_json(self) -> str:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "AudioEncoderConfig":
        d = json.loads(text)
        d["channels"] = tuple(int(c) for c in d["channels"])
        return cls(**d)


def mel_filterbank(rate: int, n_fft: int, n_mels: int, fmin: float) -> np.ndarray:
    """(n_bins, n_mels) triangular filters equally spaced on the HTK mel scale, unit peak."""
    def hz2mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)

    def mel2hz(m):
        return 700.0 * (10 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)

    bins = np.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = mel2hz(np.linspace(hz2mel(fmin), hz2mel(rate / 2), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins[None] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - bins[None]) / np.maximum(hi - mid, 1e-9)
    return np.maximum(0.0, np.minimum(up, down)).T.astype(np.float32)


class AudioEncoderNet(nn.Module):
    def __init__(self, cfg: AudioEncoderConfig = AudioEncoderConfig()):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin)),
                             persistent=False)
        blocks, c_in = [], 1
        for c in cfg.channels:
            blocks += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
        self.convs = nn.ModuleList(blocks)
        self.fc1 = nn.Linear(2 * c_in, cfg.hidden)
        self.fc2 = nn.Linear(cfg.hidden, cfg.dim)

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, L) 16 kHz -> (B, T, n_mels) log-mel with each example's mean removed (level-invariant)."""
        spec = torch.stft(wave, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True, return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2                       # (B, F, T)
        mel = torch.matmul(power.transpose(1, 2), self.mel)
        # dividing by the mean power first makes the floor relative: the features ignore the level exactly
        m = torch.log(mel / (mel.mean(dim=(1, 2), keepdim=True) + 1e-20) + 1e-6)
        return m - m.mean(dim=(1, 2), keepdim=True)

    def embed_logmel(self, m: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) -> (B, dim) unit vectors."""
        x = m[:, None]
        for i in range(0, len(self.convs), 3):
            x = self.convs[i + 2](self.convs[i + 1](self.convs[i](x)))
            if x.shape[2] >= 2 and x.shape[3] >= 2:
                x = F.avg_pool2d(x, 2)
        h = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return F.normalize(self.fc2(F.relu(self.fc1(h))), dim=-1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.embed_logmel(self.logmel(wave))


def _hash_state(state: dict[str, torch.Tensor], cfg: AudioEncoderConfig) -> str:
    h = hashlib.sha256(cfg.to_json().encode())
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode() + str(tuple(t.shape)).encode())
        h.update(t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def check_example(audio: np.ndarray, rate: int, what: str = "example") -> np.ndarray:
    """Validate a reference (C, n) or (n,) array and return it as a 16 kHz mono float32 vector."""
    x = np.asarray(audio, np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[0] < 1:
        raise AudioInputError(f"{what}: audio must be (channels, frames), got shape {x.shape}")
    if not (8000 <= int(rate) <= 192000):
        raise AudioInputError(f"{what}: sample rate {rate} Hz is outside 8000-192000 Hz")
    n = x.shape[1]
    if n < MIN_EXAMPLE_SECONDS * rate:
        raise AudioInputError(f"{what}: {n / rate:.3f} s is too short for an example query; "
                              f"give at least {MIN_EXAMPLE_SECONDS:g} s of the sound")
    if not np.all(np.isfinite(x)):
        raise AudioInputError(f"{what}: contains NaN or infinite samples")
    mono = x.mean(axis=0, keepdims=True)
    level = 10 * math.log10(max(float(np.mean(mono.astype(np.float64) ** 2)), 1e-20))
    if level < SILENCE_DBFS:
        raise AudioInputError(f"{what}: is silent ({level:.0f} dBFS RMS); choose a part where the sound is heard")
    return resample(mono, int(rate), 16000)[0]


class AudioEncoder:
    """Reference audio -> query vector (the ``space`` text encoder's space); loads safetensors only."""

    def __init__(self, net: AudioEncoderNet, source: str = ""):
        self.net = net.eval()
        self.cfg = net.cfg
        self.source = source
        self.id = f"pb-audio-{_hash_state(net.state_dict(), net.cfg)}"

    @property
    def space(self) -> str:
        return self.cfg.space

    def encode_wave(self, x16: np.ndarray) -> np.ndarray:
        """16 kHz mono float array -> (dim,) float32 unit vector."""
        with torch.inference_mode():
            return self.net(torch.from_numpy(np.ascontiguousarray(x16, np.float32))[None])[0].numpy()

    def encode(self, audio: np.ndarray, rate: int, what: str = "example") -> np.ndarray:
        return self.encode_wave(check_example(audio, rate, what))

    def encode_file(self, path: str, start: float | None = None, end: float | None = None) -> np.ndarray:
        info = probe(path)
        what = path if start is None and end is None else f"{path}@{start or 0:g}:{'' if end is None else f'{end:g}'}"
        a = 0 if start is None else int(round(start * info.sample_rate))
        b = info.frames if end is None else min(info.frames, int(round(end * info.sample_rate)))
        if start is not None and (start < 0 or a >= info.frames):
            raise AudioInputError(f"{what}: the start {start:g} s is outside the file ({info.duration:.2f} s)")
        if b <= a:
            raise AudioInputError(f"{what}: the reference region is empty (0 s); give start < end")
        r = StreamReader(path, start=a, stop=b)
        try:
            x = r.get(0, b - a)
        finally:
            r.close()
        return self.encode(x, info.sample_rate, what)


def save_audio_encoder(net: AudioEncoderNet, path: str, **meta) -> None:
    from safetensors.torch import save_file

    from plugin_bridge.fileio import atomic_path

    tensors = {k: v.detach().cpu().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
               for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    md = {"config": net.cfg.to_json(), "space": net.cfg.space, "format": "plugin-bridge-audio-encoder/1"}
    md.update({k: str(v) for k, v in meta.items()})
    with atomic_path(path, ".safetensors") as tmp:
        save_file(tensors, tmp, metadata=md)


_CACHE: dict[str, AudioEncoder] = {}


def load_audio_encoder(path: str | None = None) -> AudioEncoder:
    from safetensors import safe_open

    path = path or DEFAULT_AUDIO_WEIGHTS
    if path in _CACHE:
        return _CACHE[path]
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: the audio example encoder is not installed, so example queries "
                              "are unavailable")
    try:
        with safe_open(path, framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        cfg = AudioEncoderConfig.from_json(meta["config"])
    except Exception as exc:  # noqa: BLE001 - any damage reads as one message
        raise CheckpointError(f"{path}: not a readable audio-encoder file ({exc})") from None
    net = AudioEncoderNet(cfg)
    expected = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    if set(tensors) != set(expected) or any(tuple(tensors[k].shape) != tuple(v.shape) for k, v in expected.items()):
        raise CheckpointError(f"{path}: the audio-encoder weights do not match its architecture")
    net.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    enc = AudioEncoder(net, path)
    _CACHE[path] = enc
    return enc
