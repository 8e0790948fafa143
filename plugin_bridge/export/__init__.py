"""Exports for DAW hand-off: Broadcast WAV stems with a ``bext`` time reference (``bwf``).

The DAW project formats (DAWproject, Reaper RPP) read and write sessions, so they live in ``session/``
(``session/interchange.py`` holds their shared helpers); this package takes plain data and files only."""
from plugin_bridge.export.bwf import Bext, add_bext, read_bext, tag_session_stems, write_bwf  # noqa: F401

__all__ = ["write_bwf", "add_bext", "read_bext", "tag_session_stems", "Bext"]
