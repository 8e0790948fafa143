"""Exports for DAW hand-off: Broadcast WAV stems with a ``bext`` time reference (``bwf``), and the
shared helpers of the DAWproject/RPP exporters (``interchange``)."""
from plugin_bridge.export.bwf import Bext, add_bext, read_bext, tag_session_stems, write_bwf  # noqa: F401

__all__ = ["write_bwf", "add_bext", "read_bext", "tag_session_stems", "Bext"]
