"""The session's shape, declared once on its dataclasses, and everything derived from it.

A persisted dataclass declares each field once, with ``shaped(...)`` where the field needs more than its
type says (JSON-schema limits, a path stored relative to the session folder, a field required on disk,
the value an old file lacking the field loads as).  From the dataclass alone this module derives:

* ``to_dict`` / ``from_dict``: the JSON form (``id`` first, then the fields in declaration order; nested
  dataclasses and lists of them recurse; paths relative on disk, absolute in memory);
* ``object_schema``: the JSON schema of one object (``additionalProperties: false``; required: the
  fields without a default, ``id``, and those marked ``required``);
* ``editable_fields`` and ``check_fields``: the field set and the per-field validation the undo history
  uses for edits.

Adding a field to a dataclass is the only edit a new session field needs.  Fields marked ``runtime``
(a session's file path, its lock) never reach the disk.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import types
import typing
from typing import Any

__all__ = ["shaped", "persisted_fields", "editable_fields", "object_schema", "to_dict", "from_dict",
           "check_fields", "field_path", "schema_error", "cached_validator", "first_non_finite"]

_MISSING = dataclasses.MISSING
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object"}


def shaped(default: Any = _MISSING, *, factory: Any = _MISSING, schema: dict | None = None, path: bool = False,
           required: bool = False, missing: Any = _MISSING, runtime: bool = False, compare: bool = True,
           repr: bool = True) -> Any:
    """A dataclass field with its shape: ``schema`` (JSON-schema keywords merged over those its type
    gives), ``path`` (relative on disk), ``required`` (on disk, although it has a default), ``missing``
    (what a file without the field loads as, instead of the default), ``runtime`` (never persisted)."""
    meta = {"schema": schema or {}, "path": path, "required": required, "missing": missing, "runtime": runtime}
    return dataclasses.field(default=default, default_factory=factory, metadata=meta, compare=compare, repr=repr)


def _meta(f: dataclasses.Field, key: str, fallback: Any = None) -> Any:
    return f.metadata.get(key, fallback)


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.lru_cache(maxsize=None)
def persisted_fields(cls: type) -> tuple[dataclasses.Field, ...]:
    """The fields written to disk, in file order: ``id`` first, then declaration order."""
    fs = [f for f in dataclasses.fields(cls) if not _meta(f, "runtime", False)]
    return tuple(sorted(fs, key=lambda f: f.name != "id"))


def editable_fields(cls: type) -> frozenset[str]:
    """The fields an edit may change: every persisted field except the immutable ``id``."""
    return frozenset(f.name for f in persisted_fields(cls) if f.name != "id")


# --------------------------------------------------------------------------------------------------
# types
# --------------------------------------------------------------------------------------------------
def _split_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(tp)):
            return args[0], True
    return tp, False


def _type_schema(tp: Any) -> dict:
    base, optional = _split_optional(tp)
    if dataclasses.is_dataclass(base):
        out = object_schema(base)
    elif typing.get_origin(base) is list:
        (item,) = typing.get_args(base) or (Any,)
        out = {"type": "array", "items": _type_schema(item)} if item is not Any else {"type": "array"}
    elif base in _SCALARS or typing.get_origin(base) is dict:
        out = {"type": _SCALARS.get(base, "object")}
    else:
        out = {}  # a union such as ``int | str``: the field's ``schema`` says what is allowed
    if optional:
        out = dict(out)
        if "type" in out:
            out["type"] = [out["type"], "null"]
        elif out:
            out = {"oneOf": [out, {"type": "null"}]}
    return out


def _field_schema(cls: type, f: dataclasses.Field) -> dict:
    return {**_type_schema(_hints(cls)[f.name]), **_meta(f, "schema", {})}


@functools.lru_cache(maxsize=None)
def _object_schema(cls: type) -> dict:
    fs = persisted_fields(cls)
    required = [f.name for f in fs if f.name == "id" or _meta(f, "required", False)
                or (f.default is _MISSING and f.default_factory is _MISSING)]
    out: dict = {"type": "object", "additionalProperties": False,
                 "properties": {f.name: _field_schema(cls, f) for f in fs}}
    if required:
        out["required"] = required
    return out


def object_schema(cls: type) -> dict:
    """JSON schema of one ``cls`` object (a fresh copy: callers may extend it)."""
    return copy.deepcopy(_object_schema(cls))


# --------------------------------------------------------------------------------------------------
# dict form
# --------------------------------------------------------------------------------------------------
def _rel(path: str, base_dir: str | None) -> str:
    if not path or base_dir is None:
        return path
    try:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(base_dir))
    except ValueError:  # other drive on Windows
        return path
    return rel.replace(os.sep, "/")


def _abs(path: str, base_dir: str | None) -> str:
    if not path:
        return path
    p = path.replace("/", os.sep) if os.sep != "/" else path
    if os.path.isabs(p) or base_dir is None:
        return os.path.normpath(p) if os.path.isabs(p) else p
    return os.path.normpath(os.path.join(base_dir, p))


@functools.lru_cache(maxsize=None)
def _kind(tp: Any) -> tuple[str, Any]:
    """How a value of type ``tp`` converts: (kind, nested dataclass or item type)."""
    base, _ = _split_optional(tp)
    if dataclasses.is_dataclass(base):
        return "object", base
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base) or (Any,)
        return "list", item
    if base is int or base is float:
        return "number", base
    if typing.get_origin(base) in (typing.Union, types.UnionType):  # e.g. int | str
        return "int_or_str", None
    if base in (str, bool):
        return "scalar", None
    return "copy", None


@functools.lru_cache(maxsize=None)
def _plan(cls: type) -> tuple[tuple[str, str, Any, bool, Any], ...]:
    """Per persisted field: (name, kind, nested type, is a path, value when missing from a file)."""
    return tuple((f.name, *_kind(_hints(cls)[f.name]), _meta(f, "path", False), _meta(f, "missing", _MISSING))
                 for f in persisted_fields(cls))


def _dump(value: Any, kind: str, sub: Any, base_dir: str | None) -> Any:
    if value is None or kind in ("scalar", "number", "int_or_str"):
        return value
    if kind == "object":
        return to_dict(value, base_dir)
    if kind == "list":
        k, s = _kind(sub)
        return [_dump(v, k, s, base_dir) for v in value]
    return copy.deepcopy(value)


def _load(value: Any, kind: str, sub: Any, base_dir: str | None) -> Any:
    if value is None or kind == "scalar":
        return value
    if kind == "object":
        return from_dict(sub, value, base_dir)
    if kind == "list":
        k, s = _kind(sub)
        return [_load(v, k, s, base_dir) for v in value]
    if kind == "number":
        return sub(value)  # JSON 3.0 is a valid integer; keep the Python type exact
    if kind == "int_or_str":
        return value if isinstance(value, str) else int(value)
    return copy.deepcopy(value)


def to_dict(obj: Any, base_dir: str | None = None) -> dict:
    """The JSON-ready dict of a persisted dataclass; path fields relative to ``base_dir`` when given."""
    out = {}
    for name, kind, sub, is_path, _ in _plan(type(obj)):
        v = _dump(getattr(obj, name), kind, sub, base_dir)
        out[name] = _rel(v, base_dir) if is_path and v is not None else v
    return out


def from_dict(cls: type, data: dict, base_dir: str | None = None, **runtime: Any) -> Any:
    """Build ``cls`` from its (validated) dict form; fields absent from ``data`` take their ``missing``
    value or their default.  ``runtime`` sets runtime-only fields."""
    kw: dict[str, Any] = dict(runtime)
    for name, kind, sub, is_path, missing in _plan(cls):
        if name in data:
            v = _load(data[name], kind, sub, base_dir)
            kw[name] = _abs(v, base_dir) if is_path and v is not None else v
        elif missing is not _MISSING:
            kw[name] = copy.deepcopy(missing)
    return cls(**kw)


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
_VALIDATORS: dict[int, Any] = {}


def cached_validator(schema: dict):
    """One compiled jsonschema validator per schema object (sessions, presets, field checks)."""
    v = _VALIDATORS.get(id(schema))
    if v is None:
        # lazy: importing jsonschema takes ~65 ms (python -X importtime), which every start of the GUI
        # and CLI would pay before anything is validated
        import jsonschema

        v = _VALIDATORS[id(schema)] = (schema, jsonschema.Draft202012Validator(schema))
    return v[1]


def field_path(parts) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def first_non_finite(obj: Any, parts: list | None = None) -> list | None:
    """The path (list of keys/indices) of the first NaN/Infinity in a JSON value, or None."""
    parts = parts or []
    if isinstance(obj, float) and not math.isfinite(obj):
        return parts
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return None
    for k, v in items:
        hit = first_non_finite(v, parts + [k])
        if hit is not None:
            return hit
    return None


def schema_error(validator, data: Any, source: str, what: str, exc_cls):
    """First (most relevant) jsonschema error as ``exc_cls(message, field)`` naming the field, or None;
    the message starts with ``source: `` when a source is given."""
    errors = list(validator.iter_errors(data))
    if not errors:
        return None
    from jsonschema.exceptions import best_match  # loaded with the validator (see cached_validator)

    err = best_match(errors)
    head = f"{source}: " if source else ""
    parts = list(err.absolute_path)
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [k for k in err.validator_value if k not in err.instance]
        fld = field_path(parts + missing[:1])
        msg = f"{head}{what} field '{fld}' is missing"
    elif err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(str(k) for k in err.instance if k not in allowed)
        fld = field_path(parts + extra[:1])
        msg = f"{head}unknown {what} field '{fld}' (allowed here: {', '.join(sorted(allowed))})"
    else:
        fld = field_path(parts) or "(top level)"
        detail = err.message
        n = len(err.instance) if isinstance(err.instance, (list, str)) else None
        if err.validator == "maxItems" and n is not None:
            detail = f"has {n} entries; at most {err.validator_value} are allowed"
        elif err.validator == "maxLength" and n is not None:
            detail = f"is {n} characters long; at most {err.validator_value} are allowed"
        if len(detail) > 200:  # shorten the quoted value, never the reason after it
            r = repr(err.instance)
            detail = detail.replace(r, r[:40] + "..." if len(r) > 40 else r)
        if len(detail) > 200:
            detail = "..." + detail[-200:]
        msg = f"{head}{what} field '{fld}' is invalid: {detail}"
    return exc_cls(msg, fld)


def check_fields(cls: type, changes: dict, what: str, exc_cls, prefix: str = "") -> None:
    """Validate an edit of ``cls`` objects (field name -> new in-memory value) against the fields'
    schemas; raises ``exc_cls(message, field)`` naming the first bad field (``prefix`` + name)."""
    allowed = editable_fields(cls)
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise exc_cls(f"unknown {what} field '{prefix}{unknown[0]}' (allowed: {', '.join(sorted(allowed))})",
                      prefix + unknown[0])
    plan = {name: (kind, sub) for name, kind, sub, _, _ in _plan(cls)}
    props = {k: _dump(v, *plan[k], None) for k, v in changes.items()}
    for k, v in props.items():
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError):
            raise exc_cls(f"{what} field '{prefix}{k}' must hold only JSON values (no NaN or infinity)",
                          prefix + k) from None
    err = schema_error(cached_validator(_edit_schema(cls)), props, "", what, exc_cls)
    if err:
        fld = prefix + err.field
        raise exc_cls(str(err).replace(f"'{err.field}'", f"'{fld}'", 1), fld)


@functools.lru_cache(maxsize=None)
def _edit_schema(cls: type) -> dict:
    """The object schema without ``required``: an edit names only the fields it changes."""
    return {k: v for k, v in _object_schema(cls).items() if k != "required"}
