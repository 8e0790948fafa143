"""Query by example: reference audio (``ref.wav[@start:end]``) -> query vectors, mixed with text queries.

Rules (``plugin-bridge separate``):
* every ``-e REF`` describes the same sound: their embeddings are averaged into one example vector E;
* without ``-q``: one stem, extracted with E;
* with ``-q TEXT``: each text query T becomes ``normalise(w E + (1 - w) T)`` (``--example-weight w``,
  default 0.5), one stem per ``-q`` as usual;
* ``-n TEXT`` stays the negative of the query at the same position (of the example stem without ``-q``);
* ``--negative-example REF`` (repeatable, averaged) is the negative of every stem; where a stem also has a
  text negative, its negative is their even blend.
Example vectors come from the audio encoder (``models/encoders/audio.py``), which maps audio into the
MiniLM text space, so they work with models that take MiniLM queries (the embedded default model).
"""
from __future__ import annotations

import os
import re

import numpy as np

from plugin_bridge.errors import AudioInputError, ConfigError

__all__ = ["parse_reference", "example_vector", "blend", "build_queries", "encoder_for"]

_RANGE = re.compile(r"^(?P<a>[0-9]*\.?[0-9]*):(?P<b>[0-9]*\.?[0-9]*)$")


def parse_reference(spec: str) -> tuple[str, float | None, float | None]:
    """``ref.wav``, ``ref.wav@1.5:3``, ``ref.wav@:2``, ``ref.wav@4:`` -> (path, start, end) in seconds."""
    if not spec or not spec.strip():
        raise ConfigError("an example reference needs a file name, e.g. -e ref.wav@1.5:3.0")
    if "@" in spec and not os.path.exists(spec):
        path, rng = spec.rsplit("@", 1)
        m = _RANGE.match(rng.strip())
        if not m or rng.strip() in (":", ".:", ":."):
            raise ConfigError(f"example {spec!r}: the range after @ must be START:END in seconds, e.g. "
                              f"{path}@1.5:3.0")
        a = float(m["a"]) if m["a"] not in ("", ".") else None
        b = float(m["b"]) if m["b"] not in ("", ".") else None
        if a is not None and b is not None and b <= a:
            raise AudioInputError(f"example {spec!r}: the reference region is empty or reversed "
                                  f"({a:g} s to {b:g} s); give START < END")
        return path, a, b
    return spec, None, None


def encoder_for(model, weights: str | None = None):
    """The audio encoder, checked against the model's query space."""
    from plugin_bridge.models.encoders.audio import load_audio_encoder

    enc = load_audio_encoder(weights)
    if getattr(model, "encoder_id", enc.space) != enc.space:
        raise ConfigError(f"example queries live in the {enc.space} query space, but the model "
                          f"{getattr(model, 'name', '')} takes {model.encoder_id} queries; use the default model")
    return enc


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n < 1e-8:
        raise ConfigError("the combined query is empty (the parts cancel out); change the weights")
    return (v / n).astype(np.float32)


def example_vector(specs: list[str], encoder) -> np.ndarray:
    """Average unit embedding of the references (each ``path[@start:end]``)."""
    vecs = [encoder.encode_file(*parse_reference(s)) for s in specs]
    return _unit(np.mean(vecs, axis=0))


def blend(a: np.ndarray, b: np.ndarray, weight_a: float) -> np.ndarray:
    return _unit(weight_a * np.asarray(a, np.float32) + (1.0 - weight_a) * np.asarray(b, np.float32))


def build_queries(texts: list[str], negatives: list[str] | None, examples: list[str], example_weight: float | None,
                  negative_examples: list[str], sep) -> list:
    """The ``Query`` list for ``plugin-bridge separate`` (see the module doc for the rules)."""
    from plugin_bridge.engine.separator import Query, slug

    negs = list(negatives or [])
    n_stems = len(texts) or (1 if examples else 0)
    if not n_stems:
        raise ConfigError("give at least one query, e.g. -q speech, or an example, e.g. -e ref.wav")
    if len(negs) > n_stems:
        raise ConfigError("more --negative than --query values")
    negs += [""] * (n_stems - len(negs))
    if example_weight is not None and not (0.0 <= example_weight <= 1.0):
        raise ConfigError(f"--example-weight {example_weight:g} must be between 0 and 1")
    if example_weight is not None and not examples:
        raise ConfigError("--example-weight needs an example (-e ref.wav)")
    enc = encoder_for(sep.model) if (examples or negative_examples) else None
    E = example_vector(examples, enc) if examples else None
    N = example_vector(negative_examples, enc) if negative_examples else None

    def negative(text: str) -> tuple[str | None, np.ndarray | None]:
        if N is None:
            return text or None, None
        if not text:
            return "example", N
        return f"{text}+example", blend(N, sep.condition(text), 0.5)

    out = []
    if not texts:
        ref = os.path.splitext(os.path.basename(parse_reference(examples[0])[0]))[0]
        n, nv = negative(negs[0])
        return [Query(f"like {ref}", n, slug(f"like-{ref}"), vector=E, negative_vector=nv)]
    w = 0.5 if example_weight is None else example_weight
    for t, ng in zip(texts, negs):
        n, nv = negative(ng)
        if E is None:
            out.append(Query(t, n, None, negative_vector=nv))
        else:
            out.append(Query(f"{t} + example", n, slug(f"{t}-x"), vector=blend(E, sep.condition(t), w),
                             negative_vector=nv))
    return out
