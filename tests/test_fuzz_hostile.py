"""Hostile input, generated: byte-level corruptions of WAV/AIFF/FLAC headers, safetensors models and
their configs, and option values of ``separate`` / ``session add-region``.

For every case: a clear one-line error or a correct result (never a crash, a traceback or another
exception type), nothing created or modified outside a fresh output folder, and a run time bounded by
what the file really holds.  Audio is opened in a child process (``fuzz_helpers.ProbeWorker``) because
a decoder can crash the whole process on a bad header.  ``PB_FUZZ_EXAMPLES`` scales every test (CI
default: a few hundred cases in all; set e.g. 2500 for a long run by hand).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fuzz_helpers import ProbeWorker, folder_state, json_paths
from hostile_files import wav_bytes

N = int(os.environ.get("PB_FUZZ_EXAMPLES", 0)) or None
FUZZ = dict(deadline=None, derandomize=N is None, suppress_health_check=list(HealthCheck))


def _examples(ci: int) -> int:
    return N or ci


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Valid small files of each container (bytes, frames, channels)."""
    from pedalboard.io import AudioFile

    d = tmp_path_factory.mktemp("fuzzbase")
    x = (np.random.RandomState(0).randn(2, 12000) * 0.2).astype(np.float32)
    out = {}
    for name, bd in (("pcm16.wav", 16), ("f32.wav", 32), ("s24.flac", 24), ("s16.aiff", 16)):
        with AudioFile(str(d / name), "w", 48000, 2, bit_depth=bd) as f:
            f.write(x)
        out[name] = ((d / name).read_bytes(), 12000, 2)
    pcm = (np.clip(x.T, -1, 1) * 100).astype(np.int8).tobytes()
    out["alaw.wav"] = (wav_bytes(6, 2, 48000, 8, pcm), 12000, 2)
    return out


@pytest.fixture(scope="module")
def worker():
    w = ProbeWorker()
    yield w
    w.close()


_INTERESTING = [0, 1, 2, 3, 6, 7, 8, 16, 17, 24, 32, 64, 0x7F, 0x80, 0xFF, 0xFFFE, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF,
                48000, 2 ** 31 + 7]


class Case(tuple):
    """(name, bytes, frames, channels) with a short repr for hypothesis' failure report."""

    def __repr__(self):
        name, data = self[0], self[1]
        return f"Case({name!r}, {len(data)} bytes, head={data[:48].hex()}, tail={data[-24:].hex()})"


@st.composite
def corruption(draw, bases):
    name = draw(st.sampled_from(sorted(bases)))
    data, frames, ch = bases[name]
    b = bytearray(data)
    kind = draw(st.sampled_from(["bytes", "int", "truncate", "tail"]))
    if kind == "bytes":  # a few bytes of the header
        for _ in range(draw(st.integers(1, 4))):
            b[draw(st.integers(0, min(len(b), 96) - 1))] = draw(st.integers(0, 255))
    elif kind == "int":  # a size / count / codec field
        pos = draw(st.integers(0, min(len(b), 96) - 4))
        width = draw(st.sampled_from([2, 4]))
        v = draw(st.sampled_from(_INTERESTING)) & ((1 << (8 * width)) - 1)
        big = name.endswith(".aiff") or name.endswith(".flac")
        b[pos:pos + width] = v.to_bytes(width, "big" if big else "little")
    elif kind == "truncate":
        b = b[:draw(st.integers(1, len(b) - 1))]
    else:  # damage near the end (FLAC's last frame, trailing chunks)
        for _ in range(draw(st.integers(1, 3))):
            b[len(b) - 1 - draw(st.integers(0, min(len(b), 300) - 1))] = draw(st.integers(0, 255))
    return Case((name, bytes(b), frames, ch))


def _one_line_error(msg: str, path: str) -> None:
    assert "\n" not in msg and "Traceback" not in msg, msg
    assert msg.startswith(path), msg
    assert 10 < len(msg) < 400, msg


def test_corrupted_audio_headers_give_a_message_never_a_crash(tmp_path_factory, bases, worker):
    counts = {"accepted": 0, "refused": 0}

    @settings(max_examples=_examples(220), **FUZZ)
    @given(case=corruption(bases))
    def run(case):
        name, data, orig_frames, ch = case
        d = tmp_path_factory.mktemp("audio")
        p = str(d / name)
        with open(p, "wb") as f:
            f.write(data)
        before = folder_state(d)
        res = worker.check(p, timeout=20)
        assert "crashed" not in res, f"decoder crashed (rc {res.get('crashed')}) on a corrupted {name}"
        assert "timeout" not in res, f"opening a corrupted {name} of {len(data)} bytes took over 20 s"
        assert "unexpected" not in res, res.get("unexpected")
        if res["ok"]:
            counts["accepted"] += 1
            # whatever was accepted was really in the file: no invented frames
            if name.endswith(".flac"):
                assert res["frames"] <= orig_frames
            else:
                assert res["frames"] * res["channels"] <= len(data)
            assert res["seconds"] < 2 + res["frames"] / 48000
        else:
            counts["refused"] += 1
            _one_line_error(res["error"], p)
        assert folder_state(d) == before  # reading never writes
        shutil.rmtree(d)

    run()
    print(f"\naudio header fuzz: {counts}")
    assert counts["refused"] > 0 and counts["accepted"] > 0


# -- models ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from plugin_bridge.models.registry import save_safetensors_model
    from plugin_bridge.models.resunet import ResUNet, ResUNetConfig

    cfg = ResUNetConfig(sample_rate=16000, n_fft=64, hop=16, condition_size=8, encoder_channels=(2, 2),
                        encoder_pools=((1, 2), (1, 2)), bottleneck_channels=2, name="tiny")
    p = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_safetensors_model(ResUNet(cfg), str(p))
    return p.read_bytes()


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
                     | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                     max_leaves=5)


def test_corrupted_models_are_refused_with_a_message(tmp_path_factory, tiny_model):
    from plugin_bridge.errors import CheckpointError, PluginBridgeError
    from plugin_bridge.models.registry import load_model

    n_header = struct.unpack("<Q", tiny_model[:8])[0]
    header = json.loads(tiny_model[8:8 + n_header])
    config = json.loads(header["__metadata__"]["config"])
    paths = [p for p in json_paths(config) if p]

    @settings(max_examples=_examples(120), **FUZZ)
    @given(data=st.data())
    def run(data):
        kind = data.draw(st.sampled_from(["config", "header-bytes", "random", "truncate"]))
        if kind == "config":
            cfg = json.loads(json.dumps(config))
            path = data.draw(st.sampled_from(paths))
            parent = cfg
            for k in path[:-1]:
                parent = parent[k]
            parent[path[-1]] = data.draw(_JSON)
            h = json.loads(json.dumps(header))
            h["__metadata__"]["config"] = json.dumps(cfg)
            hb = json.dumps(h).encode()
            blob = struct.pack("<Q", len(hb)) + hb + tiny_model[8 + n_header:]
        elif kind == "header-bytes":
            b = bytearray(tiny_model)
            for _ in range(data.draw(st.integers(1, 4))):
                b[data.draw(st.integers(0, 8 + n_header - 1))] = data.draw(st.integers(0, 255))
            blob = bytes(b)
        elif kind == "truncate":
            blob = tiny_model[:data.draw(st.integers(0, len(tiny_model) - 1))]
        else:
            blob = data.draw(st.binary(min_size=1, max_size=200))
        ext = data.draw(st.sampled_from([".safetensors", ".ckpt", ".pt"]))
        d = tmp_path_factory.mktemp("m")
        p = str(d / ("model" + ext))
        with open(p, "wb") as f:
            f.write(blob)
        try:
            m = load_model(p)
        except PluginBridgeError as exc:
            msg = str(exc)
            assert "\n" not in msg and len(msg) < 700, msg
            if kind in ("random", "truncate") or ext == ".safetensors":
                assert isinstance(exc, CheckpointError) and msg.startswith(p), msg
                assert "refers to code" not in msg, msg
        else:
            assert m.cfg.sample_rate >= 1000 and m.cfg.hop >= 1
        assert folder_state(d) == {"model" + ext: (len(blob), os.stat(p).st_mtime_ns)}
        shutil.rmtree(d)

    run()


# -- command-line options -------------------------------------------------------------------------
def _main(argv) -> tuple[int, str]:
    from plugin_bridge.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


def _last_error_line(err: str) -> str:
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err, err
    return lines[-1]


_NUMBER_TEXT = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "1e300", "9" * 40, "0", "0.1", "abc", "", "-0", "1e-300", "0x10"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-2 ** 70, 2 ** 70).map(str),
)


@pytest.fixture(scope="module")
def small_wav(tmp_path_factory):
    from pedalboard.io import AudioFile

    d = tmp_path_factory.mktemp("opt")
    p = d / "mix.wav"
    with AudioFile(str(p), "w", 16000, 1, bit_depth=16) as f:
        f.write((np.random.RandomState(1).randn(1, 8000) * 0.1).astype(np.float32))
    return p


def test_fuzzed_separate_options_fail_cleanly_or_write_only_into_the_output_folder(tmp_path_factory, small_wav,
                                                                                  monkeypatch):
    import plugin_bridge.models.registry as registry
    from plugin_bridge.testing import fast_model

    model = fast_model()
    monkeypatch.setattr(registry, "load_model", lambda *a, **k: model)
    src_dir = small_wav.parent
    options = st.sampled_from(["--start", "--end", "--threads", "--chunk", "--overlap"])

    @settings(max_examples=_examples(60), **FUZZ)
    @given(opts=st.dictionaries(options, _NUMBER_TEXT, min_size=1, max_size=3))
    def run(opts):
        out = tmp_path_factory.mktemp("sepout") / "stems"
        before = folder_state(src_dir)
        argv = ["separate", str(small_wav), "-q", "speech", "-o", str(out), "--backend", "torch", "--quiet"]
        for k, v in opts.items():
            argv += [f"{k}={v}"]
        try:
            rc, err = _main(argv)
        except SystemExit as exc:  # argparse: not a number at all
            assert exc.code == 2
            rc, err = 2, None
        assert folder_state(src_dir) == before
        if rc == 0:
            assert sorted(os.listdir(out)) == ["mix_residual.wav", "mix_speech.wav"]
        else:
            assert rc == 2
            if err is not None:
                _last_error_line(err)
            assert not os.path.exists(out) or not [n for n in os.listdir(out) if not n.startswith(".pb-probe")]

    run()


def test_fuzzed_region_positions_never_damage_the_session(tmp_path_factory, small_wav):
    from plugin_bridge.session.model import Session

    d = tmp_path_factory.mktemp("sess")
    shutil.copy(small_wav, d / "mix.wav")
    sess = str(d / "s.pbsession.json")
    assert _main(["session", "new", str(d / "mix.wav"), "-o", sess])[0] == 0
    text = st.one_of(_NUMBER_TEXT, _NUMBER_TEXT.map(lambda t: t + "s"))

    @settings(max_examples=_examples(80), **FUZZ)
    @given(start=text, end=text)
    def run(start, end):
        before = open(sess, "rb").read()
        n_regions = len(Session.load(sess).regions)
        rc, err = _main(["session", "add-region", sess, "--track", "mix", f"--start={start}", f"--end={end}",
                         "-q", "speech", "--no-queue"])
        s = Session.load(sess)  # always opens again
        if rc == 0:
            r = s.regions[-1]
            assert len(s.regions) == n_regions + 1
            assert 0 <= r.start < r.end <= 2 ** 53 and r.start < s.track_end(s.tracks[0])
        else:
            assert rc == 2
            _last_error_line(err)
            assert open(sess, "rb").read() == before

    run()


# -- batch manifests ----------------------------------------------------------------------------------
_FIELD_TEXT = st.one_of(
    st.sampled_from(["", "mix.wav", "missing.wav", "../mix.wav", "*.wav", "/", "mix.wav;mix.wav", "speech;music",
                     ";", "1-2", "0.1-0.3", "-", "5-1", "nan-inf", "a,b", '"', "\\", "x" * 400, "@nothing",
                     "../escape", "sub/dir/name", "."]),
    st.text(max_size=30),
    _NUMBER_TEXT,
)


def test_fuzzed_batch_manifests_fail_per_row_and_write_only_into_the_output_folder(tmp_path_factory, small_wav,
                                                                                  monkeypatch):
    """CSV and JSON Lines manifests with generated rows (odd paths, globs, regions, names, queries, broken
    JSON): every bad row is one line naming it, the others run, no traceback, the sources and the manifest's
    folder are untouched and nothing is written outside the output folder."""
    import json as _json
    import shutil

    import plugin_bridge.models.registry as registry
    from plugin_bridge.testing import fast_model

    model = fast_model()
    monkeypatch.setattr(registry, "load_model", lambda *a, **k: model)
    cols = ["input", "queries", "negatives", "region", "output"]

    @settings(max_examples=_examples(40), **FUZZ)
    @given(rows=st.lists(st.fixed_dictionaries({c: _FIELD_TEXT for c in cols}), min_size=1, max_size=4),
           jsonl=st.booleans(), broken=st.booleans())
    def run(rows, jsonl, broken):
        root = tmp_path_factory.mktemp("batch")
        src = root / "src"
        src.mkdir()
        shutil.copy(small_wav, src / "mix.wav")
        if jsonl:
            text = "\n".join(_json.dumps(r) for r in rows) + ("\n{not json" if broken else "")
            man = src / "jobs.jsonl"
        else:
            import csv
            import io as _io

            buf = _io.StringIO()
            w = csv.DictWriter(buf, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
            text = buf.getvalue() + ('"unterminated,row\n' if broken else "")
            man = src / "jobs.csv"
        man.write_text(text, encoding="utf-8")
        before_src, before_root = folder_state(src), sorted(os.listdir(root))
        out = root / "out"
        argv = ["batch", str(man), "-q", "speech", "-o", str(out), "--backend", "torch", "--quiet"]
        rc, err = _main(argv)
        assert rc in (0, 1, 2), (rc, err)
        assert "Traceback" not in err, err
        assert folder_state(src) == before_src
        assert sorted(os.listdir(root)) == sorted(set(before_root) | ({"out"} if out.exists() else set()))
        if out.exists():
            leftovers = [n for _, _, fs in os.walk(out) for n in fs if n.startswith(".pb-partial")]
            assert not leftovers, leftovers
        for line in err.replace("\r", "\n").splitlines():
            assert len(line) < 2000, line  # one line per item, never a dump

    run()
