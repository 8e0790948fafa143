"""Errors meant for users: each carries a message that says what is wrong and what to do."""


class PluginBridgeError(Exception):
    """Base class of every error the engine reports to a user."""


class AudioInputError(PluginBridgeError):
    """The input audio cannot be read or is not usable (corrupt, empty, NaN/Inf, unknown format)."""


class OutputError(PluginBridgeError):
    """Output cannot be written (directory not writable, bad format option)."""


class CheckpointError(PluginBridgeError):
    """A model checkpoint is missing, tampered with, or does not match the architecture."""


class EncoderUnavailableError(PluginBridgeError):
    """A query encoder cannot be built offline (missing tokenizer files etc.)."""


class JobCancelled(PluginBridgeError):
    """A job was cancelled by the user; nothing was written."""


class ConfigError(PluginBridgeError):
    """A preset, session or setting is malformed."""
