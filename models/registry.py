"""Which separator to run: the embedded default, our own safetensors files, or official AudioSep weights.

``load_model(spec)``:
* ``None`` / ``"default"``: the embedded model in ``models/weights/default.safetensors`` (trained by us,
  see ``models/weights/MODEL_CARD.md``).  If the file is absent (a development checkout before the first
  training run landed), a clearly labelled random-weight model is returned (``is_random=True``).
* ``"random-demo"``: that random-weight model on purpose (for plumbing tests).
* ``*.safetensors``: one of our models (config and encoder id in the file's metadata).
* ``*.ckpt`` / ``*.pt`` / ``*.pth``: an official AudioSep checkpoint (``ss_model.*`` loaded strictly,
  CLAP text tower from ``query_encoder.model.text_*``), never unpickling code.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from typing import Callable

import numpy as np

from plugin_bridge.errors import CheckpointError
from plugin_bridge.fileio import file_sha256  # noqa: F401 - re-exported
from plugin_bridge.models.config import ResUNetConfig

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_WEIGHTS = os.path.join(HERE, "weights", "default.safetensors")
TRAINING_DIR = os.path.join(HERE, "training")
#: the vocabulary of models whose file records none (the shipped v1 model predates the record)
LABELS_JSON = os.path.join(TRAINING_DIR, "labels.json")
#: metadata keys: the label table a model was trained on (JSON, embedded so the file describes itself
#: wherever it goes, whatever labels file trained it), and that file's name (informative, never opened)
VOCABULARY_KEY = "vocabulary"
VOCABULARY_FILE_KEY = "vocabulary_file"

# The embedded model's architecture (see MODEL_CARD.md for why these numbers).
DEFAULT_CONFIG = ResUNetConfig(
    name="pb-default-16k",
    sample_rate=16000, n_fft=512, hop=256, input_channels=1, condition_size=384,
    encoder_channels=(12, 24, 48, 96, 192), encoder_pools=((2, 2), (2, 2), (2, 2), (2, 2), (1, 2)),
    bottleneck_channels=192, mask="complex", input_transform="log1p",
)


def model_fingerprint(model) -> str:
    """Hash of a network's config and tensors (identifies in-memory weights, e.g. for exported-graph caches)."""
    h = hashlib.sha256(model.cfg.to_json().encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


@dataclass
class LoadedModel:
    _net: object                    # the ResUNet (torch), or None until ``net`` is first used (see _loader)
    encoder_id: str
    name: str
    is_random: bool = False
    source: str = ""
    metadata: dict = field(default_factory=dict)
    encoder_options: dict = field(default_factory=dict)
    _encoder: object = None
    _concept_index: object = None   # built on first use by concept_index_for()
    _loader: Callable | None = None  # builds the ResUNet (imports torch) when ``net`` is first used
    _cfg: ResUNetConfig | None = None
    _weights_hash: str | None = None  # SHA-256 of the weights file, when there is one

    @property
    def net(self):
        if self._net is None and self._loader is not None:
            self._net = self._loader()
            self._loader = None
        return self._net

    @net.setter
    def net(self, value) -> None:
        self._net = value

    @property
    def cfg(self) -> ResUNetConfig:
        return self._cfg if self._net is None and self._cfg is not None else self.net.cfg

    def weights_key(self) -> str:
        """Identifies the weights (the file's SHA-256 for file-backed models, else a hash of the tensors),
        e.g. for caches of exported graphs; reading it never imports torch for a file-backed model."""
        if self._weights_hash:
            return self._weights_hash[:20]
        return model_fingerprint(self.net)

    def encoder(self):
        if self._encoder is None:
            self._encoder = make_encoder(self.encoder_id, **self.encoder_options)
        return self._encoder


def make_encoder(encoder_id: str, **options):
    if encoder_id == "minilm-l6-v2":
        from plugin_bridge.models.encoders.minilm import MiniLMEncoder

        return MiniLMEncoder()
    if encoder_id.startswith("clap"):
        from plugin_bridge.models.encoders.clap import ClapTextEncoder

        return ClapTextEncoder(**options)
    raise CheckpointError(f"unknown query encoder {encoder_id!r}")


def random_model(cfg: ResUNetConfig = DEFAULT_CONFIG, seed: int = 0) -> LoadedModel:
    import torch

    from plugin_bridge.models.resunet import ResUNet

    torch.manual_seed(seed)
    net = ResUNet(cfg).eval()
    return LoadedModel(net, "minilm-l6-v2", f"{cfg.name} (RANDOM WEIGHTS - not a trained separator)",
                       is_random=True, source="random")


def load_safetensors_model(path: str, lazy: bool = False) -> LoadedModel:
    """One of our models.  ``lazy``: read only the header (config, names) and hash the file now; the
    tensors load, strictly checked, when ``net`` is first used (never, on the ONNX Runtime path with a
    cached export of these exact weights, which were checked when that export was made)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="np") as f:
            meta = dict(f.metadata() or {})
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such model file") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable safetensors model ({exc})") from None
    if "config" not in meta:
        raise CheckpointError(f"{path}: safetensors file has no 'config' metadata; not a plugin-bridge model")
    try:
        cfg = ResUNetConfig.from_dict(json.loads(meta["config"]))
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
        raise CheckpointError(f"{path}: invalid model config in metadata ({exc})") from None

    def build():
        from safetensors.torch import load_file

        from plugin_bridge.models.resunet import ResUNet

        try:
            tensors = load_file(path)
        except Exception as exc:
            raise CheckpointError(f"{path}: not a readable safetensors model ({exc})") from None
        net = ResUNet(cfg)
        load_state_strict(net, tensors, path)
        return net.eval()

    m = LoadedModel(None, meta.get("encoder", "minilm-l6-v2"), meta.get("name", cfg.name), source=path,
                    metadata=meta, _loader=build, _cfg=cfg, _weights_hash=file_sha256(path))
    if not lazy:
        m.net  # noqa: B018 - load and check the tensors now
    return m


def load_state_strict(net, tensors: dict, path: str, prefix: str = "") -> None:
    import torch

    expected = net.state_dict()
    missing = sorted(k for k in expected if prefix + k not in tensors)
    unexpected = sorted(k for k in tensors if not k.startswith(prefix) or k[len(prefix):] not in expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the architecture; "
            f"{len(missing)} missing: {missing[:20]}{' ...' if len(missing) > 20 else ''}; "
            f"{len(unexpected)} unexpected: {unexpected[:20]}{' ...' if len(unexpected) > 20 else ''}")
    bad_shapes = [(k, tuple(tensors[prefix + k].shape), tuple(v.shape)) for k, v in expected.items()
                  if tuple(tensors[prefix + k].shape) != tuple(v.shape)]
    if bad_shapes:
        raise CheckpointError(f"{path}: tensor shapes do not match: {bad_shapes[:10]}")
    for k in expected:
        t = tensors[prefix + k]
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: tensor {prefix + k} contains NaN/Inf; the file is damaged")
    net.load_state_dict({k: tensors[prefix + k] for k in expected}, strict=True)


def save_safetensors_model(net, path: str, encoder_id: str = "minilm-l6-v2", **extra_meta) -> None:
    from safetensors.torch import save_file

    meta = {"config": net.cfg.to_json(), "encoder": encoder_id, "name": net.cfg.name, "format": "plugin-bridge/1"}
    meta.update({k: str(v) for k, v in extra_meta.items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, path)


def load_model(spec: str | None = None, tokenizer: str | None = None, clap_ckpt: str | None = None) -> LoadedModel:
    if spec in (None, "", "default"):
        if os.path.exists(DEFAULT_WEIGHTS):
            m = load_safetensors_model(DEFAULT_WEIGHTS, lazy=True)
            m.name = m.metadata.get("name", "embedded default")
            return m
        return random_model()
    if spec == "random-demo":
        return random_model()
    if os.path.isdir(spec):
        raise CheckpointError(f"{spec}: is a folder; --model takes a .safetensors model or an AudioSep .ckpt file")
    ext = os.path.splitext(spec)[1].lower()
    if ext == ".safetensors":
        return load_safetensors_model(spec, lazy=True)
    if ext in (".ckpt", ".pt", ".pth", ".bin"):
        from plugin_bridge.models.audiosep import load_audiosep_checkpoint

        return load_audiosep_checkpoint(spec, tokenizer=tokenizer, clap_ckpt=clap_ckpt)
    raise CheckpointError(f"{spec}: unknown model file type; use a .safetensors model or an AudioSep .ckpt")


# -- concept coverage: warn when a query is far from everything the model was trained on ----------------

def check_vocabulary(doc, where: str) -> dict:
    """``doc`` if it is a label table (``labels``: name -> {synonyms, captions}, optional ``umbrellas`` of
    the same shape and ``unsupported`` concepts), else a CheckpointError naming ``where``."""
    def texts_ok(info) -> bool:
        return isinstance(info, dict) and all(
            isinstance(info.get(k, []), list) and all(isinstance(t, str) for t in info.get(k, []))
            for k in ("synonyms", "captions"))

    if not isinstance(doc, dict) or not isinstance(doc.get("labels"), dict) or not doc["labels"]:
        raise CheckpointError(f"{where}: not a label vocabulary (no 'labels' table)")
    for kind in ("labels", "umbrellas"):
        table = doc.get(kind) or {}
        bad = [k for k, v in table.items() if not texts_ok(v)] if isinstance(table, dict) else [kind]
        if bad:
            raise CheckpointError(f"{where}: malformed '{kind}' entries in the label vocabulary: {bad[:5]}")
    if not isinstance(doc.get("unsupported", []), list):
        raise CheckpointError(f"{where}: malformed 'unsupported' list in the label vocabulary")
    return doc


def load_label_vocabulary(path: str = LABELS_JSON) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the label vocabulary ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise CheckpointError(f"{path}: the label vocabulary is not valid JSON ({exc})") from None
    return check_vocabulary(doc, path)


def vocabulary_metadata(path: str) -> dict[str, str]:
    """The metadata that records, in a model file, the vocabulary ``path`` it was trained on."""
    doc = load_label_vocabulary(path)
    return {VOCABULARY_KEY: json.dumps(doc, ensure_ascii=False, separators=(",", ":")),
            VOCABULARY_FILE_KEY: os.path.basename(path)}


def model_vocabulary(model) -> "dict | None":
    """The label vocabulary ``model`` was trained on: the table its file records, or labels.json for a
    plugin-bridge file that records none (the shipped v1 model); None for random weights and AudioSep
    checkpoints.  A damaged or tampered record is a CheckpointError (no path is ever read from it)."""
    meta = getattr(model, "metadata", None) or {}
    if getattr(model, "is_random", True) or "config" not in meta:
        return None
    if VOCABULARY_KEY not in meta:
        return load_label_vocabulary(LABELS_JSON)
    where = f"{model.source or model.name}: metadata '{VOCABULARY_KEY}'"
    raw = meta[VOCABULARY_KEY]
    try:
        doc = json.loads(raw)
    except ValueError:
        raise CheckpointError(f"{where} is not the JSON label table 'plugin-bridge train' writes "
                              f"(it holds {raw[:60]!r}); the file was altered or damaged") from None
    return check_vocabulary(doc, where)


def vocabulary_name(model) -> str:
    """A short name of the model's vocabulary for messages: the recorded file name, else labels.json."""
    meta = getattr(model, "metadata", None) or {}
    if VOCABULARY_KEY not in meta:
        return os.path.basename(LABELS_JSON)
    return os.path.basename(str(meta.get(VOCABULARY_FILE_KEY) or "the vocabulary embedded in the model"))


@dataclass
class ConceptMatch:
    query: str
    similarity: float
    closest: list[tuple[str, float]]
    known: bool
    unsupported_hit: str | None = None


class ConceptIndex:
    """Cosine similarity of a query against the trained labels and umbrella queries (names, synonyms,
    captions)."""

    def __init__(self, encoder, vocab: dict, threshold: float = 0.55):
        self.encoder = encoder
        self.threshold = threshold
        self.texts: list[str] = []
        self.owner: list[str] = []
        concepts = list(vocab.get("labels", {}).items()) + list((vocab.get("umbrellas") or {}).items())
        for label, info in concepts:
            for t in [label.replace("_", " "), *info.get("synonyms", []), *info.get("captions", [])]:
                self.texts.append(t)
                self.owner.append(label)
        self.unsupported = [u["concept"] if isinstance(u, dict) else str(u) for u in vocab.get("unsupported", [])]
        self._emb = encoder.encode(self.texts) if self.texts else np.zeros((0, encoder.dim), np.float32)
        self._unsup = encoder.encode(self.unsupported) if self.unsupported else None

    def __bool__(self) -> bool:
        return bool(self.texts)

    def match(self, query: str) -> ConceptMatch:
        q = self.encoder.encode([query])[0]
        sims = self._emb @ q
        best: dict[str, float] = {}
        for s, lab in zip(sims, self.owner):
            best[lab] = max(best.get(lab, -1.0), float(s))
        ranked = sorted(best.items(), key=lambda kv: -kv[1])[:3]
        top = ranked[0][1] if ranked else 0.0
        unsup = None
        if self._unsup is not None:
            us = self._unsup @ q
            j = int(np.argmax(us))
            if us[j] > max(top, self.threshold):
                unsup = self.unsupported[j]
        return ConceptMatch(query, top, ranked, known=top >= self.threshold and unsup is None,
                            unsupported_hit=unsup)


def concept_index_for(model) -> "ConceptIndex | None":
    """The trained-concept index of ``model`` over its own vocabulary (``model_vocabulary``; built once per
    loaded model), or None when the model has no vocabulary to check against: random weights, or another
    query encoder (AudioSep's CLAP was trained on open-vocabulary captions).  CheckpointError when the
    model's vocabulary record is damaged."""
    if getattr(model, "is_random", True) or getattr(model, "encoder_id", None) != "minilm-l6-v2":
        return None
    idx = getattr(model, "_concept_index", None)
    if idx is None:
        vocab = model_vocabulary(model)
        if vocab is None:
            return None
        idx = ConceptIndex(model.encoder(), vocab)
        model._concept_index = idx
    return idx


def query_warnings(model, texts: list[str]) -> list[str]:
    """One message per query far from everything the model was trained on: the closest trained
    concepts with their similarity, so the user can rephrase instead of getting a silent poor stem.  A
    model whose vocabulary record is damaged gets one message saying its queries cannot be checked."""
    try:
        idx = concept_index_for(model)
    except CheckpointError as exc:
        return [f"{exc}; queries are not checked against what this model was trained on"]
    if idx is None:
        return []
    out = []
    for text in texts:
        if text.strip().startswith("@"):
            continue  # a learned / example query (checked against the model when it runs)
        m = idx.match(text)
        if m.known:
            continue
        near = ", ".join(f"{lab} ({sim:.2f})" for lab, sim in m.closest)
        why = (f"it is close to '{m.unsupported_hit}', which the model was not trained on; "
               if m.unsupported_hit else "")
        out.append(f"query '{text}' is far from what this model knows ({why}similarity {m.similarity:.2f}); "
                   f"closest concepts: {near}. The result may be poor.")
    return out
