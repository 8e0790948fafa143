"""The benchmark machinery: generated file, per-backend child processes, the printed tables.
No timing assertions: only structure and internal consistency of the numbers."""
from __future__ import annotations

import argparse
import os
import re

import numpy as np
import pytest
import torch

from plugin_bridge.bench.speed import _emulate_upstream, make_bench_file, peak_rss_bytes, run_bench, upstream_chunk_plan
from plugin_bridge.errors import ConfigError
from plugin_bridge.tables import format_table


def _rows(text: str, header_start: str) -> tuple[list[str], list[list[str]]]:
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header_start))
    headers = lines[i].split()
    assert set(lines[i + 1].replace(" ", "")) == {"-"}
    rows = []
    for line in lines[i + 2:]:
        if not line.strip() or line.startswith(("length ratio", "[", "(")):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return headers, rows


def test_bench_runs_and_prints_consistent_tables(capsys):
    args = argparse.Namespace(minutes=0.08, model="random-demo", backends="torch", audiosep=False,
                              rss_lengths="0.05,0.1", threads=1, encoder="hash")
    assert run_bench(args) == 0
    out = capsys.readouterr().out
    headers, rows = _rows(out, "backend")
    assert headers == ["backend", "audio_s", "wall_s", "rtf", "x_realtime", "peak_rss_mb", "speed_vs_torch"]
    assert [r[0] for r in rows] == ["torch"]
    audio, wall, rtf, xrt, rss = (float(v) for v in rows[0][1:6])
    assert audio == 4.8  # 0.08 min of 48 kHz audio, measured from the written stems
    assert abs(rtf - wall / audio) < 0.002 and abs(xrt - audio / wall) < 0.02 * max(1.0, xrt)
    assert 50 < rss < 4000  # a real child process with torch loaded
    assert rows[0][6] == "1.00x"
    headers, rrows = _rows(out, "minutes")
    assert headers == ["minutes", "audio_s", "wall_s", "peak_rss_mb", "rss_vs_first"]
    assert [r[0] for r in rrows] == ["0.05", "0.1"] and [r[1] for r in rrows] == ["3", "6"]
    assert rrows[0][4] == "1.00"
    m = re.search(r"length ratio 2\.0x -> peak RSS ratio ([0-9.]+)x", out)
    assert m and abs(float(m.group(1)) - float(rrows[1][4])) < 0.011


def test_bench_file_is_exact_and_streamed(tmp_path):
    from pedalboard.io import AudioFile

    p = make_bench_file(str(tmp_path / "b.wav"), 2.5, block_seconds=1.0)
    with AudioFile(p) as f:
        assert (f.samplerate, f.num_channels, f.frames) == (48000, 2, 120000)
        x = f.read(f.frames)
    assert 0.05 < float(np.sqrt(np.mean(x ** 2))) < 0.5 and float(np.max(np.abs(x))) < 1.0
    assert float(np.corrcoef(x[0], x[1])[0, 1]) < 0.99  # two different channels


def test_upstream_chunk_plan_matches_spec():
    # 10 s: windows at 0, 3 s (look-ahead), 3 s again, 6 s (tail to the end) -> 19 s of network input
    assert upstream_chunk_plan(320000) == [(0, 160000), (96000, 256000), (96000, 256000), (192000, 320000)]
    assert upstream_chunk_plan(160000) == []  # <= 5 s: upstream never enters its loop (returns zeros)
    plan = upstream_chunk_plan(60 * 32000)
    assert len(plan) == 38 and sum(b - a for a, b in plan) / 32000 == pytest.approx(188.0)


def test_upstream_emulation_charges_every_planned_pass():
    from plugin_bridge.models.resunet import ResUNet, ResUNetConfig

    cfg = ResUNetConfig(sample_rate=32000, n_fft=512, hop=160, condition_size=16, encoder_channels=(4, 8),
                        encoder_pools=((2, 2), (2, 2)), bottleneck_channels=8)
    net = ResUNet(cfg).eval()
    calls = []
    net.base.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[2]))
    wave = np.random.default_rng(0).standard_normal((2, 48000 * 10)).astype(np.float32) * 0.1
    wall = _emulate_upstream(net, wave, np.ones(16, np.float32) / 4)
    assert wall > 0 and len(calls) == 4
    assert calls[:3] == [160000 // 160 + 1] * 3  # three full 5 s windows, then the 4 s tail


def test_helpers_and_bad_arguments():
    assert peak_rss_bytes() > 10 * 2 ** 20
    t = format_table(["a", "bb"], [["x", 1.5], ["yy", 10]])
    assert t.splitlines() == ["a    bb", "--  ---", "x   1.5", "yy   10"]
    with pytest.raises(ConfigError, match="rss-lengths"):
        run_bench(argparse.Namespace(minutes=0.05, backends="torch", rss_lengths="1,x", audiosep=False))
    with pytest.raises(ConfigError, match="unknown backend"):
        run_bench(argparse.Namespace(minutes=0.05, backends="torch,tpu", rss_lengths="", audiosep=False))


def test_repeated_bench_reports_medians_of_fresh_processes_and_a_second_pass(capsys, tmp_path):
    import json

    out_json = tmp_path / "speed.json"
    args = argparse.Namespace(minutes=0.05, model="random-demo", backends="torch", audiosep=False,
                              rss_lengths="", threads=1, encoder="hash", repeat=2, json=str(out_json), rate=44100)
    assert run_bench(args) == 0
    out = capsys.readouterr().out
    headers, rows = _rows(out, "backend  runs")
    assert headers == ["backend", "runs", "first_file_x_median", "first_file_x_min", "first_file_x_max",
                       "second_file_x_median"]
    name, runs, med, lo, hi, warm = rows[0]
    assert (name, runs) == ("torch", "2")
    assert "44.1 kHz stereo" in out
    assert float(lo) <= float(med) <= float(hi) and float(warm) > 0
    _, srows = _rows(out, "backend  audio_s")
    assert srows[0][1] == "3.0"  # 0.05 min, measured from the stems written at 44.1 kHz
    saved = json.loads(out_json.read_text())
    # the figures name the machine they were measured on (CPU model, usable logical CPUs)
    assert saved["machine"]["cpu"] and saved["machine"]["cpu"] in out
    assert 1 <= saved["machine"]["logical_cpus"] <= (os.cpu_count() or 1)
    fig = saved["backends"]["torch"]
    assert len(fig["first_file_x"]) == 2 and len(fig["second_file_x"]) == 2
    assert abs(fig["first_file_x_median"] - float(np.median(fig["first_file_x"]))) < 1e-9
    # the speed table shows the fresh-process run whose first-file time is the (lower) median
    _, srows = _rows(out, "backend  audio_s")
    assert abs(float(srows[0][4]) - fig["x_realtime"]) < 0.01 * fig["x_realtime"] + 0.01
    assert fig["x_realtime"] in fig["first_file_x"]
    with pytest.raises(ConfigError):
        run_bench(argparse.Namespace(**{**vars(args), "repeat": 0, "json": None}))
