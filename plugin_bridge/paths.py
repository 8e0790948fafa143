"""Where plugin-bridge keeps the user's files, in one place (platformdirs folders, overridable).

* ``data_dir()``: the user's own files (presets, learned sounds, autosaves, GUI settings, tokenizers):
  ``$PLUGIN_BRIDGE_DATA``, else the platform's user data folder.
* ``user_presets_dir()``: the user's presets, and beside them (``learned/``) the learned sounds.
* ``cache_dir()``: what can be rebuilt (embeddings, ONNX exports, waveform overviews, scratch space of
  corpus builds): ``$PLUGIN_BRIDGE_CACHE``, else the platform's user cache folder.
"""
from __future__ import annotations

import os

import platformdirs

__all__ = ["APP", "data_dir", "user_presets_dir", "cache_dir"]

APP = "plugin-bridge"


def data_dir() -> str:
    return os.environ.get("PLUGIN_BRIDGE_DATA") or platformdirs.user_data_dir(APP, APP)


def user_presets_dir() -> str:
    return os.path.join(data_dir(), "presets")


def cache_dir() -> str:
    return os.environ.get("PLUGIN_BRIDGE_CACHE") or platformdirs.user_cache_dir(APP, appauthor=False)
