"""The separation engine: stream reader -> chunker -> query encoder + network -> overlap-add -> writer.

``Separator.separate_stream(reader, queries, settings, sink)`` is the core: it owns chunking, weighting
and overlap-add, reading from an ``AudioSource`` and handing finished frames to a ``StemSink`` (plain
numpy arrays, in order).  ``separate_file`` (a ``StreamReader`` into a ``WriterSink``) and
``separate_array`` (an ``ArraySource`` into an ``ArraySink``) only read -> apply -> save;
``plugin_bridge.session.jobs`` passes its own sink.

``Separator.separate_file`` streams any file (any rate 8-192 kHz, any channel count, any length) and
writes one stem per query plus a residual, each with exactly the input's rate, channel count and
length.  ``Separator.separate_array`` runs the same pipeline on an in-memory array.

Per segment (native rate R, model rate Rm):
1. native-rate STFT (window and hop scaled by R/Rm); when R is a whole multiple of Rm its low bins are the
   model-rate spectrum, otherwise the mono downmix (or each channel) is resampled to Rm with Pedalboard;
2. model-rate STFT magnitude -> network -> one complex mask per query (and per negative query);
3. masks combined (negative removal, energy sharing between queries) on the model's grid;
4. masks carried onto the native-rate STFT grid (see ``spectral.py``) and applied to every channel;
5. native ISTFT -> stems; the residual is mix minus the sum of stems (so they sum to the mix exactly);
6. weighted overlap-add across segments.
"""
from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

import numpy as np

from plugin_bridge.engine.backends import make_backend
from plugin_bridge.engine.chunker import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP, OverlapAdd, align_unit, plan_segments
from plugin_bridge.engine.masks import combine_masks, complex_masks, magnitude
from plugin_bridge.audio_io import StreamReader, resample
from plugin_bridge.engine.spectral import Grid, interp_mask_to_native, istft, native_grid, stft
from plugin_bridge.engine.writer import OutputFormat, StemWriterSet, WriterSink, check_output_dir
from plugin_bridge.errors import AudioInputError, ConfigError, JobCancelled
from plugin_bridge.fileio import check_writable_output
from plugin_bridge.learned import LearnedStore, is_named_query

__all__ = ["Query", "SeparationSettings", "Separator", "SeparationResult", "Progress", "AudioSource", "StemSink",
           "ArraySource", "ArraySink", "is_cancelled"]


@dataclass(frozen=True)
class Query:
    """What to extract.  ``text`` is a text query or ``@NAME`` (a saved learned / example query, see
    ``plugin_bridge.learned``); ``vector`` (an example or mixed query, already in the model's
    query space) replaces the text's embedding, ``negative_vector`` the negative's."""

    text: str
    negative: str | None = None
    name: str | None = None  # output naming token; defaults to a slug of the text
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    negative_vector: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def token(self) -> str:
        return slug(self.name or self.text)


@dataclass(frozen=True)
class SeparationSettings:
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    overlap: float = DEFAULT_OVERLAP   # fraction of a chunk shared with the next one
    weight_power: float = 1.0      # triangular OLA weight exponent
    per_channel: bool = False      # one mask per channel instead of one from the downmix
    share: bool = True             # normalise several queries' masks so they never exceed the mix
    residual: bool = True

    def validate(self) -> "SeparationSettings":
        if not (0.25 <= self.chunk_seconds <= 600):
            raise ConfigError(f"chunk length {self.chunk_seconds} s must be between 0.25 and 600 s")
        if not (0.0 <= self.overlap <= 0.75):
            raise ConfigError(f"overlap {self.overlap} must be a fraction between 0 and 0.75")
        if self.weight_power <= 0:
            raise ConfigError("weight power must be positive")
        return self


@dataclass
class Progress:
    fraction: float
    eta_seconds: float | None
    segment: int
    n_segments: int
    elapsed: float


@dataclass
class SeparationResult:
    stem_paths: list[str]
    residual_path: str | None
    sample_rate: int
    channels: int
    frames: int
    seconds: float
    clipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def slug(text: str, max_len: int = 40) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text.strip().lower()).strip("-")
    return (s[:max_len].rstrip("-") or "query")


CancelFlag = Callable[[], bool] | threading.Event | None


class AudioSource(Protocol):
    """What ``separate_stream`` reads: ``frames``, ``sample_rate``, ``channels`` and
    ``get(start, stop)`` -> (channels, stop - start) float32, called with non-decreasing ``start``
    (``StreamReader`` is one)."""

    frames: int
    sample_rate: int
    channels: int

    def get(self, start: int, stop: int) -> np.ndarray: ...


class StemSink(Protocol):
    """Where ``separate_stream`` puts the stems.

    ``write(start, blocks)`` is called with consecutive, non-empty blocks from frame 0 to the end:
    ``blocks`` holds one (channels, n) float64 array per query (then the residual, when the settings
    keep it), valid only during the call.  Exactly one of ``close()`` (every frame was written; its
    result is what ``separate_stream`` returns) or ``abort()`` (failure or cancel: discard everything)
    follows."""

    def write(self, start: int, blocks: list[np.ndarray]) -> None: ...

    def close(self) -> Any: ...

    def abort(self) -> None: ...


class ArraySource:
    """An in-memory (channels, frames) array as an ``AudioSource``."""

    def __init__(self, audio: np.ndarray, rate: int):
        self.audio = audio
        self.sample_rate = rate
        self.channels, self.frames = audio.shape

    def get(self, start: int, stop: int) -> np.ndarray:
        return self.audio[:, start:stop]


class ArraySink:
    """Collects every output into one (outputs, channels, frames) array; ``close()`` returns it as float32."""

    def __init__(self, outputs: int, channels: int, frames: int):
        self.out = np.zeros((outputs, channels, frames), np.float64)

    def write(self, start: int, blocks: list[np.ndarray]) -> None:
        for o, b in zip(self.out, blocks):
            o[:, start:start + b.shape[-1]] = b

    def close(self) -> np.ndarray:
        return self.out.astype(np.float32)

    def abort(self) -> None:
        self.out = None


def is_cancelled(cancel: CancelFlag) -> bool:
    """True when ``cancel`` (None, an Event or a callable) says stop."""
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


class Separator:
    def __init__(self, model, backend: str | object = "auto", device: str = "auto", threads: int | None = None):
        """``model`` is a ``plugin_bridge.models.registry.LoadedModel``; ``backend`` a name or an object
        with ``logits(mag, cond)``."""
        self.model = model
        self.cfg = model.cfg
        self.backend = make_backend(backend, model, device, threads) if isinstance(backend, str) else backend
        self._fft_workers = threads  # the STFT keeps to the same thread limit as the network (None: default)
        self.model_grid = Grid(self.cfg.sample_rate, self.cfg.n_fft, self.cfg.hop)
        self._emb_cache: dict[str, np.ndarray] = {}

    #: Bound on the network's full-resolution activation size per chunk (first-level channels x bins x
    #: frames).  The embedded model never reaches it (65 s); AudioSep's ResUNet30 (32 channels x 1025 bins
    #: x 100 frames/s, 17x the embedded model per second) is held to about 3.8 s chunks, where its peak
    #: RSS measured 1.49 GB (ONNX Runtime) / 1.10 GB (PyTorch), against 3.06 GB for 10 s chunks under ONNX.
    ACTIVATION_BUDGET = 12_500_000

    #: Resampler for the network input at rates that are not whole multiples of the model rate (44.1 kHz).
    #: Only the network's input magnitudes pass through it (the mask is applied to the native spectrum).
    #: Measured on 40 dev mixtures upsampled to 44.1 kHz: median SDRi 7.009 dB against 7.016 dB with the
    #: default WindowedSinc32, stems within 32 dB (median) of the default's on a wideband mix, at 1/4 of its cost
    #: (the default took about 1/4 of the whole 44.1 kHz separation time).
    RESAMPLE_QUALITY = "WindowedSinc16"

    @property
    def max_chunk_seconds(self) -> float:
        """The longest chunk this model is run on (a longer chunk setting is capped to it)."""
        c = self.cfg
        per_second = c.encoder_channels[0] * c.n_bins * c.sample_rate / c.hop
        return float(min(600.0, max(2.0, self.ACTIVATION_BUDGET / per_second)))

    # -- queries ------------------------------------------------------------------------------------
    def embed(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self._emb_cache]
        if missing:
            vecs = self.model.encoder().encode(missing)
            for t, v in zip(missing, vecs):
                self._emb_cache[t] = v
        return np.stack([self._emb_cache[t] for t in texts]) if texts else np.zeros((0, self.cfg.condition_size), np.float32)

    def condition(self, text: str | None, vector: np.ndarray | None = None) -> np.ndarray:
        """One condition vector: ``vector`` as given, ``@NAME`` from the learned-query store (refused when
        it was made for another model), else the text's embedding."""
        if vector is not None:
            v = np.asarray(vector, np.float32).reshape(-1)
            if v.shape != (self.cfg.condition_size,) or not np.all(np.isfinite(v)):
                raise ConfigError(f"a query vector must be {self.cfg.condition_size} finite values, got {v.shape}")
            return v
        if is_named_query(text):
            lq = LearnedStore().get(text)
            lq.check_model(self.model)
            return lq.vector
        return self.embed([text])[0]

    def _conditions(self, queries: list[Query]) -> tuple[np.ndarray, list[bool]]:
        has_neg = [q.negative_vector is not None or bool(q.negative and q.negative.strip()) for q in queries]
        items = [(q.text, q.vector) for q in queries]
        items += [(q.negative, q.negative_vector) for q, h in zip(queries, has_neg) if h]
        self.embed([t for t, v in items if v is None and not is_named_query(t)])  # one batch for all texts
        return np.stack([self.condition(t, v) for t, v in items]), has_neg

    # -- one segment ------------------------------------------------------------------------------------
    def _to_model_rate(self, x: np.ndarray, rate: int) -> np.ndarray:
        """(C, n) native -> (C, round(n*Rm/R)) at the model's rate."""
        return resample(x, rate, self.cfg.sample_rate, self.RESAMPLE_QUALITY)

    def process_segment(self, x: np.ndarray, rate: int, cond: np.ndarray, has_neg: list[bool],
                        settings: SeparationSettings) -> np.ndarray:
        """x: (C, n) float32 at ``rate`` -> stems (Q, C, n) float64."""
        C, n = x.shape
        Q = len(has_neg)
        native = native_grid(self.model_grid, rate)
        # Zero-pad the end by one window so the last real samples are covered by full frames (with a
        # 50 %-overlap window the final frame alone would leave a near-zero ISTFT envelope there).
        n_pad = n + native.n_fft
        xp = np.pad(x, ((0, 0), (0, n_pad - n)))
        spec_n = stft(xp, native, self._fft_workers)  # (C, Tn, Fn)
        ratio = rate // self.cfg.sample_rate
        if ratio * self.cfg.sample_rate == rate:
            # Integer rate ratio (16/32/48/96/192 kHz for a 16 kHz model): the native grid *is* the model
            # grid sampled `ratio` times finer, so its first bins are the model-rate STFT (times `ratio`)
            # of the band-limited signal. Read the network input off it; no resampling, no second STFT.
            low = spec_n[..., : self.model_grid.n_bins] / ratio
            if not settings.per_channel:
                low = low.mean(axis=0, keepdims=True)  # STFT is linear: the spectrum of the mono downmix
            mag = magnitude(low)
        else:
            src = xp if settings.per_channel else xp.mean(axis=0, keepdims=True)
            xm = self._to_model_rate(src, rate)
            if xm.shape[1] <= self.model_grid.n_fft // 2:
                xm = np.pad(xm, ((0, 0), (0, self.model_grid.n_fft // 2 + 1 - xm.shape[1])))
            spec_m = stft(xm, self.model_grid, self._fft_workers)  # (Cm, T, F)
            mag = magnitude(spec_m)
        Cm = mag.shape[0]
        B = cond.shape[0]
        # batch = conditions x mask-channels: network input (B*Cm, 1, T, F)
        mag_b = np.repeat(mag[None, :, None], B, axis=0).reshape(B * Cm, 1, *mag.shape[1:])
        cond_b = np.repeat(cond, Cm, axis=0)
        logits = np.asarray(self.backend.logits(mag_b, cond_b), np.float32)
        M = complex_masks(logits, self.cfg.K).reshape(B, Cm, *mag.shape[1:])
        pos = M[:Q]
        neg = None
        if any(has_neg):
            neg = np.zeros_like(pos)
            j = Q
            for q, h in enumerate(has_neg):
                if h:
                    neg[q] = M[j]
                    j += 1
        masks = combine_masks(pos, neg, has_neg, share=settings.share)  # (Q, Cm, Tm, Fm)
        Mn = interp_mask_to_native(masks, self.model_grid, native, spec_n.shape[-2])  # (Q, Cm, Tn, Fn)
        Y = spec_n[None] * Mn
        stems = istft(Y, native, n_pad, self._fft_workers)[..., :n]
        return stems.astype(np.float64)

    # -- whole streams -------------------------------------------------------------------------------
    def separate_stream(self, reader: "AudioSource", queries: list[Query], settings: SeparationSettings,
                        sink: "StemSink", progress: Callable[[Progress], None] | None = None,
                        cancel: CancelFlag = None):
        """The engine core: split ``reader`` into overlapping chunks, separate each, weight and
        overlap-add them, and hand the finished frames to ``sink`` in order.

        ``sink.write(start, blocks)`` receives consecutive blocks covering frames ``[0, reader.frames)``:
        one (channels, n) float64 array per query, plus the residual (mix minus the stems) last when
        ``settings.residual``.  When every frame is written ``sink.close()`` is called and its result
        returned; on any error or cancel (``JobCancelled``) ``sink.abort()`` is called and the
        exception propagates."""
        try:
            settings = settings.validate()
            if not queries:
                raise ConfigError("at least one query is needed")
            cond, has_neg = self._conditions(queries)
            frames, rate = reader.frames, reader.sample_rate
            align = align_unit(rate, self.cfg.sample_rate)
            chunk = int(round(min(settings.chunk_seconds, self.max_chunk_seconds) * rate))
            chunk = max(chunk, align)
            overlap = int(round(settings.overlap * chunk))
            overlap = min(overlap, chunk - align) if chunk > align else 0
            segs = plan_segments(frames, chunk, overlap, align)
            ola = OverlapAdd(len(queries), reader.channels, frames, settings.weight_power)

            def emit(start: int, blocks: list[np.ndarray]) -> None:
                n = blocks[0].shape[-1]
                if not n:
                    return
                if settings.residual:
                    blocks = blocks + [reader.get(start, start + n).astype(np.float64) - np.sum(blocks, axis=0)]
                sink.write(start, blocks)

            t0 = time.monotonic()
            for k, seg in enumerate(segs):
                if is_cancelled(cancel):
                    raise JobCancelled("separation cancelled; no output was written")
                x = reader.get(seg.start, seg.stop)
                stems = self.process_segment(x, rate, cond, has_neg, settings)
                nxt = segs[k + 1].start if k + 1 < len(segs) else None
                emit(*ola.add(seg, list(stems), nxt))
                if progress:
                    el = time.monotonic() - t0
                    frac = seg.stop / frames if nxt is not None else 1.0
                    eta = el / frac * (1 - frac) if frac > 0 else None
                    progress(Progress(frac, eta, k + 1, len(segs), el))
            emit(*ola.finish())
        except BaseException:
            sink.abort()
            raise
        return sink.close()

    def separate_array(self, audio: np.ndarray, rate: int, queries: list[Query],
                       settings: SeparationSettings = SeparationSettings(),
                       progress=None, cancel: CancelFlag = None) -> tuple[np.ndarray, np.ndarray]:
        """audio (C, L) -> (stems (Q, C, L) float32, residual (C, L) float32)."""
        audio = np.asarray(audio, np.float32)
        if audio.ndim == 1:
            audio = audio[None]
        if audio.ndim != 2 or audio.shape[1] == 0:
            raise AudioInputError("audio must be a non-empty (channels, frames) array")
        if not np.all(np.isfinite(audio)):
            raise AudioInputError("audio contains NaN or infinite samples")
        out = self.separate_stream(ArraySource(audio, rate), queries, replace(settings, residual=True),
                                   ArraySink(len(queries) + 1, *audio.shape), progress, cancel)
        return out[:-1], out[-1]

    def separate_file(self, path: str, queries: list[Query], out_dir: str,
                      fmt: OutputFormat | str = "wav24", settings: SeparationSettings = SeparationSettings(),
                      progress=None, cancel: CancelFlag = None, region: tuple[int, int | None] = (0, None),
                      names: list[str] | None = None, residual_name: str | None = None,
                      basename: str | None = None, overwrite: bool = False,
                      partial_prefix: str | None = None) -> SeparationResult:
        """Stream ``path`` (optionally only frames ``region``) into one file per query plus a residual.

        An existing output file is an error (nothing is written) unless ``overwrite``."""
        fmt = OutputFormat(fmt) if isinstance(fmt, str) else fmt
        settings = settings.validate()
        t0 = time.monotonic()
        reader = StreamReader(path, start=region[0], stop=region[1])
        try:
            check_output_dir(out_dir)
            base = basename or os.path.splitext(os.path.basename(path))[0]
            res_name = residual_name or f"{base}_residual"
            if names is None:  # a query named like the residual gets a numbered name, never the same file
                names = unique_names(([res_name] if settings.residual else []) + [f"{base}_{q.token}" for q in queries])
                names = names[1:] if settings.residual else names
            if len(names) != len(queries):
                raise ConfigError("one output name per query is needed")
            paths = [os.path.join(out_dir, n + fmt.extension) for n in names]
            res_path = os.path.join(out_dir, res_name + fmt.extension) if settings.residual else None
            all_paths = paths + ([res_path] if res_path else [])
            if len(set(map(os.path.abspath, all_paths))) != len(all_paths):
                raise ConfigError("output names collide; give each query a distinct name")
            if os.path.abspath(path) in map(os.path.abspath, all_paths):
                raise ConfigError("an output would overwrite the source audio; choose another folder or name")
            for p in all_paths:
                check_writable_output(p, overwrite)
            writers = StemWriterSet(all_paths, reader.sample_rate, reader.channels, fmt, partial_prefix)
            written = self.separate_stream(reader, queries, settings, WriterSink(writers), progress, cancel)
        finally:
            reader.close()
        warnings = []
        clipped = {os.path.basename(p): c for p, c in zip(all_paths, writers.clipped) if c}
        if clipped:
            warnings.append(f"{sum(clipped.values())} samples exceeded full scale and were clipped in "
                            f"{', '.join(clipped)}; use --format wav32f to keep them")
        return SeparationResult(written[:len(paths)], written[len(paths)] if res_path else None,
                                reader.sample_rate, reader.channels, reader.frames,
                                time.monotonic() - t0, clipped, warnings)


def unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}-{seen[n]}")
        else:
            seen[n] = 1
            out.append(n)
    return out
