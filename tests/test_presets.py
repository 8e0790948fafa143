"""Query presets (factory + user, schema, migration, import/export) and the session/presets CLI."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pedalboard.io import AudioFile

from plugin_bridge.errors import ConfigError
from plugin_bridge.paths import user_presets_dir
from plugin_bridge.session.history import History
from plugin_bridge.session.model import Region, Session, Track
from plugin_bridge.session.presets import Preset, PresetError, PresetStore, load_preset_file


def valid_preset() -> dict:
    return {
        "schema_version": 1, "name": "My set", "description": "d",
        "queries": [{"label": "Voice", "text": "a man speaking", "negative": "music", "colour": "#112233",
                     "token": "VO", "chain": [{"type": "highpass", "params": {"cutoff_frequency_hz": 80}},
                                              {"type": "vst3", "path": "/p/x.vst3"}]},
                    {"label": "Birds", "text": "birds"}],
        "residual": {"mode": "discard", "label": "Rest", "token": "R"},
        "inference": {"chunk_seconds": 5, "overlap": 0.5, "backend": "onnx", "device": "cpu", "context_seconds": 2},
        "output": {"format": "flac", "bit_depth": 16, "name_template": "{track}_{label}"},
    }


def test_factory_presets_are_complete():
    store = PresetStore()
    entries = [e for e in store.list() if e.source == "factory"]
    assert all(e.ok for e in entries), [e.error for e in entries]
    names = {e.name for e in entries}
    assert {"Dialogue clean-up", "Location noise", "Podcast", "Music stems", "Nature"} <= names
    dme = store.get("dialogue clean-up")
    assert [q.label for q in dme.queries] == ["Dialogue", "Music", "Effects", "Room tone"]
    assert [q.token for q in dme.queries] == ["DX", "MX", "FX", "AMB"]
    assert dme.format == "wav24" and dme.residual_mode == "keep"
    assert len(store.get("Music stems").queries) == 5
    # the folder is packaged as plugin_bridge.presets
    from plugin_bridge.presets import factory_dir
    assert len([n for n in os.listdir(factory_dir()) if n.endswith(".json")]) >= 5


def test_preset_fields_map_to_job_settings_and_queries():
    p = Preset.from_dict(valid_preset())
    assert p.format == "flac16"
    js = p.job_settings()
    assert js == {"chunk_seconds": 5, "overlap": 0.5, "backend": "onnx", "device": "cpu", "context_seconds": 2,
                  "format": "flac16", "name_template": "{track}_{label}", "residual": "discard",
                  "residual_label": "Rest"}
    qs = p.to_queries()
    assert [(q.text, q.negative, q.label, q.token, q.preset) for q in qs] == [
        ("a man speaking", "music", "Voice", "VO", "My set"), ("birds", None, "Birds", "", "My set")]
    assert qs[0].chain[1] == {"type": "vst3", "path": "/p/x.vst3"}
    assert Preset.from_dict(p.to_dict()) == p


def test_v0_preset_is_migrated(tmp_path):
    v0 = {"name": "Old", "queries": ["birds", {"name": "Voice", "query": "speech", "negative": "music",
                                                "color": "#aabbcc"}],
          "chunk": 8, "overlap": 0.1, "format": "wav32f", "residual": False, "template": "{track}-{label}"}
    f = tmp_path / "old.json"
    f.write_text(json.dumps(v0))
    before = f.read_bytes()
    p = load_preset_file(str(f))
    assert [(q.label, q.text, q.negative, q.colour) for q in p.queries] == [
        ("birds", "birds", None, None), ("Voice", "speech", "music", "#aabbcc")]
    assert p.inference == {"chunk_seconds": 8, "overlap": 0.1}
    assert (p.output["format"], p.output["bit_depth"], p.format) == ("wav", 32, "wav32f")
    assert p.residual_mode == "discard" and p.output["name_template"] == "{track}-{label}"
    assert f.read_bytes() == before
    with pytest.raises(PresetError) as ei:
        Preset.from_dict({"name": "x", "queries": ["a"], "format": "mp3"})
    assert ei.value.field == "format"


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d.pop("name"), "name"),
    (lambda d: d.update(name="  "), "name"),
    (lambda d: d.update(queries=[]), "queries"),
    (lambda d: d["queries"][1].update(text=""), "queries[1].text"),
    (lambda d: d["queries"][1].pop("label"), "queries[1].label"),
    (lambda d: d["queries"][1].update(label="voice"), "queries[1].label"),
    (lambda d: d["queries"][0].update(colour="blue"), "queries[0].colour"),
    (lambda d: d["queries"][0].update(token="a b"), "queries[0].token"),
    (lambda d: d["queries"][0]["chain"][1].pop("path"), "queries[0].chain[1].path"),
    (lambda d: d["queries"][0]["chain"][0].update(type=3), "queries[0].chain[0].type"),
    (lambda d: d["queries"][0]["chain"][0]["params"].update(q_factor="x"), "queries[0].chain[0].params.q_factor"),
    (lambda d: d["residual"].update(mode="maybe"), "residual.mode"),
    (lambda d: d["inference"].update(overlap=0.9), "inference.overlap"),
    (lambda d: d["inference"].update(device="tpu"), "inference.device"),
    (lambda d: d["output"].update(bit_depth=32), "output.bit_depth"),       # FLAC has no 32-bit
    (lambda d: d["output"].update(name_template="{nope}"), "output.name_template"),
    (lambda d: d["output"].update(name_template="a/{label}"), "output.name_template"),
    (lambda d: d.update(colour="x"), "colour"),
    (lambda d: d.update(schema_version=7), "schema_version"),
    (lambda d: d.update(schema_version="1"), "schema_version"),
])
def test_invalid_preset_names_the_field(tmp_path, mutate, field):
    d = valid_preset()
    mutate(d)
    f = tmp_path / "p.json"
    f.write_text(json.dumps(d))
    before = f.read_bytes()
    with pytest.raises(PresetError) as ei:
        load_preset_file(str(f))
    assert ei.value.field == field, str(ei.value)
    assert f"'{field}'" in str(ei.value) and isinstance(ei.value, ConfigError)
    assert f.read_bytes() == before


def test_user_presets_import_export_and_bad_files(tmp_path):
    store = PresetStore()
    assert store.user_dir == os.path.join(os.environ["PLUGIN_BRIDGE_DATA"], "presets")
    src = tmp_path / "mine.json"
    src.write_text(json.dumps(valid_preset()))
    p = store.import_file(str(src))
    assert p.source == "user" and os.path.dirname(p.path) == user_presets_dir()
    assert store.get("my set") == Preset.from_dict(valid_preset())
    with pytest.raises(PresetError) as ei:
        store.import_file(str(src))                      # no silent overwrite
    assert "already exists" in str(ei.value)
    good_bytes = open(p.path, "rb").read()
    # a broken user preset is listed with its error; the others are untouched
    with open(os.path.join(store.user_dir, "broken.json"), "w") as f:
        f.write('{"schema_version": 1, "name": "Broken", "queries": [{"label": "x"}]}')
    with open(os.path.join(store.user_dir, "garbage.json"), "wb") as f:
        f.write(b"\x00\xff not json")
    entries = store.list()
    bad = {e.name: e for e in entries if not e.ok}
    assert set(bad) == {"broken", "garbage"}
    assert "queries[0].text" in bad["broken"].error
    assert len([e for e in entries if e.ok]) == 6
    assert open(p.path, "rb").read() == good_bytes
    with pytest.raises(PresetError):
        store.get("broken")
    # export -> edit -> import as another preset round-trips
    out = tmp_path / "exported.json"
    store.export("Nature", str(out))
    d = json.loads(out.read_text())
    assert Preset.from_dict(d) == store.get("Nature")
    d["name"] = "Nature (mine)"
    out.write_text(json.dumps(d))
    store.import_file(str(out))
    assert [q.label for q in store.get("Nature (mine)").queries] == ["Birds", "Insects", "Wind", "Water"]
    # factory presets cannot be shadowed or deleted
    d["name"] = "nature"
    out.write_text(json.dumps(d))
    with pytest.raises(PresetError):
        store.import_file(str(out))
    with pytest.raises(PresetError):
        store.delete("Nature")
    store.delete("Nature (mine)")
    assert "Nature (mine)" not in store.names()


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10 ** 6, 10 ** 6) | st.floats() | st.text(max_size=6),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                     max_leaves=5)


from fuzz_helpers import json_paths as _paths  # noqa: E402


@settings(max_examples=int(os.environ.get("PB_FUZZ_EXAMPLES", 300)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_presets_fail_cleanly(tmp_path, data):
    d = valid_preset()
    if data.draw(st.booleans()):
        d = {"name": "Old", "queries": ["a", {"name": "b", "query": "c"}], "chunk": 3, "format": "wav24"}  # v0
    paths = [p for p in _paths(d) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        try:
            parent = d
            for k in path[:-1]:
                parent = parent[k]
            if data.draw(st.booleans()):
                del parent[path[-1]]
            else:
                parent[path[-1]] = data.draw(_JSON)
        except (KeyError, IndexError, TypeError):
            continue
    f = tmp_path / "fuzz.json"
    f.write_text(json.dumps(d))
    before = f.read_bytes()
    try:
        p = load_preset_file(str(f))
    except PresetError as exc:
        assert exc.field, str(exc)
        assert exc.field in str(exc) or exc.field == "(top level)", str(exc)
    else:
        assert Preset.from_dict(p.to_dict()) == p
    assert f.read_bytes() == before


def test_set_preset_on_a_region_is_undoable(tmp_path):
    s = Session()
    t = Track(name="a", path=str(tmp_path / "a.wav"))
    s.tracks.append(t)
    s.regions.append(Region(track_id=t.id, start=0, end=10))
    h = History(s)
    h.set_preset(s.regions[0].id, PresetStore().get("Podcast"))
    assert [q.label for q in s.regions[0].queries] == ["Speech", "Music bed", "Laughter"]
    assert s.regions[0].preset == "Podcast" and s.regions[0].queries[0].preset == "Podcast"
    h.undo()
    assert s.regions[0].queries == [] and s.regions[0].preset is None


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def test_cli_presets(tmp_path, capsys):
    from plugin_bridge.cli import main

    assert main(["presets", "list"]) == 0
    out = capsys.readouterr().out
    assert "Dialogue clean-up" in out and "Room tone" in out
    assert main(["presets", "show", "podcast"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "Podcast"
    f = tmp_path / "p.json"
    assert main(["presets", "export", "Podcast", str(f)]) == 0
    d = json.loads(f.read_text())
    d["name"] = "Pod 2"
    f.write_text(json.dumps(d))
    capsys.readouterr()
    assert main(["presets", "import", str(f)]) == 0
    assert "Pod 2" in capsys.readouterr().out
    d["queries"][0]["text"] = ""
    f.write_text(json.dumps(d))
    assert main(["presets", "import", str(f), "--overwrite"]) == 2
    assert "queries[0].text" in capsys.readouterr().err


def test_cli_session_new_add_region_run(tmp_path, capsys, monkeypatch):
    from plugin_bridge.cli import main
    from plugin_bridge.engine.separator import Separator
    from plugin_bridge.session import jobs
    from plugin_bridge.testing import ConstantMaskBackend, fast_model

    sep = Separator(fast_model(), backend=ConstantMaskBackend(0.0))
    monkeypatch.setattr(jobs, "default_separator_factory", lambda backend="torch", device="auto": sep)
    os.makedirs(tmp_path / "audio")
    x = (np.random.RandomState(0).randn(2, 32000) * 0.1).astype(np.float32)
    with AudioFile(str(tmp_path / "audio" / "dx.wav"), "w", 16000, 2, bit_depth=32) as f:
        f.write(x)
    sess = str(tmp_path / "reel.pbsession.json")
    assert main(["session", "new", str(tmp_path / "audio"), "-o", sess]) == 0
    assert main(["session", "add-region", sess, "--track", "dx", "--start", "1000", "--end", "0.5s",
                 "-q", "speech", "-n", "music", "-l", "Voice", "-q", "music"]) == 0
    assert main(["session", "add-region", sess, "--track", "dx", "--start", "0", "--end", "4000",
                 "--preset", "Nature"]) == 0
    assert main(["session", "add-region", sess, "--track", "nope", "--start", "0", "--end", "1", "-q", "x"]) == 2
    assert "no track named 'nope'" in capsys.readouterr().err
    assert main(["session", "run", sess, "--format", "wav32f", "--quiet"]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 3 + 5 and all(os.path.exists(p) for p in printed)
    assert os.path.basename(printed[0]) == "reel_dx_R1_Voice.wav"
    s = Session.load(sess)
    assert [j.status for j in s.jobs] == ["done", "done"]
    r = s.regions[0]
    assert (r.start, r.end) == (1000, 8000)
    voice = [t for t in s.tracks if t.name == "dx - Voice"][0]
    assert voice.offset == 1000 and voice.frames == 7000
    with AudioFile(printed[0]) as f:
        assert f.frames == 7000
    # nothing pending any more
    assert main(["session", "run", sess]) == 0
    assert "nothing to render" in capsys.readouterr().out


def test_cli_registers_the_export_command(monkeypatch):
    import argparse
    import types

    from plugin_bridge.session import cli

    called = []
    mod = types.ModuleType("plugin_bridge.session.export_cli")
    mod.register = lambda sub: (called.append(sub), sub.add_parser("export"))
    monkeypatch.setattr(cli, "export_cli", mod)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.register(sub)
    assert called == [sub] and {"session", "presets", "export"} <= set(sub.choices)
