"""Named query vectors saved beside the user's presets: learned sounds and saved audio examples.

A query text ``@NAME`` (CLI ``-q "@generator hum"``, a preset query, a session region's query, the GUI
query panel) runs the vector saved under NAME instead of a text embedding.

* Folder: ``<user data>/presets/learned/`` (``$PLUGIN_BRIDGE_DATA`` overrides the platform folder).
* File: safetensors holding one float32 tensor ``query`` (the condition vector) and metadata:
  ``format`` (``plugin-bridge-learned-query``), ``version`` (current 1), ``name``, ``kind``
  (``learned``: fitted by ``plugin-bridge learn`` on one separator, so it is tied to that model's weight
  hash; ``example``: an audio example's embedding, valid for any model with the same query ``space``),
  ``model_hash``, ``model_name``, ``space``, ``created`` and free facts (clips, validation SDRi), plus a
  ``checksum`` over the vector and every other field: a file edited by hand or damaged is refused.
* Writes are atomic; nothing is replaced unless asked.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save as safetensors_bytes

from plugin_bridge.document import DocumentFormat
from plugin_bridge.errors import ConfigError
from plugin_bridge.fileio import atomic_write_bytes
from plugin_bridge.paths import user_presets_dir

__all__ = ["LearnedQuery", "LearnedStore", "LearnedQueryError", "LEARNED_VERSION", "learned_dir", "model_hash",
           "MARK", "is_named_query", "named_query_name"]

LEARNED_VERSION = 1
FORMAT = "plugin-bridge-learned-query"
MARK = "◆"   # how the GUI shows a named (learned / example) query
_KINDS = ("learned", "example")


class LearnedQueryError(ConfigError):
    """A learned-query file is missing, damaged, tampered with, or made for another model."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


#: the version check shared with sessions and presets (the metadata is not JSON: no migrations yet)
LEARNED_DOCUMENT = DocumentFormat("learned-query", LEARNED_VERSION, LearnedQueryError)


def learned_dir() -> str:
    return os.path.join(user_presets_dir(), "learned")


def is_named_query(text: str | None) -> bool:
    return bool(text) and text.strip().startswith("@") and len(text.strip()) > 1


def named_query_name(text: str) -> str:
    return " ".join(text.strip()[1:].split())


def model_hash(model) -> str:
    """sha256 (16 hex) of the separator's weights and config; cached on the loaded model."""
    h = getattr(model, "_weights_hash", None)
    if h is None:
        # the model is a loaded torch model, so this costs nothing here; at module top it would add torch's
        # ~4 s import to everything that only reads the store (the GUI query panel, `plugin-bridge learned`)
        import torch

        d = hashlib.sha256(model.cfg.to_json().encode())
        for k, t in sorted(model.net.state_dict().items()):
            t = t.detach().cpu().contiguous()
            d.update(k.encode() + str(tuple(t.shape)).encode() + str(t.dtype).encode())
            d.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        h = d.hexdigest()[:16]
        try:
            model._weights_hash = h
        except AttributeError:
            pass
    return h


def _file_stem(name: str) -> str:
    return (re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._") or "query")[:80]


@dataclass
class LearnedQuery:
    name: str
    vector: np.ndarray
    kind: str = "learned"
    model_hash: str = ""
    model_name: str = ""
    space: str = ""
    created: str = ""
    facts: dict = field(default_factory=dict)
    path: str | None = field(default=None, compare=False)

    def _meta(self) -> dict[str, str]:
        return {"format": FORMAT, "version": str(LEARNED_VERSION), "name": self.name, "kind": self.kind,
                "model_hash": self.model_hash, "model_name": self.model_name, "space": self.space,
                "created": self.created, "dim": str(int(self.vector.shape[0])),
                "facts": json.dumps(self.facts, sort_keys=True)}

    @staticmethod
    def _checksum(meta: dict[str, str], vec: np.ndarray) -> str:
        h = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True).encode())
        h.update(np.ascontiguousarray(vec, np.float32).tobytes())
        return h.hexdigest()

    def check_model(self, model) -> None:
        """Refuse to run on a model this query was not made for (one clear sentence)."""
        if self.kind == "learned":
            mh = model_hash(model)
            if mh != self.model_hash:
                raise LearnedQueryError(
                    f"learned query '@{self.name}' was learned for the model {self.model_name or '?'} "
                    f"(weights {self.model_hash}), not for {getattr(model, 'name', 'this model')} (weights {mh}); "
                    f"teach it again with this model: plugin-bridge learn \"{self.name}\" CLIPS/")
        elif self.space != getattr(model, "encoder_id", None):
            raise LearnedQueryError(
                f"example query '@{self.name}' lives in the {self.space} query space, but "
                f"{getattr(model, 'name', 'this model')} takes {getattr(model, 'encoder_id', '?')} queries")
        if self.vector.shape != (model.cfg.condition_size,):
            raise LearnedQueryError(f"query '@{self.name}' has {self.vector.shape[0]} dimensions; the model "
                                    f"expects {model.cfg.condition_size}")


def read_learned(path: str) -> LearnedQuery:
    where = os.path.basename(path)
    try:
        with safe_open(path, framework="np") as f:
            meta = dict(f.metadata() or {})
            keys = list(f.keys())
            vec = f.get_tensor("query") if keys == ["query"] else None
    except FileNotFoundError:
        raise LearnedQueryError(f"{where}: no such learned-query file") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file gives one message
        raise LearnedQueryError(f"{where}: not a readable learned-query file ({exc})") from None
    if meta.get("format") != FORMAT:
        raise LearnedQueryError(f"{where}: not a plugin-bridge learned-query file (format {meta.get('format')!r})")
    try:
        version = int(meta.get("version", ""))
    except ValueError:
        raise LearnedQueryError(f"{where}: learned-query field 'version' is not a number", "version") from None
    LEARNED_DOCUMENT.check_version(version, where, "version")
    if vec is None or vec.dtype != np.float32 or vec.ndim != 1 or str(vec.shape[0]) != meta.get("dim"):
        raise LearnedQueryError(f"{where}: the file must hold exactly one float32 vector 'query' of 'dim' values")
    if not np.all(np.isfinite(vec)):
        raise LearnedQueryError(f"{where}: the query vector contains NaN/Inf; the file is damaged")
    if meta.get("checksum") != LearnedQuery._checksum(meta, vec):
        raise LearnedQueryError(f"{where}: the checksum does not match, so the file was changed after it was "
                                "saved (edited or damaged); teach the sound again")
    if meta.get("kind") not in _KINDS:
        raise LearnedQueryError(f"{where}: unknown learned-query kind {meta.get('kind')!r}")
    try:
        facts = json.loads(meta.get("facts", "{}"))
    except ValueError:
        facts = {}
    return LearnedQuery(meta["name"], np.array(vec), meta["kind"], meta.get("model_hash", ""),
                        meta.get("model_name", ""), meta.get("space", ""), meta.get("created", ""), facts,
                        os.path.abspath(path))


@dataclass
class LearnedEntry:
    name: str
    path: str
    query: LearnedQuery | None
    error: str | None = None


class LearnedStore:
    def __init__(self, root: str | None = None):
        self.root = root or learned_dir()

    def list(self) -> list[LearnedEntry]:
        try:
            names = sorted(n for n in os.listdir(self.root) if n.endswith(".safetensors") and not n.startswith("."))
        except OSError:
            return []
        out = []
        for n in names:
            p = os.path.join(self.root, n)
            try:
                q = read_learned(p)
                out.append(LearnedEntry(q.name, p, q))
            except LearnedQueryError as exc:
                out.append(LearnedEntry(n[: -len(".safetensors")], p, None, str(exc)))
        return out

    def names(self) -> list[str]:
        return [e.name for e in self.list() if e.query is not None]

    def get(self, name: str) -> LearnedQuery:
        name = " ".join(name.strip().lstrip("@").split())
        entries = self.list()
        for pred in (lambda e: e.name == name, lambda e: e.name.lower() == name.lower(),
                     lambda e: os.path.basename(e.path)[: -len(".safetensors")].lower() == _file_stem(name).lower()):
            hits = [e for e in entries if pred(e)]
            if hits:
                if hits[0].query is None:
                    raise LearnedQueryError(hits[0].error or f"learned query '@{name}' is unreadable")
                return hits[0].query
        raise LearnedQueryError(f"no learned query named '@{name}' in {self.root}; known: "
                                + (", ".join("@" + n for n in self.names()) or "(none; make one with "
                                   "plugin-bridge learn NAME CLIPS/)"))

    def save(self, q: LearnedQuery, overwrite: bool = False) -> str:
        q.name = " ".join(q.name.strip().lstrip("@").split())
        if not q.name:
            raise LearnedQueryError("a learned query needs a name")
        if q.kind not in _KINDS:
            raise LearnedQueryError(f"unknown learned-query kind {q.kind!r}")
        vec = np.ascontiguousarray(q.vector, np.float32)
        if vec.ndim != 1 or not np.all(np.isfinite(vec)):
            raise LearnedQueryError("a learned query must be one finite vector")
        existing = [e for e in self.list() if e.name.lower() == q.name.lower()]
        if existing and not overwrite:
            raise LearnedQueryError(f"a learned query named '@{q.name}' already exists ({existing[0].path}); "
                                    "choose another name or replace it (--overwrite)")
        path = existing[0].path if existing else os.path.join(self.root, _file_stem(q.name) + ".safetensors")
        k = 2
        while not existing and os.path.exists(path):
            path = os.path.join(self.root, f"{_file_stem(q.name)}-{k}.safetensors")
            k += 1
        q.created = q.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta = q._meta()
        meta["checksum"] = LearnedQuery._checksum(meta, vec)
        atomic_write_bytes(path, safetensors_bytes({"query": vec}, metadata=meta), ".safetensors")
        q.path = path
        return path

    def delete(self, name: str) -> None:
        os.unlink(self.get(name).path)
