"""Atomic file output shared by every writer (sessions, presets, projects, stems, settings).

``atomic_path(path)`` yields a hidden temporary path in the target's folder; when the block completes,
the file gets the usual permissions (0666 minus umask; mkstemp creates 0600) and is renamed over
``path`` in one step.  On any error the temporary is removed and ``path`` is untouched; OS errors
become an ``OutputError`` that names the file.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager

from plugin_bridge.errors import OutputError

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_bytes", "publish", "current_umask"]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: str, path: str) -> None:
    """Give ``tmp`` normal permissions and move it over ``path`` atomically."""
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, path)


@contextmanager
def atomic_path(path: str, suffix: str = ""):
    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pb-tmp-", suffix=suffix, dir=d)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        yield tmp
        publish(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def atomic_write_bytes(path: str, data: bytes, suffix: str = "") -> None:
    with atomic_path(path, suffix) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str, text: str, suffix: str = "") -> None:
    atomic_write_bytes(path, text.encode("utf-8"), suffix)


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
