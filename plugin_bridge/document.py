"""Versioned JSON documents: one format name, one current version, one chain of migrations.

Sessions (``model.SESSION_DOCUMENT``) and presets (``presets.PRESET_DOCUMENT``) are both such documents;
learned queries (safetensors metadata, not JSON) share the version check.

* ``read(path)`` reads a JSON file; a missing, unreadable, non-UTF-8 or non-JSON file is one clear error
  of the document's error class.  Reading never changes any file.
* ``migrate(data, source)`` turns a dict of an older ``schema_version`` into the current one
  (``migrations[v]`` makes version ``v + 1``); a file from a newer program, a negative or non-integer
  version, a file of another format, or an old file the chain cannot upgrade is refused, naming
  ``schema_version`` (or ``format``).
* ``write(path, data)`` writes the dict as JSON atomically (temporary file in the same folder, fsync,
  rename): an interrupted or refused write leaves the previous file as it was.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from plugin_bridge.fileio import atomic_write_text

__all__ = ["DocumentFormat", "VERSION_KEY", "read_json"]

VERSION_KEY = "schema_version"


@dataclass(frozen=True)
class DocumentFormat:
    what: str                                   # "session", "preset": used in every message
    version: int                                # the version this program writes
    error: type                                 # exception class: error(message, field)
    migrations: dict[int, Callable[[dict], dict]] = field(default_factory=dict)
    tag: str | None = None                      # value of the optional "format" field, if the format has one

    # -- version --------------------------------------------------------------------------------
    def check_version(self, v: Any, source: str, key: str = VERSION_KEY) -> int:
        """The version ``v`` as an int this program can read (from the oldest version the migrations
        start at to the current one), else ``error`` naming the version field ``key``."""
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(f"{source}: {self.what} field '{key}' must be an integer, not {v!r}", key)
        if v > self.version:
            raise self.error(f"{source}: {self.what} field '{key}' is {v}, newer than this program "
                             f"supports ({self.version}); update plugin-bridge to open it", key)
        if v < 0:
            raise self.error(f"{source}: {self.what} field '{key}' ({v}) must not be negative", key)
        oldest = min(self.migrations, default=self.version)
        if v < oldest:
            raise self.error(f"{source}: {self.what} field '{key}' is {v}, older than any version this "
                             f"program reads ({oldest} to {self.version})", key)
        return v

    def migrate(self, data: Any, source: str) -> Any:
        """``data`` upgraded to the current version (a non-dict is returned as is: validation names it)."""
        if not isinstance(data, dict):
            return data
        tag = data.get("format")
        if self.tag is not None and tag is not None and tag != self.tag:
            raise self.error(f"{source}: {self.what} field 'format' is {str(tag)[:60]!r}: this is not a "
                             f"{self.what} file (expected {self.tag!r})", "format")
        v = self.check_version(data.get(VERSION_KEY, 0), source)
        while v < self.version:
            try:
                data = self.migrations[v](data)
            except self.error as exc:
                raise self.error(f"{source}: {exc}", exc.field) from None
            except Exception as exc:  # a malformed old file
                raise self.error(f"{source}: {self.what} field '{VERSION_KEY}' is {v} and the file cannot be "
                                 f"upgraded ({type(exc).__name__}: {exc})", VERSION_KEY) from None
            v += 1
        return data

    def stamp(self, body: dict) -> dict:
        """``body`` headed by the current version (and format tag): the dict this program writes."""
        head: dict = {VERSION_KEY: self.version}
        if self.tag is not None:
            head["format"] = self.tag
        return {**head, **{k: v for k, v in body.items() if k not in head}}

    # -- files ----------------------------------------------------------------------------------
    def read(self, path: str) -> Any:
        """The JSON value in ``path`` (not yet migrated or validated)."""
        return read_json(path, self.what, self.error)

    @staticmethod
    def dumps(data: dict) -> str:
        return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def write(self, path: str, data: dict) -> None:
        """Write ``data`` (already validated by the caller) to ``path`` atomically."""
        atomic_write_text(path, self.dumps(data), suffix=".json")


def read_json(path: str, what: str, error: type) -> Any:
    """The JSON value in ``path``; a missing, unreadable, non-UTF-8 or non-JSON file raises ``error``."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {what} file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a {what} file (not UTF-8 text at byte {exc.start})") from None
    try:
        # NaN/Infinity parse here and are reported with their field by validation
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise error(f"{path}: not valid JSON{where}: {getattr(exc, 'msg', exc)}") from None
