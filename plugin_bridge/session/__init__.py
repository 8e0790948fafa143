"""Sessions: tracks, regions, queries and stems; undo history; render jobs; query presets."""
from plugin_bridge.session.model import (  # noqa: F401
    SCHEMA_VERSION, SESSION_SUFFIX, JobRecord, QuerySpec, Region, Session, SessionError, Stem, Track, new_id,
)
