"""The rooms of docs/ARCHITECTURE.md and the import directions between them, checked on the source.

Every ``import`` / ``from ... import`` of every module (module top and function bodies alike, parsed with
``ast``; nothing is imported) is mapped to the room of the importing and of the imported module; an edge
the rule table does not allow is a violation.  ``KNOWN`` lists the violations main still has, each with
the branch that removes it: an entry that no longer occurs fails too, so the list only shrinks.
"""
from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: folder -> import name (pyproject.toml [tool.setuptools.package-dir])
FOLDERS = {"plugin_bridge": "plugin_bridge", "gui": "plugin_bridge.gui", "models": "plugin_bridge.models",
           "presets": "plugin_bridge.presets"}

#: room -> the module-name prefixes that belong to it (the longest prefix wins; base: exact names)
ROOMS = {
    "base": ["plugin_bridge", "plugin_bridge.errors", "plugin_bridge.fileio", "plugin_bridge.paths",
             "plugin_bridge.audio_io", "plugin_bridge.audio_headers", "plugin_bridge.metrics",
             "plugin_bridge.tables", "plugin_bridge.interrupts", "plugin_bridge.checkpoints",
             "plugin_bridge.document", "plugin_bridge.learned"],
    "models": ["plugin_bridge.models"],
    "presets": ["plugin_bridge.presets"],
    "plugins": ["plugin_bridge.plugins"],
    "engine": ["plugin_bridge.engine"],
    "export": ["plugin_bridge.export"],
    "session": ["plugin_bridge.session"],
    "corpus": ["plugin_bridge.corpus"],
    "training": ["plugin_bridge.training"],
    "testing": ["plugin_bridge.testing"],
    "bench": ["plugin_bridge.bench"],
    "gui": ["plugin_bridge.gui"],
    "entry": ["plugin_bridge.cli", "plugin_bridge.__main__", "plugin_bridge.gui_cli"],
}

#: room -> the other rooms it may import (every room may import itself and ``base``)
ALLOWED = {
    "base": set(),
    "models": set(),
    "presets": set(),
    "plugins": set(),
    "engine": {"models"},
    "export": set(),
    "session": {"engine", "models", "plugins", "export", "presets"},
    "corpus": set(),
    "training": {"engine", "models", "corpus"},
    "testing": {"engine", "models"},
    "bench": {"engine", "models", "testing"},
    "gui": {"session", "models", "plugins"},
    "entry": set(ROOMS),
}

#: module -> the only modules that may still import it (compatibility names on their way out; none today)
COMPAT: dict[str, set[str]] = {}
#: compatibility name -> the module to import instead
COMPAT_TARGET: dict[str, str] = {}

#: (importer, imported) edges main still has, and who removes them (none today)
KNOWN: dict[tuple[str, str], str] = {}

def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    ns = FOLDERS[rel.parts[0]]
    parts = list(rel.with_suffix("").parts[1:])
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join([ns, *parts])


def discover() -> dict[str, Path]:
    mods = {}
    for folder in FOLDERS:
        for p in sorted((ROOT / folder).rglob("*.py")):
            if "__pycache__" not in p.parts:
                mods[module_name(p)] = p
    return mods


def room_of(mod: str) -> str | None:
    best, room = -1, None
    for r, prefixes in ROOMS.items():
        for pre in prefixes:
            # base modules are single modules: a new top-level module belongs to no room until it is placed
            if (mod == pre or (r != "base" and mod.startswith(pre + "."))) and len(pre) > best:
                best, room = len(pre), r
    return room


def imports_of(mod: str, source: str, is_package: bool) -> list[tuple[str, int, str | None]]:
    """(imported module, line, imported name or None) for every in-tree import of ``source``."""
    package = mod if is_package else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out += [(target, node.lineno, a.name) for a in node.names]
    return [t for t in out if t[0] == "plugin_bridge" or t[0].startswith("plugin_bridge.")]


def check(mods: dict[str, str], known_modules: set[str]) -> tuple[list[str], set[tuple[str, str]]]:
    """Violations of the rules in ``mods`` (module -> source) and the KNOWN edges that were seen."""
    bad, seen = [], set()
    for mod, (source, is_package) in sorted(mods.items()):
        src_room = room_of(mod)
        if src_room is None:
            bad.append(f"{mod}: in no room (add it to ROOMS)")
            continue
        for target, line, name in imports_of(mod, source, is_package):
            full = f"{target}.{name}" if name and f"{target}.{name}" in known_modules else target
            dst_room = room_of(full)
            where = f"{mod}:{line} imports {full}"
            if (mod, full) in KNOWN:
                seen.add((mod, full))
                continue
            if full in COMPAT and mod not in COMPAT[full]:
                bad.append(f"{where}: a compatibility name; import {COMPAT_TARGET.get(full, 'its new home')}")
            if dst_room is None:
                bad.append(f"{where}: target in no room")
            elif dst_room not in (src_room, "base") and dst_room not in ALLOWED[src_room]:
                bad.append(f"{where}: {src_room} may not import {dst_room}")
            if name and name.startswith("_") and not name.startswith("__") and dst_room != src_room:
                bad.append(f"{where}: private name {name} of another room")
    return bad, seen


def _tree() -> dict[str, tuple[str, bool]]:
    return {m: (p.read_text(encoding="utf-8"), p.name == "__init__.py") for m, p in discover().items()}


def test_every_import_points_the_way_the_rooms_allow():
    mods = _tree()
    bad, seen = check(mods, set(mods))
    assert not bad, "import rules of docs/ARCHITECTURE.md broken:\n" + "\n".join(bad)
    stale = set(KNOWN) - seen
    assert not stale, f"KNOWN lists edges that are gone; delete them: {sorted(stale)}"


@pytest.mark.parametrize("mod, source, expect", [
    ("plugin_bridge.models.fake", "from plugin_bridge.engine.separator import Separator\n", "models may not import engine"),
    ("plugin_bridge.engine.fake", "def f():\n    import plugin_bridge.gui.playback\n", "engine may not import gui"),
    ("plugin_bridge.export.fake", "from ..session import model\n", "export may not import session"),
    ("plugin_bridge.gui.fake", "from plugin_bridge.audio_io import _check_writable_audio\n", "private name"),
    ("plugin_bridge.newroom", "import os\n", "in no room"),
])
def test_the_checker_catches_a_violation_in_a_synthetic_module(mod, source, expect):
    mods = _tree()
    mods[mod] = (source, False)
    bad, _ = check(mods, set(mods))
    assert any(b.startswith(mod) and expect in b for b in bad), bad


def test_a_compatibility_name_is_refused_except_to_its_listed_importers(monkeypatch):
    mods = _tree()
    old = "plugin_bridge.engine.oldname"
    mods[old] = ("from plugin_bridge.audio_io import read_all\n", False)
    mods["plugin_bridge.session.fake"] = ("from plugin_bridge.engine.oldname import read_all\n", False)
    mods["plugin_bridge.session.allowed"] = ("from plugin_bridge.engine import oldname\n", False)
    monkeypatch.setitem(COMPAT, old, {"plugin_bridge.session.allowed"})
    monkeypatch.setitem(COMPAT_TARGET, old, "plugin_bridge.audio_io")
    bad, _ = check(mods, set(mods))
    assert [b for b in bad if b.startswith("plugin_bridge.session.fake")] == [
        "plugin_bridge.session.fake:1 imports plugin_bridge.engine.oldname: a compatibility name; "
        "import plugin_bridge.audio_io"]
    assert not [b for b in bad if b.startswith("plugin_bridge.session.allowed")]


def test_a_clean_synthetic_module_passes():
    mods = _tree()
    mods["plugin_bridge.training.fake"] = ("from plugin_bridge.engine.separator import Separator\n"
                                           "from plugin_bridge.corpus import common\nfrom . import mixer\n", False)
    bad, _ = check(mods, set(mods))
    assert not [b for b in bad if b.startswith("plugin_bridge.training.fake")]


def test_pyproject_lists_every_package_and_only_existing_folders():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    declared = set(cfg["packages"])
    assert cfg["package-dir"] == {ns: folder for folder, ns in FOLDERS.items()}
    code = {m for m, p in discover().items() if p.name == "__init__.py"}
    assert code <= declared, f"packages missing from pyproject.toml: {sorted(code - declared)}"
    for pkg in declared:
        parts = pkg.split(".")
        base = next(f for f, ns in sorted(FOLDERS.items(), key=lambda kv: -len(kv[1]))
                    if pkg == ns or pkg.startswith(ns + "."))
        path = ROOT.joinpath(base, *parts[len(FOLDERS[base].split(".")):])
        assert path.is_dir(), f"{pkg}: no folder {path}"


def test_gui_widgets_know_no_window():
    """Widgets outside gui/mainwindow/ get what they show through setters and report through signals: none
    keeps the window (``self.win``) or imports the window package (gui/app.py builds the window)."""
    bad = []
    for path in sorted((ROOT / "gui").glob("*.py")):
        if path.name == "app.py":
            continue
        text = path.read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), 1):
            if re.search(r"\bself\._?win\b|gui\.mainwindow|gui import mainwindow", line):
                bad.append(f"gui/{path.name}:{n}: {line.strip()}")
    assert not bad, bad
