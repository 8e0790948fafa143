"""Fast CPU tests of the corpus builder: labelling, reserved sources, dedup, splits, manifest rows."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

from plugin_bridge.corpus import build, common, dedup, sources  # noqa: E402
from plugin_bridge.errors import PluginBridgeError  # noqa: E402

SR = common.SR


def _noise_burst(seed: int, seconds: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    env = np.exp(-((t % 0.5) * 6.0))
    tone = np.sin(2 * np.pi * (200 + 300 * seed) * t) * 0.3
    return ((rng.normal(0, 0.2, t.size) * env + tone * env) * 0.5).astype(np.float32)


def _write(p: Path, x: np.ndarray) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(p), x, SR)
    return p


@pytest.fixture
def rules(tmp_path):
    tsv = tmp_path / "rules.tsv"
    tsv.write_text(
        "package\tregex\tlabel\n"
        "# comment\n"
        "fakegame-data\t/music/\tSKIP\n"
        "fakegame-data\tsounds/birds?/\tbirds\n"
        "fakegame-data\tsounds/steps/\tfootsteps\n"
        "fakegame-data\tvoice/(?P<gender>male|female)_\tspeech\n"
        "tuxpaint-stamps-default\t_desc_(?P<language>ro|es|ca)\\.ogg$\tspeech\n"
        "tuxpaint-stamps-default\tanimals/\tbirds\n"
        "redeclipse-data\tsounds/\twind\n", encoding="utf-8")
    return sources.load_rules(tsv)


def test_labeller_paths_to_labels(tmp_path, rules):
    root = tmp_path / "fakegame-data"
    x = _noise_burst(1, 0.5)
    _write(root / "usr/share/games/fake/sounds/birds/robin_01.wav", x)
    _write(root / "usr/share/games/fake/sounds/steps/grass_02.wav", x)
    _write(root / "usr/share/games/fake/sounds/music/birds/theme.wav", x)   # SKIP wins (first match)
    _write(root / "usr/share/games/fake/sounds/other/unknown.wav", x)       # unmatched -> left out
    _write(root / "usr/share/games/fake/voice/female_hello.wav", x)
    (root / "usr/share/games/fake/notes.txt").write_text("not audio")
    got = sources.label_tree(rules, "fakegame-data", root)
    by = {Path(g.source_path).name: g for g in got}
    assert set(by) == {"robin_01.wav", "grass_02.wav", "female_hello.wav"}
    assert by["robin_01.wav"].label == "birds"
    assert by["grass_02.wav"].label == "footsteps"
    assert by["female_hello.wav"].label == "speech" and by["female_hello.wav"].gender == "female"


def test_reserved_sources_refused(tmp_path, rules):
    # a whole reserved package
    root = tmp_path / "redeclipse-data"
    _write(root / "sounds/ambience/wind1.wav", _noise_burst(2, 0.5))
    with pytest.raises(PluginBridgeError):
        sources.label_tree(rules, "redeclipse-data", root)
    # tuxpaint: allowed-language speech passes, reserved language and non-speech are refused
    tux = tmp_path / "tuxpaint-stamps-default"
    _write(tux / "stamps/animals/lion_desc_es.ogg", _noise_burst(3, 0.5))
    ok = sources.label_tree(rules, "tuxpaint-stamps-default", tux)
    assert [(o.label, o.language) for o in ok] == [("speech", "es")]
    _write(tux / "stamps/animals/lion_desc_ca.ogg", _noise_burst(3, 0.5))
    with pytest.raises(sources.ReservedSourceError):
        sources.label_tree(rules, "tuxpaint-stamps-default", tux)
    assert sources.is_reserved("tuxpaint-stamps-default", "stamps/animals/lion.ogg", "birds")
    assert sources.is_reserved("asterisk-core-sounds-en-wav")
    assert sources.is_reserved("lmms-common", "usr/share/lmms/samples/instruments/violin01.ogg")
    assert not sources.is_reserved("0ad-data", "zip:audio/ambient/weather/rain_11.ogg", "rain")


def test_repo_label_rules_never_train_on_reserved():
    rules = sources.load_rules()
    assert rules, "models/training/label_rules.tsv is empty"
    for r in rules:
        assert r.package not in sources.RESERVED_PACKAGES
        if r.package == sources.TUXPAINT:
            assert r.label in ("speech", "SKIP")
            for lang in ("ca", "da", "nl", "lt", "en", "pt_BR"):
                assert not r.regex.search(f"stamps/x/y_desc_{lang}.ogg"), lang


def test_licences():
    assert sources.licence_allowed("CC-BY-SA-3.0")
    assert sources.licence_allowed("GPL-2+")
    assert sources.licence_allowed("CC0-1.0")
    assert not sources.licence_allowed("CC-BY-NC-4.0")
    assert not sources.licence_allowed("unknown")
    assert not sources.licence_allowed("GFDL-1.3")


def test_copyright_parsing(tmp_path):
    cp = tmp_path / "copyright"
    cp.write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: 2010 Team\nLicense: GPL-2+\n\n"
        "Files: *.ogg\nCopyright: 2011 Sounder\nLicense: CC-BY-SA-3.0\n\n"
        "Files:\n base/sound/doors/*\n other/file.ogg\nCopyright: Door Person\nLicense: CC-BY-3.0\n", encoding="utf-8")
    info = sources.parse_copyright(cp)
    assert info.licence_for("usr/share/x/readme.txt")[0] == "GPL-2+"
    assert info.licence_for("usr/share/x/sound/ambience/a.ogg")[0] == "CC-BY-SA-3.0"
    lic, who = info.licence_for("sound/doors/door1.ogg")
    assert lic == "CC-BY-3.0" and "Door Person" in who
    # a stanza naming one upstream file is found under its installed directory (sonic-pi: etc/samples/x.flac
    # is installed as usr/share/sonic-pi/samples/x.flac); other files of that directory keep the default
    cp.write_text("Files: *\nCopyright: Team\nLicense: MIT\n\nFiles: etc/samples/vinyl_hiss.flac\n"
                  "Copyright: 2011 veezay\nLicense: CC0\n", encoding="utf-8")
    info = sources.parse_copyright(cp)
    assert info.licence_for("usr/share/sonic-pi/samples/vinyl_hiss.flac")[0] == "CC0"
    assert info.licence_for("usr/share/sonic-pi/samples/perc_door.flac")[0] == "MIT"


def test_dedup_finds_duplicate_and_near_duplicate_not_different():
    a = _noise_burst(1)
    exact = a.copy()
    near = a * 0.5 + np.random.default_rng(9).normal(0, 1e-3, a.size).astype(np.float32)   # -6 dB + tiny noise
    other = _noise_burst(2)
    fps = [dedup.fingerprint(v) for v in (a, exact, near, other)]
    assert dedup.correlation(fps[0], fps[1]) > 0.999
    assert dedup.correlation(fps[0], fps[2]) >= dedup.DUP_THRESHOLD
    assert dedup.correlation(fps[0], fps[3]) < dedup.REVIEW_THRESHOLD
    keep, reasons, _ = dedup.find_duplicates([fps[0], fps[1], fps[3]], [fps[2]])
    # the first clip matches the reserved near-duplicate -> dropped; its exact copy too; the different one stays
    assert keep == [False, False, True]
    assert reasons[0][0] == "reserved"
    keep2, reasons2, _ = dedup.find_duplicates([fps[0], fps[1], fps[3]], [])
    assert keep2 == [True, False, True] and reasons2[1][:2] == ("train", 0)


def test_split_by_group_deterministic():
    groups = {"rain": {f"pkg:rain_{i:02d}.ogg": 10.0 for i in range(40)},
              "thin": {"a": 1.0, "b": 1.0}}
    s1 = common.assign_splits(groups)
    s2 = common.assign_splits({k: dict(reversed(list(v.items()))) for k, v in groups.items()})
    assert s1 == s2
    dev = [g for (lab, g), s in s1.items() if lab == "rain" and s == "dev"]
    assert len(dev) >= common.MIN_DEV_CLIPS
    assert len(dev) <= 0.25 * 40
    assert all(s1[("thin", g)] == "train" for g in ("a", "b"))
    # same group -> same split everywhere
    assert common.split_of("tts:espeak-ng:de+m3:de") == common.split_of("tts:espeak-ng:de+m3:de")


def test_finalise_splits_keeps_groups_together():
    rows = []
    for g in range(30):
        for k in range(3):
            rows.append({"family": "instruments", "label": "piano", "group": f"FluidR3:prog0:m{g}",
                         "duration": 5.0, "split": "train"})
    build.finalise_splits(rows)
    by_group = {}
    for r in rows:
        by_group.setdefault(r["group"], set()).add(r["split"])
    assert all(len(v) == 1 for v in by_group.values())
    assert sum(1 for r in rows if r["split"] == "dev") >= common.MIN_DEV_CLIPS


def test_clip_processing_and_manifest_fields(tmp_path):
    x = np.concatenate([np.zeros(SR // 2, np.float32), _noise_burst(4, 23.0), np.zeros(SR, np.float32)])
    x = common.trim_silence(x)
    pieces = common.cut_pieces(x)
    assert len(pieces) == 3 and all(common.usable(p) for p in pieces)
    quiet = common.cut_pieces(np.full(3 * SR, 1e-4, np.float32))
    assert quiet == []
    meta = common.ClipMeta("environmental", "rain", "pkg:rain.ogg", "pkg", "1.0", "usr/share/rain.ogg",
                           "CC-BY-SA-3.0", split="dev")
    rel, sha, dur = common.write_clip(tmp_path, "environmental", "rain", "c1", pieces[0] * 3.0)
    row = common.manifest_row("c1", rel, sha, dur, meta)
    common.check_row(row)
    for k in common.MANIFEST_FIELDS:
        assert k in row
    y, sr = sf.read(str(tmp_path / rel))
    info = sf.info(str(tmp_path / rel))
    assert sr == SR and y.ndim == 1 and info.subtype == "PCM_16" and info.format == "FLAC"
    assert np.abs(y).max() <= 0.991 and 1.0 <= dur <= 10.0
    # manifest written from parts
    pw = common.PartWriter(tmp_path / "parts" / "real-pkg.jsonl")
    pw.add("file:pkg:rain.ogg", [row])
    pw.close()
    rows = build.write_manifest(tmp_path, labels_json=False)
    assert (tmp_path / "labels.json").exists()
    assert len(rows) == 0 or rows[0]["id"] == "c1"   # a 1-file label is dropped as too thin
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "rain" in summary["dropped_labels"]
    assert (tmp_path / "manifest.jsonl").exists()


def test_cli_registers_corpus_build():
    import argparse
    from plugin_bridge.corpus import cli
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command")
    cli.register(sub)
    args = ap.parse_args(["corpus", "build", "--out", "/tmp/x", "--families", "instruments",
                          "--max-minutes-per-label", "2", "--jobs", "1"])
    assert callable(args.func) and args.out == Path("/tmp/x") and args.jobs == 1
    bad = ap.parse_args(["corpus", "build", "--out", "/tmp/x", "--families", "nonsense"])
    with pytest.raises(PluginBridgeError):
        bad.func(bad)


def test_note_material_in_range_and_render(tmp_path):
    from plugin_bridge.corpus import render
    for lab, spec in render.INSTRUMENT_LABELS.items():
        for k, style in enumerate(spec.styles):
            rng = np.random.default_rng(k)
            prog = spec.programs[k % len(spec.programs)]
            lo, hi = (0, 127) if lab == "drums" else render.PROGRAMS[prog][1:]
            notes = render.make_material(style, rng, lo, hi, 5.0)
            assert notes, (lab, style)
            assert all(lo <= p <= hi and 1 <= v <= 127 and b > a for a, b, p, v in notes), (lab, style)
    if not Path(render.FLUIDR3).exists():
        pytest.skip("FluidR3_GM not installed")
    pytest.importorskip("fluidsynth")
    r = render.Renderer()
    rng = np.random.default_rng(0)
    y = r.render(render.make_material("melody", rng, 60, 84, 2.0), 40, False, rng)
    assert y.ndim == 1 and len(y) > SR and common.dbfs(y) > -45


def test_tts_voices_exclude_reserved():
    from plugin_bridge.corpus import tts
    names = {v.name.split("+")[0] for v in tts.FLITE + tts.FESTIVAL + tts.espeak_voices()}
    assert not names & tts.RESERVED_VOICES
    assert len({v.group for v in tts.espeak_voices()}) == len(tts.espeak_voices())


def test_labels_json_vocabulary(tmp_path):
    from plugin_bridge.corpus import vocab
    rows = [{"label": lab, "family": fam} for lab, (fam, *_rest) in vocab.VOCAB.items()]
    data = vocab.write_labels_json(rows, tmp_path / "labels.json")
    assert json.loads((tmp_path / "labels.json").read_text()) == data
    assert set(data["labels"]) == set(vocab.VOCAB)
    for lab, e in data["labels"].items():
        assert e["family"] in common.FAMILIES and e["group"] and e["synonyms"]
        assert len(e["captions"]) >= 5, lab
    assert {"dog barking", "cat meowing", "typing", "baby crying", "singing voice"} <= set(data["unsupported"])
    # concepts a label covers are offered, not flagged; with the label gone they are flagged again
    assert not {"telephone ringing", "siren", "applause", "music (full mix)"} & set(data["unsupported"])
    data3 = vocab.write_labels_json([r for r in rows if r["label"] != "phone_ring"], tmp_path / "l3.json")
    assert "telephone ringing" in data3["unsupported"] and "phone ring" in data3["unsupported"]
    # umbrella queries: "effects" = the environmental family, "ambience" = listed members that are present
    effects = set(data["umbrellas"]["effects"]["members"])
    assert {"explosion", "footsteps", "siren", "birds"} <= effects and not {"hum", "hiss", "crackle"} & effects
    assert effects <= {lab for lab, e in data["labels"].items() if e["family"] == "environmental"}
    assert {"rain", "wind", "room_tone"} <= set(data["umbrellas"]["ambience"]["members"])
    assert set(data["umbrellas"]["ambience"]["members"]) <= set(data["labels"])
    for u in data["umbrellas"].values():
        assert len(u["synonyms"]) >= 5 and len(u["captions"]) >= 5
    for lab, e in data["labels"].items():
        assert len(set(e["synonyms"])) >= 5, lab
    assert {"dialogue", "voice"} <= set(data["labels"]["speech"]["synonyms"])
    assert {"score", "soundtrack"} <= set(data["labels"]["music"]["synonyms"])
    assert {"60 cycle hum", "buzz"} <= set(data["labels"]["hum"]["synonyms"])
    assert "vocals" not in data["labels"]["speech"]["synonyms"]
    # a label absent from the corpus is reported as unsupported, not offered
    data2 = vocab.write_labels_json([r for r in rows if r["label"] != "wolf"], tmp_path / "l2.json")
    assert "wolf" not in data2["labels"] and "wolf" in data2["unsupported"]


def test_shipped_vocabulary_matches_the_shipped_model_and_corpus_summary():
    """models/training/labels.json (the concepts the app offers and the trainer reads) lists every label of
    the corpus the shipped model was trained on, in all three families, and flags none of them."""
    from plugin_bridge.corpus import sources
    data = json.loads(sources.LABELS_JSON.read_text())
    summary = json.loads((sources.LABELS_JSON.parents[1] / "weights" / "corpus_summary.json").read_text())
    trained = {k.split("/", 1)[1] for k in summary["by_label"]}
    assert set(data["labels"]) == trained
    assert {e["family"] for e in data["labels"].values()} == set(summary["by_family"]) >= {"instruments", "speech", "environmental"}
    assert not {lab.replace("_", " ") for lab in data["labels"]} & set(data["unsupported"])


def test_music_arrangements_share_one_key_and_render_as_full_mix(tmp_path):
    """The "music" arrangements: melody, chords and bass use only the pitch classes of one scale (drums on
    channel 10 aside), every part in its program's range; rendered, the mix lands in the music family."""
    from plugin_bridge.corpus import render
    for seed in range(12):
        rng = np.random.default_rng(seed)
        parts, desc = render.arrangement_notes(rng, 6.0)
        m = re.match(r"arrangement (\w+) in (\d+) at", desc)
        scale, tonic = render.SCALES[m.group(1)], int(m.group(2))
        pcs = {(tonic + i) % 12 for i in scale}
        assert len(parts) >= 3 and sum(1 for _, drums, _, _ in parts if drums) <= 1
        for prog, drums, notes, gain in parts:
            assert notes, desc
            if drums:
                continue
            lo, hi = render.PROGRAMS[prog][1:]
            assert all(lo <= p <= hi for _, _, p, _ in notes), (prog, desc)
            assert {p % 12 for _, _, p, _ in notes} <= pcs, (prog, desc)
    assert build._family_of("music") == "music" and "music" in common.FAMILIES
    if not Path(render.FLUIDR3).exists():
        pytest.skip("FluidR3_GM not installed")
    pytest.importorskip("fluidsynth")
    render.render_arrangements(tmp_path, tmp_path / "parts", minutes=0.1, log=lambda *_: None)
    rows = [r for line in (tmp_path / "parts" / "music-arrangements.jsonl").read_text().splitlines()
            for r in json.loads(line)["rows"]]
    assert rows and all(r["family"] == "music" and r["label"] == "music" and r["group"].startswith("arrangement:")
                        for r in rows)
    x, sr = sf.read(str(tmp_path / rows[0]["path"]))
    assert sr == SR and common.dbfs(x) > -40 and abs(len(x) / SR - rows[0]["duration"]) < 0.01


def test_music_excerpts_come_from_the_middle_of_a_track(tmp_path):
    """Game-music tracks give 10 s excerpts at 30 % and 65 % of their length (not the intro or fade-out),
    sample-exact, decoded without the rest of the file."""
    n = 60 * SR
    x = (np.arange(n) / n).astype(np.float32) * 0.5          # a ramp: the value tells the position
    p = _write(tmp_path / "track.wav", x)
    ex = common.load_excerpts(p)
    assert [len(e) for e in ex] == [10 * SR, 10 * SR]
    assert abs(ex[0][0] - 0.5 * 0.3) < 1e-3 and abs(ex[1][0] - 0.5 * 0.65) < 1e-3
    short = _write(tmp_path / "short.wav", x[: 12 * SR])
    ex2 = common.load_excerpts(short)                          # a short track: windows clamp to its end
    assert all(len(e) == 10 * SR for e in ex2) and abs(ex2[1][-1] - x[12 * SR - 1]) < 1e-3


def test_build_without_fluidsynth_stops_up_front_with_the_package_to_install(tmp_path, monkeypatch):
    """The instrument/music renders come after the package stages; a missing FluidSynth must be said before them."""
    import sys

    from plugin_bridge.corpus import build as corpus_build
    from plugin_bridge.corpus import sources

    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # import fails as it does without libfluidsynth
    called = []
    monkeypatch.setattr(corpus_build, "build_real", lambda *a, **k: called.append(a))
    with pytest.raises(sources.CorpusError, match="libfluidsynth3"):
        corpus_build.build(out=tmp_path / "c", scratch=tmp_path / "s", families={"music", "speech"})
    assert called == []


def test_build_without_the_general_midi_soundfont_says_which_package_to_install(tmp_path, monkeypatch):
    pytest.importorskip("fluidsynth")
    from plugin_bridge.corpus import build as corpus_build
    from plugin_bridge.corpus import render, sources

    monkeypatch.setattr(render, "FLUIDR3", str(tmp_path / "missing" / "FluidR3_GM.sf2"))
    monkeypatch.setattr(corpus_build, "build_real", lambda *a, **k: pytest.fail("ran the package stages first"))
    with pytest.raises(sources.CorpusError, match="fluid-soundfont-gm"):
        corpus_build.build(out=tmp_path / "c", scratch=tmp_path / "s", families={"instruments"})


def test_build_without_a_tts_engine_stops_up_front_and_names_the_voices_to_install(tmp_path, monkeypatch):
    """Without espeak-ng/flite/festival a build used to skip a third of the speech family without a word."""
    import shutil

    from plugin_bridge.corpus import build as corpus_build
    from plugin_bridge.corpus import sources

    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "festival" else real(name, *a, **k))
    monkeypatch.setattr(corpus_build, "build_real", lambda *a, **k: pytest.fail("ran the package stages first"))
    with pytest.raises(sources.CorpusError, match=r"need festival;.*festvox-kallpc16k"):
        corpus_build.build(out=tmp_path / "c", scratch=tmp_path / "s", families={"speech"})


def _rows(spec):
    """[(label, split, id, package, version)] -> manifest-like rows for summarise()."""
    return [{"id": i, "family": "environmental", "label": lab, "split": sp, "group": i, "package": pkg,
             "version": ver, "licence": "GPL-2+", "duration": 3.0} for lab, sp, i, pkg, ver in spec]


def test_two_builds_compare_by_package_version_and_by_which_clips_a_split_holds():
    base = [("rain", "train", "r1", "pkgA", "1.0"), ("rain", "dev", "r2", "pkgA", "1.0"),
            ("wind", "train", "w1", "pkgB", "2.0"), ("wind", "dev", "w2", "pkgB", "2.0")]
    a = build.summarise(_rows(base))
    assert a["package_versions"] == {"pkgA": ["1.0"], "pkgB": ["2.0"]}
    assert build.compare_summaries(a, build.summarise(_rows(list(reversed(base))))) == []  # order-free
    # the same number of dev clips, but another clip: only the digest can tell, and it names the split
    swapped = base[:3] + [("wind", "dev", "w3", "pkgB", "2.0")]
    assert build.compare_summaries(a, build.summarise(_rows(swapped))) == [
        "environmental/wind/dev: same count (1), other clips"]
    # a newer package version that lost a clip: counts and versions are named
    newer = base[:2] + [("wind", "dev", "w2", "pkgB", "2.1")]
    diff = build.compare_summaries(a, build.summarise(_rows(newer)))
    assert "package pkgB: 2 vs 1 clips (version 2.0 vs 2.1)" in diff
    assert "environmental/wind/train: 1 vs 0 clips" in diff
    # a summary written before digests existed is compared by counts, and says so
    old = {k: v for k, v in a.items() if k not in ("clip_digests", "package_versions")}
    assert build.compare_summaries(old, build.summarise(_rows(swapped)))[-1].startswith("(clip digests missing in A")


def test_corpus_compare_command_exit_status(tmp_path, capsys):
    import argparse
    from plugin_bridge.corpus import cli
    ap = argparse.ArgumentParser()
    cli.register(ap.add_subparsers(dest="command"))
    one = build.summarise(_rows([("rain", "dev", "r1", "pkgA", "1.0")]))
    two = build.summarise(_rows([("rain", "dev", "r2", "pkgA", "1.0")]))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "summary.json").write_text(json.dumps(one))
    (tmp_path / "b.json").write_text(json.dumps(two))
    (tmp_path / "same.json").write_text(json.dumps(one))
    args = ap.parse_args(["corpus", "compare", str(tmp_path / "a"), str(tmp_path / "b.json")])
    assert args.func(args) == 1
    assert "environmental/rain/dev: same count (1), other clips" in capsys.readouterr().out
    args = ap.parse_args(["corpus", "compare", str(tmp_path / "a"), str(tmp_path / "same.json")])
    assert args.func(args) == 0
    assert "the same clips" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{not json")
    args = ap.parse_args(["corpus", "compare", str(tmp_path / "a"), str(tmp_path / "bad.json")])
    with pytest.raises(PluginBridgeError, match="bad.json: not a readable corpus summary"):
        args.func(args)
