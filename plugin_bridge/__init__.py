"""plugin-bridge: language-queried source separation for audio post-production.

Engine (no Qt) lives here; ``plugin_bridge.models`` (models/), ``plugin_bridge.gui`` (gui/) and
``plugin_bridge.presets`` (presets/) are mapped into this namespace by the package build.
"""
__version__ = "0.1.0"
