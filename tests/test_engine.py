"""Separation engine: sample-exact outputs, seamless chunking, sharing, negatives, cancellation, bad input."""
import os
import threading

import numpy as np
import pytest
from pedalboard.io import AudioFile

from plugin_bridge.engine.chunker import OverlapAdd, plan_segments
from plugin_bridge.audio_io import read_all
from plugin_bridge.engine.separator import Query, SeparationSettings, Separator
from plugin_bridge.engine.spectral import Grid, fast_fft_length, native_grid
from plugin_bridge.errors import AudioInputError, ConfigError, JobCancelled, OutputError
from plugin_bridge.testing import ConstantMaskBackend, fast_model, fast_separator


def write(path, audio, rate, bit_depth=32):
    with AudioFile(str(path), "w", samplerate=rate, num_channels=audio.shape[0], bit_depth=bit_depth) as f:
        f.write(audio.astype(np.float32))
    return str(path)


def noise(channels, frames, seed=0, scale=0.2):
    return (np.random.default_rng(seed).standard_normal((channels, frames)) * scale).astype(np.float32)


# -- chunker / overlap-add ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(25))
def test_ola_identity_any_length_chunk_overlap(seed):
    rng = np.random.default_rng(seed)
    length = int(rng.integers(1, 50000))
    chunk = int(rng.integers(2, 9000))
    overlap = int(rng.integers(0, chunk))
    align = int(rng.choice([1, 2, 3, 147, 441]))
    x = rng.standard_normal((2, length))
    segs = plan_segments(length, chunk, overlap, align)
    assert segs[0].start == 0 and segs[-1].stop == length
    ola = OverlapAdd(1, 2, length)
    out = np.zeros_like(x)
    for k, s in enumerate(segs):
        nxt = segs[k + 1].start if k + 1 < len(segs) else None
        start, (blk,) = ola.add(s, [x[:, s.start:s.stop]], nxt)
        out[:, start:start + blk.shape[1]] = blk
    start, (blk,) = ola.finish()
    out[:, start:start + blk.shape[1]] = blk
    assert np.max(np.abs(out - x)) < 1e-12


@pytest.mark.parametrize("seed", range(25))
def test_plan_tiles_the_file_evenly_and_wastes_no_network_work(seed):
    rng = np.random.default_rng(100 + seed)
    align = int(rng.choice([1, 3, 147, 441]))
    chunk = int(rng.integers(2, 40)) * align + int(rng.integers(0, align))
    overlap = int(rng.integers(0, chunk))
    length = int(rng.integers(chunk + 1, 30 * chunk))
    segs = plan_segments(length, chunk, overlap, align)
    c = max(align, chunk - chunk % align)
    stride = max(align, (c - overlap) - (c - overlap) % align)
    kept = c - stride
    assert segs[0].start == 0 and segs[-1].stop == length
    assert all(s.start % align == 0 for s in segs)
    assert all(s.length <= c + align - 1 for s in segs)  # memory: never longer than the chunk (+ alignment)
    assert all(b.start > a.start and b.start <= a.stop for a, b in zip(segs, segs[1:]))  # in order, no gap
    assert len(segs) == -(-(length - kept) // stride)  # as many segments as full-length chunks would need
    # the network's work: the file plus the overlaps, within alignment (no segment mostly repeats another)
    assert sum(s.length for s in segs) <= length + (len(segs) - 1) * kept + 2 * len(segs) * align


def test_a_region_just_over_one_chunk_costs_about_its_own_length():
    R = 48000
    segs = plan_segments(16 * R, 15 * R, int(1.5 * R), 3)  # a 16 s region at the default 15 s / 10 % chunks
    assert [s.length for s in segs] == [int(8.75 * R)] * 2  # 17.5 s of network work (was 15 s + 15 s)


@pytest.mark.parametrize("rate,length,chunk,overlap", [
    (16000, 8000, 1.0, 0.25), (44100, 50000, 0.5, 0.5), (48000, 200000, 1.3, 0.1), (22050, 1234, 2.0, 0.0),
    (96000, 100001, 0.4, 0.7), (8000, 4001, 0.3, 0.33)])
def test_identity_mask_through_engine_is_seamless(rate, length, chunk, overlap):
    sep = Separator(fast_model(), backend=ConstantMaskBackend(30.0))
    x = noise(2, length, seed=length)
    stems, residual = sep.separate_array(x, rate, [Query("anything")],
                                         SeparationSettings(chunk_seconds=chunk, overlap=overlap))
    assert stems.shape == (1, 2, length)
    assert np.max(np.abs(stems[0] - x)) < 1e-5
    assert np.max(np.abs(residual)) < 1e-5


def test_native_grid_matches_model_grid_in_time_and_frequency():
    m = Grid(16000, 512, 256)
    g = native_grid(m, 48000)
    assert (g.n_fft, g.hop, g.win_length) == (1536, 768, 1536)  # whole multiple: the model's bins, every 3rd
    g = native_grid(m, 44100)
    # same hop and window duration within rounding; the window zero-padded to a fast FFT length
    assert abs(g.hop / 44100 - 256 / 16000) < 0.5 / 44100 + 1e-12
    assert abs(g.win_length / 44100 - 512 / 16000) < 1.0 / 44100
    assert g.n_fft == fast_fft_length(g.win_length) == 1458


def test_fast_fft_length_is_the_smallest_even_product_of_twos_and_threes():
    def smooth(k):
        for p in (2, 3):
            while k % p == 0:
                k //= p
        return k == 1

    for n in list(range(2, 400)) + [705, 706, 1411, 1412, 2822, 4096]:
        want = next(k for k in range(n, 4 * n + 8) if k % 2 == 0 and smooth(k))
        assert fast_fft_length(n) == want, n


# -- files: formats, rates, channels, lengths ----------------------------------------------------------

@pytest.mark.parametrize("rate,channels,seconds", [
    (8000, 1, 0.5), (16000, 2, 1.3), (22050, 3, 0.7), (44100, 2, 2.1), (48000, 6, 0.9), (96000, 1, 1.1),
    (192000, 2, 0.6)])
def test_stems_keep_rate_channels_length_and_sum_to_mix(tmp_path, rate, channels, seconds):
    frames = int(rate * seconds) + 7
    x = noise(channels, frames, seed=rate)
    src = write(tmp_path / "mix.wav", x, rate)
    sep = fast_separator()
    res = sep.separate_file(src, [Query("speech"), Query("birds", negative="music")], str(tmp_path / "out"),
                            fmt="wav32f", settings=SeparationSettings(chunk_seconds=0.5, overlap=0.25))
    outs = [read_all(p) for p in res.stem_paths + [res.residual_path]]
    for audio, sr in outs:
        assert sr == rate and audio.shape == (channels, frames)
    total = sum(a for a, _ in outs)
    assert np.max(np.abs(total - x)) < 1e-6
    # the source was not modified
    assert np.array_equal(read_all(src)[0], x)


@pytest.mark.parametrize("fmt,ext,tol", [("wav16", ".wav", 2e-4), ("wav24", ".wav", 2e-6), ("flac16", ".flac", 2e-4),
                                         ("flac24", ".flac", 2e-6)])
def test_integer_formats(tmp_path, fmt, ext, tol):
    x = noise(2, 20000, scale=0.1)
    src = write(tmp_path / "in.wav", x, 32000, bit_depth=32)
    res = fast_separator().separate_file(src, [Query("a")], str(tmp_path / "o"), fmt=fmt)
    assert res.stem_paths[0].endswith(ext)
    with AudioFile(res.stem_paths[0]) as f:
        assert f.frames == 20000 and f.num_channels == 2
        assert str(f.file_dtype) == {"16": "int16", "24": "int24"}[fmt[-2:]] or f.file_dtype
    total = read_all(res.stem_paths[0])[0] + read_all(res.residual_path)[0]
    assert np.max(np.abs(total - x)) < 2 * tol + 1e-6


def test_region_only_is_processed(tmp_path):
    rate = 16000
    x = noise(1, rate * 3)
    src = write(tmp_path / "in.wav", x, rate)
    sep = Separator(fast_model(), backend=ConstantMaskBackend(30.0))
    res = sep.separate_file(src, [Query("a")], str(tmp_path / "o"), fmt="wav32f", region=(12345, 12345 + 8000))
    y, _ = read_all(res.stem_paths[0])
    assert y.shape == (1, 8000)
    assert np.max(np.abs(y - x[:, 12345:20345])) < 1e-5


# -- several queries, negatives --------------------------------------------------------------------------

def test_multi_query_masks_share_the_energy():
    x = noise(2, 16000)
    # every query claims everything (mask ~ 1): shared, each gets 1/3 and the residual nothing
    sep = Separator(fast_model(), backend=ConstantMaskBackend(30.0))
    stems, residual = sep.separate_array(x, 16000, [Query("a"), Query("b"), Query("c")])
    for s in stems:
        assert np.max(np.abs(s - x / 3)) < 1e-5
    assert np.max(np.abs(residual)) < 1e-5
    # without sharing the stems would claim 3x the mix
    stems, residual = sep.separate_array(x, 16000, [Query("a"), Query("b")], SeparationSettings(share=False))
    assert np.max(np.abs(residual + x)) < 1e-5


def test_random_model_masks_never_exceed_mix_in_any_bin():
    from plugin_bridge.engine.masks import combine_masks

    g = np.random.default_rng(0)
    pos = (g.random((4, 1, 30, 65)) * np.exp(1j * g.random((4, 1, 30, 65)) * 6)).astype(np.complex64)
    out = combine_masks(pos)
    assert float(np.abs(out).sum(0).max()) <= 1.0 + 1e-6
    # bins where the sum was already <= 1 are untouched
    small = pos * 0.2
    assert np.allclose(combine_masks(small), small)


def test_negative_query_removes_what_it_matches():
    class ByQuery:
        """mask 1 for the positive query, and for the negative query mask 0.75 (logit ln 3)."""
        name = "byquery"

        def logits(self, mag, cond):
            B, C, T, F = mag.shape
            out = np.zeros((B, 3 * C, T, F), np.float32)
            out[:, 1] = 30.0
            out[0, 0] = 30.0
            out[1:, 0] = np.log(3.0)
            return out

    x = noise(1, 16000)
    sep = Separator(fast_model(), backend=ByQuery())
    stems, residual = sep.separate_array(x, 16000, [Query("speech", negative="music")])
    # stem = mix * 1 * (1 - 0.75)
    assert np.max(np.abs(stems[0] - 0.25 * x)) < 1e-4
    assert np.max(np.abs(stems[0] + residual - x)) < 1e-6


# -- progress, cancellation, atomicity ----------------------------------------------------------------------

def test_progress_reports_and_cancel_leaves_no_files(tmp_path):
    x = noise(2, 16000 * 4)
    src = write(tmp_path / "in.wav", x, 16000)
    out = tmp_path / "out"
    seen = []
    cancel = threading.Event()

    def progress(p):
        seen.append(p)
        if p.segment == 2:
            cancel.set()

    with pytest.raises(JobCancelled):
        fast_separator().separate_file(src, [Query("a"), Query("b")], str(out),
                                       settings=SeparationSettings(chunk_seconds=0.5), progress=progress,
                                       cancel=cancel)
    assert [p.segment for p in seen] == [1, 2]
    assert 0 < seen[0].fraction < seen[1].fraction < 1 and seen[1].eta_seconds is not None
    assert os.listdir(out) == []


def test_failure_mid_job_leaves_no_files(tmp_path):
    class Boom:
        name = "boom"
        calls = 0

        def logits(self, mag, cond):
            Boom.calls += 1
            if Boom.calls == 3:
                raise RuntimeError("simulated failure")
            B, C, T, F = mag.shape
            return np.zeros((B, 3 * C, T, F), np.float32)

    src = write(tmp_path / "in.wav", noise(1, 16000 * 3), 16000)
    with pytest.raises(RuntimeError):
        Separator(fast_model(), backend=Boom()).separate_file(
            src, [Query("a")], str(tmp_path / "out"), settings=SeparationSettings(chunk_seconds=0.5))
    assert os.listdir(tmp_path / "out") == []


# -- bad input ------------------------------------------------------------------------------------------

def test_bad_inputs_get_clear_errors_and_write_nothing(tmp_path):
    sep = fast_separator()
    out = tmp_path / "out"
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage garbage garbage" * 3)
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello")
    cases = [(empty, "empty"), (corrupt, "cannot be decoded|no data chunk|fmt chunk"), (unknown, "unknown audio format"),
             (tmp_path / "missing.wav", "no such file")]
    for path, msg in cases:
        with pytest.raises(AudioInputError, match=msg):
            sep.separate_file(str(path), [Query("a")], str(out))
    x = noise(1, 16000 * 2)
    x[0, 20000] = np.nan
    nan = write(tmp_path / "nan.wav", x, 16000)
    with pytest.raises(AudioInputError, match="NaN"):
        sep.separate_file(nan, [Query("a")], str(out), settings=SeparationSettings(chunk_seconds=0.5))
    x[0, 20000] = np.inf
    inf = write(tmp_path / "inf.wav", x, 16000)
    with pytest.raises(AudioInputError, match="NaN or infinite"):
        sep.separate_file(inf, [Query("a")], str(out))
    assert not out.exists() or os.listdir(out) == []


def test_unwritable_output_dir(tmp_path):
    src = write(tmp_path / "in.wav", noise(1, 8000), 16000)
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write anywhere (root)")
        with pytest.raises(OutputError, match="not writable"):
            fast_separator().separate_file(src, [Query("a")], str(ro))
    finally:
        os.chmod(ro, 0o700)


def test_output_dir_that_cannot_exist(tmp_path):
    src = write(tmp_path / "in.wav", noise(1, 8000), 16000)
    with pytest.raises(OutputError):
        fast_separator().separate_file(src, [Query("a")], "/proc/plugin-bridge-cannot-write-here")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputError):
        fast_separator().separate_file(src, [Query("a")], str(f / "sub"))


def test_outputs_never_overwrite_the_source(tmp_path):
    src = write(tmp_path / "take_a.wav", noise(1, 8000), 16000)
    with pytest.raises(ConfigError, match="overwrite the source"):
        fast_separator().separate_file(src, [Query("a")], str(tmp_path), fmt="wav32f", names=["take_a"])
    assert read_all(src)[0].shape == (1, 8000)


def test_bad_settings():
    with pytest.raises(ConfigError):
        SeparationSettings(chunk_seconds=0.01).validate()
    with pytest.raises(ConfigError):
        SeparationSettings(overlap=0.9).validate()
    with pytest.raises(ConfigError):
        fast_separator().separate_array(noise(1, 100), 16000, [])


def test_per_channel_mode_masks_each_channel_from_itself():
    class LoudestBins:
        """Passes the bins within 8 dB of each item's loudest bin (a Hann-windowed tone's two neighbour
        bins sit at exactly half its peak, so the threshold must not be 6 dB)."""
        name = "loudest"

        def logits(self, mag, cond):
            B, C, T, F = mag.shape
            out = np.zeros((B, 3 * C, T, F), np.float32)
            peak = mag.reshape(B, -1).max(axis=1)[:, None, None, None]
            out[:, 0:1] = np.where(mag >= 0.4 * peak, 30.0, -30.0)
            out[:, 1:2] = 30.0
            return out

    rate = 16000
    t = np.arange(rate * 2) / rate
    x = np.stack([0.5 * np.sin(2 * np.pi * 500 * t), 0.05 * np.sin(2 * np.pi * 3000 * t)]).astype(np.float32)
    sep = Separator(fast_model(), backend=LoudestBins())
    inner = slice(2000, -2000)
    stems, _ = sep.separate_array(x, rate, [Query("a")], SeparationSettings(per_channel=False))
    # one mask from the downmix: the quiet right-channel tone is not among the loudest bins
    assert np.max(np.abs(stems[0, 0, inner] - x[0, inner])) < 0.02
    assert np.max(np.abs(stems[0, 1, inner])) < 0.005
    stems, _ = sep.separate_array(x, rate, [Query("a")], SeparationSettings(per_channel=True))
    assert np.max(np.abs(stems[0, 1, inner] - x[1, inner])) < 0.005


@pytest.mark.parametrize("rate", [48000, 32000, 96000])
def test_network_input_read_off_the_native_spectrum_matches_the_model_rate_spectrum(rate):
    """At whole multiples of the model rate the engine skips resampling: the network's input magnitude
    comes from the native STFT's low bins.  It must equal what the model saw in training, the model-rate
    STFT.  Checked on a band-limited signal (sinusoids below 7 kHz with a slow envelope) sampled directly at
    both rates, so no resampler's filter or latency blurs the comparison."""
    from plugin_bridge.engine.masks import magnitude
    from plugin_bridge.engine.spectral import stft

    class Record:
        name = "record"

        def __init__(self):
            self.mags = []

        def logits(self, mag, cond):
            self.mags.append(mag.copy())
            return ConstantMaskBackend().logits(mag, cond)

    rng = np.random.default_rng(7)
    freqs, phases, amps = rng.uniform(50, 7000, 40), rng.uniform(0, 2 * np.pi, 40), rng.uniform(0.005, 0.03, 40)

    def signal(r, channel_gain):
        t = np.arange(3 * r) / r
        y = (np.sin(2 * np.pi * np.outer(t, freqs) + phases) * amps).sum(axis=1) * (1 + 0.5 * np.sin(2 * np.pi * 1.3 * t))
        return (y * channel_gain).astype(np.float32)

    x = np.stack([signal(rate, 1.0), signal(rate, 0.3)])
    rec = Record()
    sep = Separator(fast_model(), backend=rec)
    stems, _ = sep.separate_array(x, rate, [Query("a")], SeparationSettings(chunk_seconds=30))
    direct = rec.mags[0][0, 0]                                                  # (T, F) on the model grid
    mono16 = signal(sep.model_grid.rate, 0.65)[None]                           # the downmix, sampled at 16 kHz
    ref = magnitude(stft(mono16, sep.model_grid))[0]
    assert direct.shape[1] == sep.model_grid.n_bins
    T = len(ref) - 2                                                            # the engine pads the tail
    err = np.linalg.norm(ref[2:T] - direct[2:T]) / np.linalg.norm(ref[2:T])
    assert err < 0.01, err
    assert np.max(np.abs(stems.sum(axis=0) - x)) < 1e-4                         # identity mask still exact


def test_large_models_run_on_shorter_chunks_to_bound_memory():
    """AudioSep's ResUNet30 has 17x the embedded model's full-resolution activations per second: the
    engine caps its chunks (about 3.8 s) whatever the chunk setting, and the result is still seamless."""
    from plugin_bridge.models.registry import random_model
    from plugin_bridge.models.resunet import ResUNetConfig

    class Frames(ConstantMaskBackend):
        def __init__(self):
            super().__init__(30.0)
            self.frames = []

        def logits(self, mag, cond):
            self.frames.append(mag.shape[2])
            return super().logits(mag, cond)

    big = random_model(ResUNetConfig.audiosep())
    rec = Frames()
    sep = Separator(big, backend=rec)
    assert 3.0 < sep.max_chunk_seconds < 4.0
    x = noise(1, 32000 * 10, seed=4)
    stems, _ = sep.separate_array(x, 32000, [Query("a")], SeparationSettings(chunk_seconds=15))
    hop_s = big.cfg.hop / big.cfg.sample_rate
    assert len(rec.frames) >= 3
    assert max(rec.frames) * hop_s < sep.max_chunk_seconds + 2 * big.cfg.n_fft / big.cfg.sample_rate + 0.1
    assert np.max(np.abs(stems[0] - x)) < 1e-4
    small = Separator(fast_model(), backend=Frames())
    assert small.max_chunk_seconds > 15          # the embedded model keeps the 15 s default
