"""Query presets: a named set of queries plus residual, inference and output settings.

* Factory presets: read-only JSON files in ``plugin_bridge/presets/factory/``.
* User presets: ``<user data>/presets/*.json`` (``$PLUGIN_BRIDGE_DATA`` overrides the platform folder).
  A user preset may not take the name of a factory preset ("duplicate to edit").
* Format: JSON with ``schema_version`` (current: 1), validated with a JSON schema (``jsonschema``);
  older versions are migrated on load (``MIGRATIONS``; v0 -> v1 is implemented).  Every error is a
  ``PresetError`` (a ``ConfigError``) naming the field, e.g. ``queries[1].text``.
* Listing never fails because of one bad user file: the entry carries the error instead.
* Writes are atomic; importing never changes an existing preset unless ``overwrite=True``.
"""
from __future__ import annotations

import copy
import os
import re
import string
from dataclasses import dataclass, field
from typing import Any, Callable

from plugin_bridge.document import DocumentFormat
from plugin_bridge.errors import ConfigError
from plugin_bridge.fileio import check_writable_output
from plugin_bridge.paths import user_presets_dir
from plugin_bridge.plugins import validate_chain
from plugin_bridge.session import shape
from plugin_bridge.session.model import QuerySpec, SessionError

__all__ = ["PRESET_SCHEMA_VERSION", "PRESET_SCHEMA", "PresetError", "PresetQuery", "Preset", "PresetEntry",
           "PresetStore", "NAME_TOKENS", "check_name_template", "engine_format", "MIGRATIONS", "PRESET_DOCUMENT",
           "factory_dir", "load_preset_file"]

PRESET_SCHEMA_VERSION = 1
NAME_TOKENS = ("session", "track", "region", "label", "query", "index", "token", "preset")
_FORMATS = {("wav", 16): "wav16", ("wav", 24): "wav24", ("wav", 32): "wav32f", ("flac", 16): "flac16",
            ("flac", 24): "flac24"}


class PresetError(SessionError):
    """A preset file or preset operation is invalid; ``field`` names the offending field."""


def factory_dir() -> str:
    from plugin_bridge.presets import factory_dir as fd

    return fd()


def check_name_template(template: Any, fld: str = "output.name_template") -> str:
    if not isinstance(template, str) or not template.strip():
        raise PresetError(f"field '{fld}' must be a non-empty file name template", fld)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise PresetError(f"field '{fld}' is not a valid template ({exc}); use tokens like {{track}}", fld) from None
    for _, name, spec, conv in parts:
        if name is None:
            continue
        if name not in NAME_TOKENS or spec or conv:
            raise PresetError(f"field '{fld}' uses unknown token {{{name}}}; allowed: "
                              + " ".join("{" + t + "}" for t in NAME_TOKENS), fld)
    if "/" in template or "\\" in template:
        raise PresetError(f"field '{fld}' must be a file name, not a path (no / or \\)", fld)
    return template


def engine_format(fmt: str, bit_depth: int) -> str:
    try:
        return _FORMATS[(fmt, bit_depth)]
    except KeyError:
        raise PresetError(f"field 'output.bit_depth' ({bit_depth}) is not available for {fmt}; "
                          f"WAV: 16, 24, 32 (float); FLAC: 16, 24", "output.bit_depth") from None


# --------------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------------
_CHAIN_ITEM = {
    "type": "object", "additionalProperties": False, "required": ["type"],
    "properties": {"type": {"type": "string", "minLength": 1}, "params": {"type": "object"},
                   "path": {"type": "string", "minLength": 1}, "name": {"type": "string"},
                   "enabled": {"type": "boolean"}, "state": {"type": "string"}},
    "if": {"properties": {"type": {"const": "vst3"}}}, "then": {"required": ["type", "path"]},
}

PRESET_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "plugin-bridge query preset",
    "type": "object", "additionalProperties": False,
    "required": ["schema_version", "name", "queries"],
    "properties": {
        "schema_version": {"type": "integer", "const": PRESET_SCHEMA_VERSION},
        "id": {"type": "string", "minLength": 1, "maxLength": 100},
        "name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"\S"},
        "description": {"type": "string", "maxLength": 2000},
        "category": {"type": "string", "maxLength": 100},
        "tags": {"type": "array", "items": {"type": "string"}},
        "factory": {"type": "boolean"},
        "queries": {"type": "array", "minItems": 1, "maxItems": 32, "items": {
            "type": "object", "additionalProperties": False, "required": ["label", "text"],
            "properties": {
                "label": {"type": "string", "minLength": 1, "maxLength": 100},
                "text": {"type": "string", "minLength": 1, "maxLength": 500, "pattern": r"\S"},
                "negative": {"type": ["string", "null"], "maxLength": 500},
                "colour": {"type": ["string", "null"], "pattern": "^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$"},
                "token": {"type": "string", "maxLength": 40, "pattern": "^[A-Za-z0-9_-]*$"},
                "chain": {"type": "array", "items": _CHAIN_ITEM},
            },
        }},
        "residual": {
            "type": "object", "additionalProperties": False,
            "properties": {"mode": {"enum": ["keep", "discard"]}, "label": {"type": "string", "maxLength": 100},
                           "token": {"type": "string", "maxLength": 40, "pattern": "^[A-Za-z0-9_-]*$"},
                           "chain": {"type": "array", "items": _CHAIN_ITEM}},
        },
        "inference": {
            "type": "object", "additionalProperties": False,
            "properties": {"chunk_seconds": {"type": "number", "minimum": 0.25, "maximum": 600},
                           "overlap": {"type": "number", "minimum": 0, "maximum": 0.75},
                           "backend": {"enum": ["auto", "torch", "onnx"]},
                           "device": {"enum": ["auto", "cpu", "cuda"]},
                           "context_seconds": {"type": "number", "minimum": 0, "maximum": 60}},
        },
        "output": {
            "type": "object", "additionalProperties": False,
            "properties": {"format": {"enum": ["wav", "flac"]}, "bit_depth": {"enum": [16, 24, 32]},
                           "name_template": {"type": "string", "minLength": 1, "maxLength": 200}},
        },
    },
}

def _get_validator():
    return shape.cached_validator(PRESET_SCHEMA)


# --------------------------------------------------------------------------------------------------
# migrations
# --------------------------------------------------------------------------------------------------
def _migrate_v0(d: dict) -> dict:
    """v0 (before schema_version existed): queries were strings or {"name", "query", "negative"};
    settings were flat: "chunk", "overlap", "format" (an engine format name like "wav24"),
    "residual" (bool), "template"."""
    out: dict = {"schema_version": 1}
    for k in ("id", "name", "description", "category", "tags"):
        if k in d:
            out[k] = d[k]
    qs = []
    raw = d.get("queries", [])
    if not isinstance(raw, list):
        raise PresetError(f"field 'queries' must be a list, not {type(raw).__name__}", "queries")
    for i, q in enumerate(raw):
        if isinstance(q, str):
            qs.append({"label": q, "text": q})
        elif isinstance(q, dict):
            text = q.get("query", q.get("text"))
            label = q.get("name", q.get("label", text))
            nq = {"label": label if isinstance(label, str) else "", "text": text}
            if "negative" in q:
                nq["negative"] = q["negative"]
            if "color" in q or "colour" in q:
                nq["colour"] = q.get("colour", q.get("color"))
            qs.append(nq)
        else:
            raise PresetError(f"field 'queries[{i}]' must be a query text or an object", f"queries[{i}]")
    out["queries"] = qs
    inf = {}
    if "chunk" in d:
        inf["chunk_seconds"] = d["chunk"]
    if "overlap" in d:
        inf["overlap"] = d["overlap"]
    if inf:
        out["inference"] = inf
    if "residual" in d:
        if not isinstance(d["residual"], bool):
            raise PresetError("field 'residual' must be true or false in a version 0 preset", "residual")
        out["residual"] = {"mode": "keep" if d["residual"] else "discard"}
    outp = {}
    if "format" in d:
        rev = {v: k for k, v in _FORMATS.items()}
        if not isinstance(d["format"], str) or d["format"] not in rev:
            raise PresetError(f"field 'format' {d['format']!r} is not one of {', '.join(rev)}", "format")
        outp["format"], outp["bit_depth"] = rev[d["format"]]
    if "template" in d:
        outp["name_template"] = d["template"]
    if outp:
        out["output"] = outp
    extra = set(d) - {"id", "name", "description", "category", "tags", "queries", "chunk", "overlap",
                      "residual", "format", "template", "schema_version"}
    if extra:
        raise PresetError(f"unknown field '{sorted(extra)[0]}' in a version 0 preset", sorted(extra)[0])
    return out


MIGRATIONS: dict[int, Callable[[dict], dict]] = {0: _migrate_v0}


PRESET_DOCUMENT = DocumentFormat("preset", PRESET_SCHEMA_VERSION, PresetError, MIGRATIONS)


# --------------------------------------------------------------------------------------------------
# dataclasses
# --------------------------------------------------------------------------------------------------
@dataclass
class PresetQuery:
    label: str
    text: str
    negative: str | None = None
    colour: str | None = None
    token: str = ""
    chain: list[dict] = field(default_factory=list)


@dataclass
class Preset:
    name: str
    queries: list[PresetQuery]
    description: str = ""
    id: str = ""
    category: str = ""
    tags: list[str] = field(default_factory=list)
    residual: dict = field(default_factory=lambda: {"mode": "keep", "label": "Residual", "token": "REST"})
    inference: dict = field(default_factory=dict)
    output: dict = field(default_factory=dict)
    schema_version: int = PRESET_SCHEMA_VERSION
    # runtime
    source: str = field(default="", compare=False)   # "factory" | "user" | "file"
    path: str | None = field(default=None, compare=False)

    @property
    def residual_mode(self) -> str:
        return self.residual.get("mode", "keep")

    @property
    def format(self) -> str:
        return engine_format(self.output.get("format", "wav"), self.output.get("bit_depth", 24))

    def to_queries(self) -> list[QuerySpec]:
        return [QuerySpec(text=q.text, negative=q.negative, label=q.label, colour=q.colour, token=q.token,
                          preset=self.name, chain=copy.deepcopy(q.chain)) for q in self.queries]

    def job_settings(self) -> dict:
        """Settings in the session-settings vocabulary (see ``model.DEFAULT_SETTINGS``)."""
        s: dict = {}
        for k in ("chunk_seconds", "overlap", "backend", "device", "context_seconds"):
            if k in self.inference:
                s[k] = self.inference[k]
        if "format" in self.output or "bit_depth" in self.output:
            s["format"] = self.format
        if "name_template" in self.output:
            s["name_template"] = self.output["name_template"]
        s["residual"] = self.residual_mode
        if self.residual.get("label"):
            s["residual_label"] = self.residual["label"]
        if self.residual.get("chain"):
            s["residual_chain"] = copy.deepcopy(self.residual["chain"])
        return s

    def to_dict(self) -> dict:
        d = {"schema_version": PRESET_SCHEMA_VERSION, "name": self.name, "description": self.description,
             "queries": [{"label": q.label, "text": q.text, "negative": q.negative, "colour": q.colour,
                          "token": q.token, **({"chain": copy.deepcopy(q.chain)} if q.chain else {})}
                         for q in self.queries],
             "residual": copy.deepcopy(self.residual), "inference": copy.deepcopy(self.inference),
             "output": copy.deepcopy(self.output)}
        if self.id:
            d["id"] = self.id
        if self.category:
            d["category"] = self.category
        if self.tags:
            d["tags"] = list(self.tags)
        return d

    def to_json(self) -> str:
        return PRESET_DOCUMENT.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, source: str = "preset") -> "Preset":
        if not isinstance(data, dict):
            raise PresetError(f"{source}: a preset file must hold a JSON object, not {type(data).__name__}")
        data = PRESET_DOCUMENT.migrate(data, source)
        bad = shape.first_non_finite(data)
        if bad is not None:
            f = shape.field_path(bad)
            raise PresetError(f"{source}: preset field '{f}' is not a finite number", f)
        err = shape.schema_error(_get_validator(), data, source, "preset", PresetError)
        if err:
            raise err
        out = data.get("output", {})
        engine_format(out.get("format", "wav"), out.get("bit_depth", 24))
        if "name_template" in out:
            try:
                check_name_template(out["name_template"])
            except PresetError as exc:
                raise PresetError(f"{source}: {exc}", exc.field) from None
        _check_chains(data, source)
        labels: dict[str, int] = {}
        for i, q in enumerate(data["queries"]):
            key = q["label"].strip().lower()
            if key in labels:
                f = f"queries[{i}].label"
                raise PresetError(f"{source}: preset field '{f}' repeats the label of queries[{labels[key]}]", f)
            labels[key] = i
        res = {"mode": "keep", "label": "Residual", "token": "REST"}
        res.update(copy.deepcopy(data.get("residual", {})))
        return cls(
            name=data["name"].strip(), description=data.get("description", ""), id=data.get("id", ""),
            category=data.get("category", ""), tags=list(data.get("tags", [])),
            queries=[PresetQuery(label=q["label"], text=q["text"], negative=q.get("negative"), colour=q.get("colour"),
                                 token=q.get("token", ""), chain=copy.deepcopy(q.get("chain", [])))
                     for q in data["queries"]],
            residual=res, inference=copy.deepcopy(data.get("inference", {})),
            output=copy.deepcopy(data.get("output", {})))


def _check_chains(data: dict, source: str) -> None:
    """Deep-check plugin chains with ``plugin_bridge.plugins.validate_chain``."""
    chains = [(f"queries[{i}].chain", q.get("chain")) for i, q in enumerate(data["queries"]) if q.get("chain")]
    if data.get("residual", {}).get("chain"):
        chains.append(("residual.chain", data["residual"]["chain"]))
    for where, chain in chains:
        for i, step in enumerate(chain):
            if str(step.get("type", "")).strip().lower() == "vst3":
                continue  # a third-party plugin may be missing on this machine: checked when rendering
            tmp, real = f"{where}[{i}][0]", f"{where}[{i}]"
            try:
                validate_chain([step], f"{where}[{i}]")
            except ConfigError as exc:
                fld = (getattr(exc, "field", "") or real).replace(tmp, real)
                msg = str(exc).replace(tmp, real)
                raise PresetError(f"{source}: preset field '{fld}' is invalid: {msg}", fld) from None


def load_preset_file(path: str, source: str = "file") -> Preset:
    p = Preset.from_dict(PRESET_DOCUMENT.read(path), os.path.basename(path))
    p.source, p.path = source, os.path.abspath(path)
    return p


@dataclass
class PresetEntry:
    name: str
    source: str                 # "factory" | "user"
    path: str
    preset: Preset | None       # None when the file is invalid
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.preset is not None


def _file_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._") or "preset"
    return s[:80] + ".json"


class PresetStore:
    def __init__(self, user_dir: str | None = None, factory: str | None = None):
        self.user_dir = user_dir or user_presets_dir()
        self.factory = factory or factory_dir()

    def _scan(self, folder: str, source: str) -> list[PresetEntry]:
        out = []
        try:
            names = sorted(n for n in os.listdir(folder) if n.lower().endswith(".json") and not n.startswith("."))
        except OSError:
            return out
        for n in names:
            p = os.path.join(folder, n)
            try:
                pr = load_preset_file(p, source)
                out.append(PresetEntry(pr.name, source, p, pr))
            except PresetError as exc:
                out.append(PresetEntry(os.path.splitext(n)[0], source, p, None, str(exc)))
        return out

    def list(self) -> list[PresetEntry]:
        """Factory presets first, then user presets; invalid files are listed with their error."""
        return self._scan(self.factory, "factory") + self._scan(self.user_dir, "user")

    def names(self) -> list[str]:
        return [e.name for e in self.list() if e.ok]

    def get(self, name: str) -> Preset:
        entries = self.list()
        for pred in (lambda e: e.name == name, lambda e: e.name.lower() == name.lower(),
                     lambda e: os.path.splitext(os.path.basename(e.path))[0].lower() == name.lower()):
            hits = [e for e in entries if pred(e)]
            if hits:
                e = hits[0]
                if not e.ok:
                    raise PresetError(e.error or f"preset {name!r} is invalid", "name")
                return e.preset
        raise PresetError(f"no preset named {name!r}; available: {', '.join(self.names()) or '(none)'}", "name")

    def _existing(self, name: str) -> PresetEntry | None:
        for e in self.list():
            if e.name.lower() == name.lower():
                return e
        return None

    def save(self, preset: Preset, overwrite: bool = False) -> str:
        """Write ``preset`` into the user folder (atomic).  Never replaces a factory preset."""
        Preset.from_dict(preset.to_dict(), preset.name)  # validate before writing anything
        ex = self._existing(preset.name)
        if ex and ex.source == "factory":
            raise PresetError(f"{preset.name!r} is a factory preset; save your version under another name", "name")
        if ex and not overwrite:
            raise PresetError(f"a user preset named {preset.name!r} already exists ({ex.path}); "
                              "use overwrite to replace it", "name")
        path = ex.path if ex else os.path.join(self.user_dir, _file_name(preset.name))
        if not ex:
            base, k = path[:-5], 2
            while os.path.exists(path):
                path = f"{base}-{k}.json"
                k += 1
        PRESET_DOCUMENT.write(path, preset.to_dict())
        return path

    def import_file(self, path: str, overwrite: bool = False) -> Preset:
        p = load_preset_file(path)
        dest = self.save(p, overwrite=overwrite)
        p.source, p.path = "user", dest
        return p

    def export(self, name: str, path: str, overwrite: bool = False) -> str:
        """Write preset ``name`` to ``path``; an existing file is replaced only with ``overwrite``."""
        p = self.get(name)
        check_writable_output(path, overwrite)
        d = p.to_dict()
        d.pop("factory", None)
        PRESET_DOCUMENT.write(path, d)
        return os.path.abspath(path)

    def delete(self, name: str) -> None:
        ex = self._existing(name)
        if ex is None:
            raise PresetError(f"no preset named {name!r}", "name")
        if ex.source == "factory":
            raise PresetError(f"{name!r} is a factory preset and cannot be deleted", "name")
        os.unlink(ex.path)
