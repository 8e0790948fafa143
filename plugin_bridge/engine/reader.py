"""Compatibility name for ``plugin_bridge.audio_io``, kept only for ``gui/mainwindow.py``.

The main window is being split into the ``gui/mainwindow/`` package on another branch; that split imports
``plugin_bridge.audio_io`` directly and deletes this module (the rule ``engine.reader is compat-only`` in
tests/test_architecture.py names the one importer allowed until then).
"""
from plugin_bridge.audio_io import StreamReader, probe, read_all

__all__ = ["StreamReader", "probe", "read_all"]
