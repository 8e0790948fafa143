"""Exports for DAW hand-off: Broadcast WAV stems with a ``bext`` time reference (``bwf``)."""
from plugin_bridge.export.bwf import Bext, add_bext, read_bext, write_bwf  # noqa: F401

__all__ = ["write_bwf", "add_bext", "read_bext", "Bext"]
