"""Packaged query presets (``factory/*.json``), read-only; see ``plugin_bridge.session.presets``."""
import os


def factory_dir() -> str:
    """Folder holding the factory preset JSON files."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "factory")
