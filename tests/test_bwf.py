"""Broadcast WAV: bext fields checked with an independent reader (MediaInfo), exact TimeReference,
and audio that soundfile and Pedalboard still read sample-exactly."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest
import soundfile as sf
from pedalboard.io import AudioFile

from plugin_bridge.errors import AudioInputError, OutputError
from plugin_bridge.export.bwf import MAX_RIFF_BYTES, BwfWriter, add_bext, read_bext, write_bwf

MEDIAINFO = shutil.which("mediainfo")
needs_mediainfo = pytest.mark.skipif(MEDIAINFO is None, reason="mediainfo not installed (apt-get install mediainfo)")


def _audio(channels=2, frames=4801, seed=0):
    return (np.random.default_rng(seed).uniform(-0.9, 0.9, (channels, frames))).astype(np.float32)


def _mediainfo(path):
    """(general track dict, audio track dict, raw TimeReference from the trace)."""
    js = json.loads(subprocess.run([MEDIAINFO, "--Output=JSON", path], capture_output=True, text=True,
                                   check=True).stdout)
    tracks = {t["@type"]: t for t in js["media"]["track"]}
    trace = subprocess.run([MEDIAINFO, "--Details=1", path], capture_output=True, text=True, check=True).stdout
    m = re.search(r"TimeReference:\s+(\d+)", trace)
    return tracks["General"], tracks["Audio"], int(m.group(1)) if m else None


def _chunk_ids(path):
    ids, data = [], open(path, "rb").read()
    assert data[:4] == b"RIFF" and struct.unpack("<I", data[4:8])[0] == len(data) - 8
    pos = 12
    while pos < len(data):
        cid, size = struct.unpack("<4sI", data[pos:pos + 8])
        ids.append(cid.decode())
        pos += 8 + size + (size & 1)
    assert pos == len(data)
    return ids


def _plain_wav(path, audio, rate, bits):
    with AudioFile(str(path), "w", samplerate=rate, num_channels=audio.shape[0], bit_depth=bits) as f:
        f.write(audio)


@needs_mediainfo
@pytest.mark.parametrize("bits, channels, rate", [(16, 1, 44100), (24, 2, 48000), (32, 2, 96000)])
def test_write_bwf_fields_read_by_mediainfo(tmp_path, bits, channels, rate):
    x = _audio(channels)
    ref = 1234567
    p = write_bwf(str(tmp_path / "stem.wav"), x, rate, bits, time_reference=ref, description="dialogue, not music",
                  originator_reference="PBTEST0001", origination_date="2026-01-02", origination_time="03:04:05")
    assert _chunk_ids(p) == ["JUNK", "fmt ", "bext", "data"]
    gen, aud, tref = _mediainfo(p)
    assert gen["extra"]["bext_Present"] == "Yes" and gen["extra"]["bext_Version"] == "1"
    assert gen["Description"] == "dialogue, not music"
    assert gen["Producer"] == "plugin-bridge"
    assert gen["extra"]["Producer_Reference"] == "PBTEST0001"
    assert gen["Encoded_Date"] == "2026-01-02 03:04:05"
    assert gen["Encoded_Library_Settings"] == (f"A=PCM,F={rate},W={bits},M={'mono' if channels == 1 else 'stereo'},"
                                              f"T=plugin-bridge" + (" (IEEE float)" if bits == 32 else ""))
    assert tref == ref                                          # the raw 64-bit field
    assert round(float(aud["Delay"]) * rate) == ref             # MediaInfo's own interpretation, in seconds
    assert aud["Delay_Source"] == "Container (bext)"
    assert int(aud["SamplingCount"]) == x.shape[1] and int(aud["Channels"]) == channels
    assert int(aud["BitDepth"]) == bits and int(aud["SamplingRate"]) == rate

    # audio: same samples as a plain Pedalboard WAV, read by two independent readers
    plain = tmp_path / "plain.wav"
    _plain_wav(plain, x, rate, bits)
    dt = "float32" if bits == 32 else "int32"                  # integers: compare the stored codes
    ref_sf, _ = sf.read(plain, dtype=dt, always_2d=True)
    got_sf, sr = sf.read(p, dtype=dt, always_2d=True)
    assert sr == rate and got_sf.shape == (x.shape[1], channels)
    np.testing.assert_array_equal(got_sf, ref_sf)
    with AudioFile(str(plain)) as f:
        ref_pb = f.read(f.frames)
    with AudioFile(p) as f:
        assert f.frames == x.shape[1] and f.samplerate == rate
        got_pb = f.read(f.frames)
    np.testing.assert_array_equal(got_pb, ref_pb)
    got_sf, _ = sf.read(p, dtype="float32", always_2d=True)
    if bits == 32:
        np.testing.assert_array_equal(got_sf.T, x)               # float: bit-exact
    else:
        assert np.abs(got_sf.T - x).max() <= 1.0 / 2 ** (bits - 1)   # within one LSB


@needs_mediainfo
def test_add_bext_to_pedalboard_wav_keeps_audio_bytes(tmp_path):
    x = _audio(2, 48000, seed=1)
    p = tmp_path / "from_pedalboard.wav"
    _plain_wav(p, x, 48000, 24)
    before = open(p, "rb").read()
    data_before = before[before.index(b"data"):]
    add_bext(str(p), description="birds", time_reference=2 ** 33 + 5)     # high word used
    after = open(p, "rb").read()
    assert after[after.index(b"data"):] == data_before                   # audio bytes untouched
    assert _chunk_ids(str(p)) == ["JUNK", "fmt ", "bext", "data"]
    gen, aud, tref = _mediainfo(str(p))
    assert tref == 2 ** 33 + 5 and gen["Description"] == "birds"
    # replacing: one bext only, new values
    add_bext(str(p), description="not music", time_reference=96000, version=2)
    assert _chunk_ids(str(p)) == ["JUNK", "fmt ", "bext", "data"]
    gen, aud, tref = _mediainfo(str(p))
    assert tref == 96000 and gen["Description"] == "not music" and gen["extra"]["bext_Version"] == "2"
    b = read_bext(str(p))
    assert b.time_reference == 96000 and b.version == 2 and b.loudness == (0, 0, 0, 0, 0) and b.umid == b"\0" * 64
    got, _ = sf.read(p, dtype="float32", always_2d=True)
    assert got.shape == (48000, 2)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".pb-tmp-")]   # no temp files left


@needs_mediainfo
def test_long_and_non_ascii_descriptions(tmp_path):
    long = "speech " * 60                                      # 420 characters
    p = write_bwf(str(tmp_path / "a.wav"), _audio(1, 100), 48000, 16, 0, long)
    gen, _, tref = _mediainfo(p)
    assert gen["Description"] == long[:256].strip() and tref == 0
    p = write_bwf(str(tmp_path / "b.wav"), _audio(1, 100), 48000, 16, 7, "Vögel zwitschern – 鳥")
    gen, _, tref = _mediainfo(p)
    assert gen["Description"] == "Vögel zwitschern ? ?" and tref == 7       # ISO 8859-1, others -> '?'
    assert read_bext(p).description == "Vögel zwitschern ? ?"


def test_add_bext_out_path_leaves_source_untouched(tmp_path):
    src = tmp_path / "src.wav"
    _plain_wav(src, _audio(2, 1000), 48000, 16)
    orig = open(src, "rb").read()
    out = add_bext(str(src), out_path=str(tmp_path / "out.wav"), description="x", time_reference=42)
    assert open(src, "rb").read() == orig and read_bext(str(src)) is None
    assert read_bext(out).time_reference == 42 and read_bext(out).originator == "plugin-bridge"
    assert len(read_bext(out).originator_reference) == 32       # unique default reference


def test_bad_inputs_raise_clear_errors_and_write_nothing(tmp_path):
    with pytest.raises(OutputError, match="bit_depth"):
        write_bwf(str(tmp_path / "a.wav"), _audio(), 48000, 20)
    with pytest.raises(AudioInputError, match="NaN"):
        write_bwf(str(tmp_path / "a.wav"), np.array([[0.0, np.inf]], np.float32), 48000, 24)
    with pytest.raises(OutputError, match="TimeReference"):
        write_bwf(str(tmp_path / "a.wav"), _audio(), 48000, 24, time_reference=-1)
    assert os.listdir(tmp_path) == []
    txt = tmp_path / "notes.wav"
    txt.write_bytes(b"hello, not a wav file at all")
    with pytest.raises(AudioInputError, match="not a WAV"):
        add_bext(str(txt), description="x")
    rf64 = tmp_path / "big.wav"
    rf64.write_bytes(b"RF64\xff\xff\xff\xffWAVEds64" + b"\0" * 28)
    with pytest.raises(AudioInputError, match="RF64"):
        add_bext(str(rf64))
    with pytest.raises(AudioInputError, match="no such file"):
        add_bext(str(tmp_path / "missing.wav"))


def test_over_4_gib_is_refused_before_writing(tmp_path):
    # 2 ch x 600 M frames x 32 bit = 4.8 GB: refused from the shape alone (a broadcast view, no memory)
    huge = np.broadcast_to(np.zeros((2, 1), np.float32), (2, 600_000_000))
    with pytest.raises(OutputError, match="4 GiB"):
        write_bwf(str(tmp_path / "huge.wav"), huge, 48000, 32)
    assert os.listdir(tmp_path) == []
    # an existing (sparse) WAV whose data chunk leaves no room for bext under the RIFF limit
    p = tmp_path / "nearly4g.wav"
    data_size = MAX_RIFF_BYTES - 4 - 24 - 8 - 100
    fmt = struct.pack("<HHIIHH", 1, 2, 48000, 192000, 4, 16)
    with open(p, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + 24 + 8 + data_size) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
                + b"data" + struct.pack("<I", data_size))
        f.truncate(8 + 4 + 24 + 8 + data_size)
    with pytest.raises(OutputError, match="4 GiB"):
        add_bext(str(p), description="x")
    assert sorted(os.listdir(tmp_path)) == ["nearly4g.wav"] and read_bext(str(p)) is None


@needs_mediainfo
def test_tag_session_stems_places_each_stem(tmp_path):
    from plugin_bridge.export.bwf import tag_session_stems
    from plugin_bridge.session.model import QuerySpec, Region, Session, Stem, Track

    s = Session(name="S", sample_rate=48000)
    src = Track(name="Mix", path=str(tmp_path / "mix.wav"), offset=0)
    _plain_wav(src.path, _audio(2, 2000), 48000, 24)
    s.tracks.append(src)
    r = Region(track_id=src.id, start=1234567, end=1236567, queries=[QuerySpec(text="birds", negative="music")])
    s.regions.append(r)
    for name, qi, rate, offset in (("Mix - birds", 0, 48000, 1234567), ("Mix - Residual", "residual", 44100, 1234567)):
        t = Track(name=name, path=str(tmp_path / f"{name}.wav"), kind="stem" if qi == 0 else "residual",
                  parent_id=src.id, offset=offset, sample_rate=rate)
        _plain_wav(t.path, _audio(1, 1000), rate, 24)
        s.tracks.append(t)
        s.stems.append(Stem(region_id=r.id, query_index=qi, path=t.path, track_id=t.id))
    before = open(src.path, "rb").read()
    tagged = tag_session_stems(s)
    assert tagged == [s.tracks[1].path, s.tracks[2].path]
    assert open(src.path, "rb").read() == before                     # the source is never modified
    gen, _, tref = _mediainfo(s.tracks[1].path)
    assert gen["Description"] == "birds (not: music)" and tref == 1234567
    gen, _, tref = _mediainfo(s.tracks[2].path)
    assert gen["Description"] == "residual (everything not extracted) of Mix"
    assert tref == round(1234567 * 44100 / 48000)                      # at the file's own rate


@pytest.mark.parametrize("bits", [16, 24, 32])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_streamed_bwf_is_byte_identical_to_pedalboard_plus_add_bext(tmp_path, bits, channels):
    """BwfWriter writes a stem once, in blocks, yet gives the very bytes of a Pedalboard WAV with the
    chunk inserted afterwards (header chunks, sample conversion incl. clipping, sizes, pad byte)."""
    x = _audio(channels, 7001, seed=bits + channels) * 1.3      # some samples beyond full scale
    fields = dict(description="dialogue", time_reference=2 ** 33 + 7, originator_reference="PBTEST",
                  origination_date="2024-01-02", origination_time="03:04:05")
    ref = tmp_path / "ref.wav"
    with AudioFile(str(ref), "w", 44100, channels, bit_depth=bits) as f:
        f.write(x)
    add_bext(str(ref), **fields)
    out = tmp_path / "streamed.wav"
    w = BwfWriter(str(out), 44100, channels, bits, **fields)
    for a in range(0, x.shape[1], 3000):
        w.write(x[:, a:a + 3000])
    w.close()
    assert out.read_bytes() == ref.read_bytes()
    assert read_bext(str(out)).time_reference == 2 ** 33 + 7
