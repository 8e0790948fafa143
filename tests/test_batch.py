"""Batch separation: manifests, one warm engine for many files, resume, bad input per item, CLI."""
import json
import os

import numpy as np
import pytest
from pedalboard.io import AudioFile

from plugin_bridge.engine.batch import (BatchJob, BatchOptions, expand_inputs, job_key, read_manifest, run_batch,
                                        write_summary)
from plugin_bridge.audio_io import read_all
from plugin_bridge.engine.separator import Query
from plugin_bridge.errors import ConfigError
from plugin_bridge.testing import fast_separator

Q2 = (("speech", None), ("music", "speech"))


def write(path, audio, rate):
    with AudioFile(str(path), "w", samplerate=rate, num_channels=audio.shape[0], bit_depth=32) as f:
        f.write(audio.astype(np.float32))
    return str(path)


def noise(channels, frames, seed=0):
    return (np.random.default_rng(seed).standard_normal((channels, frames)) * 0.2).astype(np.float32)


def listing(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


@pytest.fixture(scope="module")
def sep():
    return fast_separator()


# -- manifests --------------------------------------------------------------------------------------------

def test_csv_manifest_fields_defaults_and_malformed_rows(tmp_path):
    m = tmp_path / "jobs.csv"
    m.write_text("input,queries,negatives,region,output\n"
                 "a.wav,speech;music,;speech,1.5-4,a_cut\n"
                 "sub/b.flac\n"
                 ",speech\n"
                 "c.wav,speech,,x-3,\n"
                 "d.wav,speech,,4-2,\n"
                 "e.wav,speech,a;b,,\n"
                 "f.wav,speech,,,../escape\n"
                 "g.wav,speech,,,,extra\n"
                 "/abs/h.wav,speech,,-2.5,\n")
    jobs = read_manifest(str(m), [("dialogue", None)])
    assert [j.where for j in jobs] == [f"jobs.csv row {n}" for n in range(2, 11)]
    a, b = jobs[0], jobs[1]
    assert a.input == str(tmp_path / "a.wav") and a.queries == (("speech", None), ("music", "speech"))
    assert a.region == (1.5, 4.0) and a.output == "a_cut" and a.error is None
    assert b.input == str(tmp_path / "sub" / "b.flac") and b.queries == (("dialogue", None),) and b.region == (None, None)
    assert jobs[8].input == "/abs/h.wav" and jobs[8].region == (None, 2.5) and jobs[8].error is None
    errors = {j.where: j.error for j in jobs if j.error}
    assert set(errors) == {f"jobs.csv row {n}" for n in (4, 5, 6, 7, 8, 9)}
    assert "'input' is missing" in errors["jobs.csv row 4"]
    assert "not a number" in errors["jobs.csv row 5"]
    assert "not after its start" in errors["jobs.csv row 6"]
    assert "2 negatives for 1 queries" in errors["jobs.csv row 7"]
    assert "inside the output folder" in errors["jobs.csv row 8"]
    assert "6 cells for 5 columns" in errors["jobs.csv row 9"]
    assert all("\n" not in e for e in errors.values())


def test_jsonl_manifest_and_whole_file_errors(tmp_path):
    m = tmp_path / "jobs.jsonl"
    m.write_text('{"input": "a.wav", "queries": ["speech", "music"], "negatives": ["", "speech"], "region": [0, 2]}\n'
                 "\n"
                 '{"input": "b.wav", "queries": "birds"}\n'
                 '{"input": "c.wav", "queries": 3}\n'
                 "{not json\n"
                 '["a list"]\n'
                 '{"input": "d.wav", "queriez": "x"}\n')
    jobs = read_manifest(str(m))
    assert jobs[0].queries == (("speech", None), ("music", "speech")) and jobs[0].region == (0.0, 2.0)
    assert jobs[1].queries == (("birds", None),) and jobs[1].where == "jobs.jsonl line 3"
    errs = [(j.where, j.error) for j in jobs[2:]]
    assert errs[0][0] == "jobs.jsonl line 4" and "'queries' must be" in errs[0][1]
    assert errs[1][0] == "jobs.jsonl line 5" and "not valid JSON" in errs[1][1]
    assert errs[2][0] == "jobs.jsonl line 6" and "JSON object" in errs[2][1]
    assert errs[3][0] == "jobs.jsonl line 7" and "unknown field(s) queriez" in errs[3][1]
    # no queries anywhere
    (tmp_path / "noq.jsonl").write_text('{"input": "a.wav"}\n')
    assert "none given with -q" in read_manifest(str(tmp_path / "noq.jsonl"))[0].error
    for name, text, msg in [("missing.csv", None, "no such manifest"), ("empty.csv", "\n", "empty"),
                            ("nohead.csv", "a.wav,speech\n", "header"), ("cols.csv", "input,query\n", "unknown column"),
                            ("jobs.txt.gz", "x", "unknown manifest type")]:
        p = tmp_path / name
        if text is not None:
            p.write_text(text)
        with pytest.raises(ConfigError, match=msg):
            read_manifest(str(p), [("x", None)])


def test_globs_expand_sorted_deduplicated_and_a_pattern_without_match_is_an_item(tmp_path):
    for n in ("b.wav", "a.wav", "c.flac", "take[1].wav", "take1.wav"):
        (tmp_path / n).write_bytes(b"")
    jobs = expand_inputs([str(tmp_path / "*.wav"), str(tmp_path / "a.wav"), str(tmp_path / "none*.wav")],
                         [("x", None)])
    assert [os.path.basename(j.input) for j in jobs] == ["a.wav", "b.wav", "take1.wav", "take[1].wav", "none*.wav"]
    assert jobs[4].error == "no file matches this pattern" and jobs[0].error is None
    literal = expand_inputs([str(tmp_path / "take[1].wav")], [("x", None)])  # an existing name is not a pattern
    assert [os.path.basename(j.input) for j in literal] == ["take[1].wav"]


# -- running ----------------------------------------------------------------------------------------------

def test_batch_equals_single_runs_and_bad_items_fail_alone(tmp_path, sep):
    good = [write(tmp_path / "g1.wav", noise(2, 48000 * 2 + 17, 1), 48000),
            write(tmp_path / "g2.wav", noise(1, 44100 + 5, 2), 44100)]
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 4)
    x = noise(1, 16000 * 2, 3)
    x[0, 20000] = np.nan
    write(tmp_path / "nan.wav", x, 16000)
    out = tmp_path / "out"
    out.mkdir()
    (out / "blocker").write_text("a file where the job's output folder should be")
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("input,queries,negatives,region,output\n"
                        "g1.wav\n"
                        "missing.wav\n"
                        "corrupt.wav\n"
                        "nan.wav\n"
                        "g1.wav,,,,blocker/g1\n"
                        "g2.wav,,,0.25-,g2_region\n"
                        "g2.wav,,,abc,\n")
    jobs = read_manifest(str(manifest), list(Q2))
    results = run_batch(sep, jobs, BatchOptions(str(out), fmt="wav32f"), quiet=True)
    assert [r.status for r in results] == ["done", "failed", "failed", "failed", "failed", "done", "failed"]
    msgs = [r.message for r in results if r.status == "failed"]
    assert msgs[0].startswith("jobs.csv row 3: ") and "no such file" in msgs[0]
    # the header check names what is wrong with the file before any decoder sees it
    assert msgs[1].startswith("jobs.csv row 4: ") and "corrupt.wav: WAV file has no data chunk" in msgs[1]
    assert msgs[2].startswith("jobs.csv row 5: ") and "NaN" in msgs[2] and "frame 20000" in msgs[2]
    assert msgs[3].startswith("jobs.csv row 6: ") and "blocker" in msgs[3]
    assert msgs[4].startswith("jobs.csv row 8: ") and "region" in msgs[4]
    assert all("\n" not in m for m in msgs)
    # nothing partial: only the two good jobs' stems and sidecars are there
    assert listing(out) == sorted(["blocker", "g1_speech.wav", "g1_music.wav", "g1_residual.wav", "g1.pb-job.json",
                                   "g2_region_speech.wav", "g2_region_music.wav", "g2_region_residual.wav",
                                   "g2_region.pb-job.json"])
    # the warm batch engine gives the same samples as a single separate_file call
    single = tmp_path / "single"
    sep.separate_file(good[0], [Query(t, n) for t, n in Q2], str(single), fmt="wav32f")
    for name in ("g1_speech.wav", "g1_music.wav", "g1_residual.wav"):
        a, ra = read_all(str(out / name))
        b, rb = read_all(str(single / name))
        assert ra == rb == 48000 and a.shape == b.shape == (2, 48000 * 2 + 17)
        assert np.array_equal(a, b)
    # the region job: sample-exact length, stems + residual == mix of that region
    mix, _ = read_all(good[1])
    parts = [read_all(str(out / f"g2_region_{s}.wav"))[0] for s in ("speech", "music", "residual")]
    assert all(p.shape == (1, 44100 + 5 - 11025) for p in parts)
    assert np.max(np.abs(sum(parts) - mix[:, 11025:])) < 1e-5


def test_rerun_skips_complete_outputs_and_redoes_damaged_ones(tmp_path, sep):
    src = [write(tmp_path / f"s{i}.wav", noise(1, 16000, i), 16000) for i in range(2)]
    out = tmp_path / "out"
    opts = BatchOptions(str(out))
    jobs = expand_inputs(src, [("speech", None)])
    assert [r.status for r in run_batch(sep, jobs, opts, quiet=True)] == ["done", "done"]
    stamp = {n: os.stat(out / n).st_mtime_ns for n in listing(out)}
    again = run_batch(sep, jobs, opts, quiet=True)
    assert [r.status for r in again] == ["skipped", "skipped"]
    assert {n: os.stat(out / n).st_mtime_ns for n in listing(out)} == stamp
    # an interrupted run: one stem truncated, a temporary a killed process left behind
    with open(out / "s0_speech.wav", "r+b") as f:
        f.truncate(100)
    leftover = out / f".pb-partial-{job_key(jobs[0], opts)}-abc.wav"
    leftover.write_bytes(b"partial")
    third = run_batch(sep, jobs, opts, quiet=True)
    assert [r.status for r in third] == ["done", "skipped"]
    assert not leftover.exists()
    a, _ = read_all(str(out / "s0_speech.wav"))
    assert a.shape == (1, 16000)


def test_other_settings_or_foreign_files_are_never_overwritten_without_the_flag(tmp_path, sep):
    src = write(tmp_path / "s.wav", noise(1, 16000), 16000)
    out = tmp_path / "out"
    jobs = expand_inputs([src], [("speech", None)])
    run_batch(sep, jobs, BatchOptions(str(out)), quiet=True)
    before = (out / "s_speech.wav").read_bytes()
    r = run_batch(sep, jobs, BatchOptions(str(out), overlap=0.3), quiet=True)[0]
    assert r.status == "failed" and "already exists (from another model, settings or input)" in r.message
    assert "--overwrite" in r.message and (out / "s_speech.wav").read_bytes() == before
    r = run_batch(sep, jobs, BatchOptions(str(out), overlap=0.3, overwrite=True), quiet=True)[0]
    assert r.status == "done"
    assert json.loads((out / "s.pb-job.json").read_text())["recipe"]["settings"]["overlap"] == 0.3
    # a file the batch did not make
    (tmp_path / "out2").mkdir()
    (tmp_path / "out2" / "s_residual.wav").write_bytes(b"user's own file")
    r = run_batch(sep, jobs, BatchOptions(str(tmp_path / "out2")), quiet=True)[0]
    assert r.status == "failed" and "not made by this batch" in r.message
    assert (tmp_path / "out2" / "s_residual.wav").read_bytes() == b"user's own file"
    assert listing(tmp_path / "out2") == ["s_residual.wav"]


def test_summary_files(tmp_path):
    from plugin_bridge.engine.batch import JobResult

    rs = [JobResult("a.wav", "jobs.csv row 2", "done", "", ["o/a_x.wav", "o/a_residual.wav"], 2.0, 0.5),
          JobResult("b.wav", "jobs.csv row 3", "failed", "jobs.csv row 3: b.wav: no such file")]
    write_summary(str(tmp_path / "s.json"), rs)
    d = json.loads((tmp_path / "s.json").read_text())
    assert [r["status"] for r in d] == ["done", "failed"] and d[0]["outputs"] == ["o/a_x.wav", "o/a_residual.wav"]
    write_summary(str(tmp_path / "s.csv"), rs)
    import csv

    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert rows[1]["message"] == "jobs.csv row 3: b.wav: no such file" and rows[0]["outputs"] == "o/a_x.wav;o/a_residual.wav"


# -- command line -------------------------------------------------------------------------------------------

def test_cli_separate_many_and_batch(tmp_path, capsys, monkeypatch):
    from plugin_bridge.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "takes").mkdir()
    write(tmp_path / "A.wav", noise(2, 16000, 0), 16000)
    for i in range(2):
        write(tmp_path / "takes" / f"t{i}.wav", noise(1, 8000, i + 1), 16000)
    (tmp_path / "takes" / "broken.wav").write_bytes(b"not audio at all")
    common = ["--model", "random-demo", "--backend", "torch", "--quiet", "-o", "stems"]
    rc = main(["separate", "A.wav", "takes/*.wav", "-q", "dialogue", "-q", "music", *common, "--summary", "s.json"])
    assert rc == 1  # broken.wav failed, the others are done
    summary = json.loads((tmp_path / "s.json").read_text())
    assert [(os.path.basename(r["input"]), r["status"]) for r in summary] == [
        ("A.wav", "done"), ("broken.wav", "failed"), ("t0.wav", "done"), ("t1.wav", "done")]
    out = capsys.readouterr().out
    assert "3 done, 0 skipped" in out and "1 failed" in out and "takes/broken.wav: not a WAV file" in out
    assert len([n for n in listing(tmp_path / "stems") if n.endswith(".wav")]) == 9
    os.unlink(tmp_path / "takes" / "broken.wav")
    assert main(["separate", "A.wav", "takes/*.wav", "-q", "dialogue", "-q", "music", *common]) == 0
    assert "0 done, 3 skipped" in capsys.readouterr().out
    (tmp_path / "jobs.jsonl").write_text('{"input": "A.wav", "queries": "birds", "region": "0.5-", "output": "A_b"}\n')
    assert main(["batch", "jobs.jsonl", *common]) == 0
    a, _ = read_all(str(tmp_path / "stems" / "A_b_birds.wav"))
    assert a.shape == (2, 8000)
