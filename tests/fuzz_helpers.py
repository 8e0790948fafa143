"""Helpers shared by the hypothesis fuzz tests of sessions and presets."""


def json_paths(obj, prefix=()):
    """Every key path into a JSON value (the root included), to pick a place to mutate."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from json_paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from json_paths(v, prefix + (i,))
