"""DAWproject and Reaper RPP export/import: schema-valid, sample-exact positions, lossless round trip,
and the independent ``rpp`` parser reads what we write."""
from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rpp
import xmlschema
from pedalboard.io import AudioFile

from plugin_bridge.errors import ConfigError, OutputError
from plugin_bridge.session import dawproject
from plugin_bridge.session import rpp as rpp_io
from plugin_bridge.session.model import QuerySpec, Region, Session, SessionError, Stem, Track

ROOT = Path(__file__).resolve().parents[1]
XSD_DIR = next((p for p in (ROOT.parent / "shared" / "dawproject", Path("/work/shared/dawproject"))
                if (p / "Project.xsd").is_file()), None)
RATE = 48000


def _wav(path: Path, rate: int, channels: int, frames: int, seed: int = 0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (np.random.default_rng(seed).uniform(-0.5, 0.5, (channels, frames))).astype(np.float32)
    with AudioFile(str(path), "w", samplerate=rate, num_channels=channels, bit_depth=16) as f:
        f.write(x)
    return str(path)


@pytest.fixture
def session(tmp_path) -> Session:
    """Source + 2 stems + residual at odd sample offsets, a 44.1 kHz mono track, regions/queries/stems."""
    media = tmp_path / "media"
    s = Session(name="Scene 12", sample_rate=RATE, settings={"format": "wav24"})
    src = Track(name="Dialog \"boom\" A", path=_wav(media / "dialog.wav", RATE, 2, 9001), offset=1234567,
                gain_db=-3.5, colour="#ff8800", sample_rate=RATE, channels=2, frames=9001)
    s.tracks.append(src)
    r = Region(track_id=src.id, start=1234567 + 1001, end=1234567 + 5002, name="r1",
               queries=[QuerySpec(text="birds chirping", label="Birds"), QuerySpec(text="dialogue")])
    s.regions.append(r)
    specs = [("Dialog - Birds", "stem", 0, 1), ("Dialog - dialogue", "stem", 1, 2), ("Dialog - Residual", "residual",
                                                                                   "residual", 3)]
    for name, kind, qi, seed in specs:
        t = Track(name=name, path=_wav(media / "stems" / f"{name.replace(' ', '_')}.wav", RATE, 2, 4001, seed),
                  kind=kind, parent_id=src.id, offset=r.start, mute=(kind == "residual"), colour="#00aa33",
                  sample_rate=RATE, channels=2, frames=4001)
        s.tracks.append(t)
        s.stems.append(Stem(region_id=r.id, query_index=qi, path=t.path, track_id=t.id, label=name.split(" - ")[1]))
    far = Track(name="Room tone", path=_wav(media / "tone.wav", RATE, 1, 3000, 4), offset=2 ** 31 + 17, solo=True)
    s.tracks.append(far)                                   # file info unknown: probed on export
    s.tracks.append(Track(name="Music 44k1", path=_wav(media / "music.wav", 44100, 1, 4411, 5), offset=7,
                          gain_db=2.25, sample_rate=44100, channels=1, frames=4411))
    s.save(str(tmp_path / "scene.pbsession.json"))
    return s


def test_seconds_round_trip_to_the_exact_sample():
    from plugin_bridge.session.interchange import seconds_str, to_frames

    rng = np.random.default_rng(0)
    for rate in (8000, 22050, 44100, 48000, 88200, 96000, 192000):
        frames = np.concatenate([rng.integers(0, 2 ** 48, 3000), rng.integers(0, 10 ** 7, 3000),
                                 [0, 1, 1234567, 2 ** 31 + 17, 2 ** 48 - 1]])
        for f in frames.tolist():
            assert to_frames(float(seconds_str(f, rate)), rate) == f


def _compare(a: Session, b: Session, paths_equal: bool = True):
    assert b.sample_rate == a.sample_rate and b.name == a.name and b.id == a.id
    assert [t.id for t in b.tracks] == [t.id for t in a.tracks]
    for x, y in zip(a.tracks, b.tracks):
        assert (y.name, y.kind, y.parent_id, y.offset, y.mute, y.solo, y.colour) == \
               (x.name, x.kind, x.parent_id, x.offset, x.mute, x.solo, x.colour)
        assert y.gain_db == pytest.approx(x.gain_db, abs=1e-9)
        if paths_equal:
            assert os.path.samefile(y.path, x.path)
    assert [(r.id, r.track_id, r.start, r.end, [q.text for q in r.queries]) for r in b.regions] == \
           [(r.id, r.track_id, r.start, r.end, [q.text for q in r.queries]) for r in a.regions]
    assert [(s.id, s.track_id, s.query_index, s.label) for s in b.stems] == \
           [(s.id, s.track_id, s.query_index, s.label) for s in a.stems]
    for s in b.stems:                                         # a stem's file is its track's file
        assert s.path == b.track(s.track_id).path


def _file_frames(path):
    with AudioFile(path) as f:
        return f.frames, f.samplerate


# -------------------------------------------------------------------------------------------------
# DAWproject
# -------------------------------------------------------------------------------------------------
needs_xsd = pytest.mark.skipif(XSD_DIR is None, reason="DAWproject XSDs not found in ../shared/dawproject")


@needs_xsd
@pytest.mark.parametrize("embed", [False, True])
def test_dawproject_valid_and_sample_exact(session, tmp_path, embed):
    out = dawproject.save(session, str(tmp_path / "export" / "scene.dawproject"), embed=embed)
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        project_xml = z.read("project.xml").decode("utf-8")
        xmlschema.XMLSchema(str(XSD_DIR / "Project.xsd")).validate(project_xml)
        xmlschema.XMLSchema(str(XSD_DIR / "MetaData.xsd")).validate(z.read("metadata.xml").decode("utf-8"))
        embedded = {n: z.read(n) for n in names if n.startswith("audio/")}
    assert len(embedded) == (6 if embed else 0)

    # read the XML independently: every clip at its track's exact sample
    root = ET.fromstring(project_xml)
    assert root.find("Arrangement/Lanes").get("timeUnit") == "seconds"
    names_by_id = {t.get("id"): t.get("name") for t in root.iter("Track")}
    clips = {}
    for lane in root.find("Arrangement/Lanes").findall("Lanes"):
        clip = lane.find("Clips/Clip")
        clips[names_by_id[lane.get("track")]] = clip
    assert len(clips) == len(session.tracks)
    for t in session.tracks:
        c = clips[t.name]
        assert round(float(c.get("time")) * RATE) == t.offset
        audio = c.find("Audio")
        frames, rate = _file_frames(t.path)
        assert int(audio.get("sampleRate")) == rate
        assert round(float(audio.get("duration")) * rate) == frames
        assert round(float(c.get("duration")) * RATE) == round(frames * RATE / rate)
        f = audio.find("File")
        if embed:
            assert f.get("external") == "false" and embedded[f.get("path")] == Path(t.path).read_bytes()
        else:
            assert f.get("external") == "true" and not os.path.isabs(f.get("path"))
            assert os.path.samefile(os.path.join(os.path.dirname(out), f.get("path")), t.path)
    assert clips["Dialog - Birds"].get("time") == repr((1234567 + 1001) / RATE)

    back = dawproject.load(out)
    _compare(session, back, paths_equal=not embed)
    assert [t.frames for t in back.tracks] == [_file_frames(t.path)[0] for t in session.tracks]
    if embed:   # extracted beside the project, byte-identical
        for a, b in zip(session.tracks, back.tracks):
            assert Path(b.path).read_bytes() == Path(a.path).read_bytes()
            assert Path(b.path).parent == tmp_path / "export" / "scene_audio"


@needs_xsd
def test_dawproject_embedded_is_portable(session, tmp_path):
    out = dawproject.save(session, str(tmp_path / "scene.dawproject"), embed=True)
    moved = tmp_path / "elsewhere" / "copy.dawproject"
    moved.parent.mkdir()
    shutil.copy(out, moved)
    shutil.rmtree(tmp_path / "media")                          # the originals are gone
    a = dawproject.load(str(moved))
    b = dawproject.load(str(moved))                            # second open reuses the extracted files
    assert [t.path for t in a.tracks] == [t.path for t in b.tracks]
    assert sorted(os.listdir(moved.parent / "copy_audio")) == sorted(os.path.basename(t.path) for t in a.tracks)
    assert [t.offset for t in a.tracks] == [t.offset for t in session.tracks]
    for t in a.tracks:
        assert _file_frames(t.path)[0] == t.frames


def test_dawproject_referenced_survives_moving_the_folder(session, tmp_path):
    dawproject.save(session, str(tmp_path / "scene.dawproject"))
    shutil.move(str(tmp_path), str(tmp_path.parent / (tmp_path.name + "_moved")))
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    back = dawproject.load(str(moved / "scene.dawproject"))
    assert all(os.path.isfile(t.path) and str(moved) in t.path for t in back.tracks)
    assert [t.offset for t in back.tracks] == [t.offset for t in session.tracks]


@needs_xsd
def test_dawproject_from_another_daw(tmp_path):
    """No sidecar, beats at 140 bpm, nested lanes, Warps, two clips on one track, playStart."""
    _wav(tmp_path / "a.wav", 44100, 2, 1000)
    _wav(tmp_path / "b.wav", 44100, 1, 500)
    xml = """<?xml version="1.0" encoding="UTF-8"?>
<Project version="1.0">
  <Application name="Other DAW" version="5.0"/>
  <Transport><Tempo unit="bpm" value="140.0"/></Transport>
  <Structure>
    <Track id="t1" name="Drums" contentType="audio"><Channel role="regular" audioChannels="2">
      <Mute value="true"/><Volume unit="linear" value="0.5"/></Channel></Track>
    <Track id="t2" name="Bass" contentType="audio"/>
  </Structure>
  <Arrangement>
    <Lanes>
      <Lanes track="t1"><Clips>
        <Clip time="8.0" duration="1.0"><Audio sampleRate="44100" channels="2" duration="0.022675736961451247">
          <File path="a.wav" external="true"/></Audio></Clip>
        <Clip time="2.0" duration="1.0" playStart="0.5" contentTimeUnit="seconds">
          <Warps contentTimeUnit="seconds"><Audio sampleRate="44100" channels="2" duration="0.022675736961451247">
            <File path="a.wav" external="true"/></Audio><Warp time="0" contentTime="0"/></Warps></Clip>
      </Clips></Lanes>
      <Lanes track="t2" timeUnit="seconds"><Clips>
        <Clip time="1.5"><Audio sampleRate="44100" channels="1" duration="0.011337868480725623">
          <File path="b.wav" external="true"/></Audio></Clip>
      </Clips></Lanes>
    </Lanes>
  </Arrangement>
</Project>"""
    xmlschema.XMLSchema(str(XSD_DIR / "Project.xsd")).validate(xml)
    p = tmp_path / "other.dawproject"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("project.xml", xml)
    s = dawproject.load(str(p))
    assert s.sample_rate == 44100 and s.name == "other"
    assert [(t.name, t.offset, t.mute, t.frames) for t in s.tracks] == [
        ("Drums", round((2.0 * 60 / 140 - 0.5) * 44100), True, 1000),   # earlier clip first; playStart honoured
        ("Drums (2)", round(8.0 * 60 / 140 * 44100), True, 1000),
        ("Bass", round(1.5 * 44100), False, 500)]
    assert s.tracks[0].gain_db == pytest.approx(-6.0206, abs=1e-4)
    assert all(t.kind == "source" and t.parent_id is None for t in s.tracks)


def test_dawproject_errors(session, tmp_path):
    bad = tmp_path / "bad.dawproject"
    bad.write_text("not a zip")
    with pytest.raises(SessionError, match="not a ZIP"):
        dawproject.load(str(bad))
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("other.xml", "<x/>")
    with pytest.raises(SessionError, match="no project.xml"):
        dawproject.load(str(bad))
    with zipfile.ZipFile(bad, "w") as z:    # zip-slip attempt
        z.writestr("project.xml", '<Project version="1.0"><Application name="x" version="1"/><Structure>'
                   '<Track id="t" name="T"/></Structure><Arrangement><Lanes timeUnit="seconds"><Lanes track="t">'
                   '<Clips><Clip time="0"><Audio sampleRate="48000" channels="1" duration="1">'
                   '<File path="../evil.wav" external="false"/></Audio></Clip></Clips></Lanes></Lanes>'
                   '</Arrangement></Project>')
        z.writestr("../evil.wav", b"RIFF")
    with pytest.raises(SessionError, match="unsafe embedded file name"):
        dawproject.load(str(bad))
    assert not (tmp_path.parent / "evil.wav").exists()
    # export with a missing audio file: clear error, nothing written
    session.tracks[4].frames = None
    os.unlink(session.tracks[4].path)
    out = tmp_path / "out" / "x.dawproject"
    with pytest.raises(OutputError, match="Room tone"):
        dawproject.save(session, str(out))
    assert not out.exists() and not (out.parent.exists() and os.listdir(out.parent))


# -------------------------------------------------------------------------------------------------
# Reaper RPP
# -------------------------------------------------------------------------------------------------
def test_rpp_parsed_by_rpp_package_sample_exact(session, tmp_path):
    out = rpp_io.save(session, str(tmp_path / "proj" / "scene.rpp"))
    root = rpp.loads(Path(out).read_text(encoding="utf-8"))
    assert root.tag == "REAPER_PROJECT"
    head = {c[0]: c[1:] for c in root.children if isinstance(c, list)}
    assert head["SAMPLERATE"][0] == str(RATE)
    tracks = root.findall("TRACK")
    assert len(tracks) == len(session.tracks)
    by_name = {}
    for tr in tracks:
        kv = {c[0]: c[1:] for c in tr.children if isinstance(c, list)}
        items = tr.findall("ITEM")
        assert len(items) == 1
        ikv = {c[0]: c[1:] for c in items[0].children if isinstance(c, list)}
        src = items[0].find("SOURCE")
        by_name[kv["NAME"][0]] = (kv, ikv, src)
    assert list(by_name) == [t.name for t in session.tracks]            # source, its stems, then the rest
    for t in session.tracks:
        kv, ikv, src = by_name[t.name]
        assert round(float(ikv["POSITION"][0]) * RATE) == t.offset
        frames, rate = _file_frames(t.path)
        assert round(float(ikv["LENGTH"][0]) * RATE) == round(frames * RATE / rate)
        assert float(ikv["SOFFS"][0]) == 0.0
        assert src.attrib == ["WAVE"]
        f = [c for c in src.children if c[0] == "FILE"][0][1]
        assert not os.path.isabs(f) and os.path.samefile(os.path.join(os.path.dirname(out), f), t.path)
        assert float(kv["VOLPAN"][0]) == pytest.approx(10 ** (t.gain_db / 20), rel=1e-12)
        assert kv["MUTESOLO"][0] == str(int(t.mute))
        assert kv["TRACKID"][0].strip("{}").replace("-", "").lower() == t.id
    # folders: the source opens a folder, the last stem closes it, the others are plain
    assert by_name["Dialog \"boom\" A"][0]["ISBUS"] == ["1", "1"]
    assert by_name["Dialog - Birds"][0]["ISBUS"] == ["0", "0"]
    assert by_name["Dialog - Residual"][0]["ISBUS"] == ["2", "-1"]
    assert by_name["Room tone"][0]["ISBUS"] == ["0", "0"]

    back = rpp_io.load(out)
    _compare(session, back)
    assert [t.frames for t in back.tracks] == [_file_frames(t.path)[0] for t in session.tracks]


def test_rpp_without_notes_keeps_timeline_and_folders(session, tmp_path):
    out = rpp_io.save(session, str(tmp_path / "plain.rpp"), sidecar=False, absolute_paths=True)
    text = Path(out).read_text()
    assert "<NOTES" not in text and str(tmp_path / "media" / "dialog.wav") in text
    back = rpp_io.load(out)
    assert [(t.name, t.offset, t.id) for t in back.tracks] == [(t.name, t.offset, t.id) for t in session.tracks]
    src = back.tracks[0]
    assert [t.parent_id for t in back.tracks] == [None, src.id, src.id, src.id, None, None]
    assert [t.kind for t in back.tracks] == ["source", "stem", "stem", "stem", "source", "source"]
    assert back.regions == [] and back.stems == []


def test_rpp_from_reaper(tmp_path):
    """A project as Reaper writes it: no plugin-bridge notes, SOFFS, a MIDI item, nested folders."""
    _wav(tmp_path / "Audio" / "vox.wav", 48000, 1, 2000)
    _wav(tmp_path / "Audio" / "gtr.flac.wav", 48000, 2, 2000)
    text = """<REAPER_PROJECT 0.1 "7.0/linux-x86_64" 1700000000
  RIPPLE 0
  SAMPLERATE 48000 0 0
  <TRACK {11111111-2222-3333-4444-555555555555}
    NAME Band
    VOLPAN 1 0 -1 -1 1
    MUTESOLO 0 0 0
    ISBUS 1 1
  >
  <TRACK {AAAAAAAA-2222-3333-4444-555555555555}
    NAME 'Lead "Vox"'
    VOLPAN 0.5 0 -1 -1 1
    MUTESOLO 1 0 0
    PEAKCOL 16777471
    ISBUS 0 0
    <ITEM
      POSITION 10.5
      SNAPOFFS 0
      LENGTH 1
      SOFFS 0.25
      NAME vox.wav
      <SOURCE WAVE
        FILE "Audio/vox.wav"
      >
    >
    <ITEM
      POSITION 1
      LENGTH 1
      <SOURCE MIDI
        HASDATA 1 960 QN
      >
    >
  >
  <TRACK {BBBBBBBB-2222-3333-4444-555555555555}
    NAME Gtr
    ISBUS 2 -1
    <ITEM
      POSITION 0.000020833333333333333
      LENGTH 1
      <SOURCE SECTION
        LENGTH 1
        <SOURCE WAVE
          FILE Audio/gtr.flac.wav
        >
      >
    >
  >
>
"""
    p = tmp_path / "song.rpp"
    p.write_text(text)
    s = rpp_io.load(str(p))
    assert s.sample_rate == 48000
    assert [(t.name, t.offset, t.mute) for t in s.tracks] == [('Lead "Vox"', round((10.5 - 0.25) * 48000), True),
                                                              ("Gtr", 1, False)]
    vox, gtr = s.tracks
    assert vox.id == "aaaaaaaa222233334444555555555555" and vox.colour == "#ff0000"
    assert vox.gain_db == pytest.approx(-6.0206, abs=1e-4)
    assert vox.parent_id is None and gtr.parent_id is None      # the folder track has no audio: not a track
    assert os.path.samefile(vox.path, tmp_path / "Audio" / "vox.wav")


def test_rpp_errors(tmp_path):
    p = tmp_path / "x.rpp"
    p.write_text("hello")
    with pytest.raises(SessionError, match="not a Reaper project"):
        rpp_io.load(str(p))
    p.write_text('<REAPER_PROJECT 0.1 "7.0" 0\n  SAMPLERATE 48000 0 0\n  <TRACK\n    <ITEM\n      POSITION 0.1\n'
                 '      SOFFS 1.0\n      <SOURCE WAVE\n        FILE a.wav\n      >\n    >\n  >\n>\n')
    with pytest.raises(SessionError, match="before the project start"):
        rpp_io.load(str(p))
    with pytest.raises(SessionError, match="no such file"):
        rpp_io.load(str(tmp_path / "missing.rpp"))


# -------------------------------------------------------------------------------------------------
# CLI
# -------------------------------------------------------------------------------------------------
def test_export_cli(session, tmp_path, capsys):
    from plugin_bridge.session import export_cli

    import argparse
    parser = argparse.ArgumentParser()
    export_cli.register(parser.add_subparsers(dest="command"))
    dp, rp = tmp_path / "o" / "s.dawproject", tmp_path / "o" / "s.rpp"
    args = parser.parse_args(["export", session.path, "--dawproject", str(dp), "--rpp", str(rp), "--embed"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "embedded" in out and str(dp) in out and str(rp) in out
    assert [t.offset for t in dawproject.load(str(dp)).tracks] == [t.offset for t in session.tracks]
    assert [t.offset for t in rpp_io.load(str(rp)).tracks] == [t.offset for t in session.tracks]
    # convert the RPP back to a DAWproject; refuse to overwrite without --force
    args = parser.parse_args(["export", str(rp), "--dawproject", str(dp)])
    before = dp.read_bytes()
    with pytest.raises(OutputError, match="already exists; use --force"):
        args.func(args)
    assert dp.read_bytes() == before
    args = parser.parse_args(["export", str(rp), "--dawproject", str(dp), "--force"])
    assert args.func(args) == 0
    assert [t.id for t in dawproject.load(str(dp)).tracks] == [t.id for t in session.tracks]
    with pytest.raises(ConfigError, match="nothing to export"):
        a = parser.parse_args(["export", session.path])
        a.func(a)
