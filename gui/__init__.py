"""Desktop app (PyQt6): session lanes with waveform overviews, region/query panel, render jobs, stem
lanes with mute/solo and drag-out, live preview playback.  Start with ``plugin-bridge gui``.

Importing this package imports no Qt; see ``plugin_bridge.gui.app.main``."""
