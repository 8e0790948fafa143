"""Training-corpus builder (``plugin-bridge corpus build``): instruments rendered from FluidR3_GM, TTS and
real speech, and environmental recordings from allowed Debian game/edu data packages."""
