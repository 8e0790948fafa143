"""Atomic file output shared by every writer (sessions, presets, projects, stems, settings).

``atomic_path(path)`` yields a hidden temporary path in the target's folder; when the block completes,
the file gets the usual permissions (0666 minus umask; mkstemp creates 0600) and is renamed over
``path`` in one step.  On any error the temporary is removed and ``path`` is untouched; OS errors
become an ``OutputError`` that names the file.

``check_writable_output(path, overwrite)`` is the one no-clobber rule of every command that writes a
file the user names or sees: an existing file is replaced only when asked (``--overwrite``).

Temporaries carry the writing process's id (``.pb-tmp-<pid>-*``, ``.pb-partial-<pid>-*``), so
``remove_stale_partials(folder)`` can remove those a killed run left behind (its process is gone)
without touching those of a run still in progress.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from contextlib import contextmanager

from plugin_bridge.errors import OutputError

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_bytes", "publish", "current_umask",
           "check_writable_output", "temp_prefix", "remove_stale_partials", "STALE_PREFIXES"]

#: hidden temporaries written by plugin-bridge (a pid follows the prefix)
STALE_PREFIXES = (".pb-tmp-", ".pb-partial-")
_STALE_RE = re.compile(r"^\.pb-(?:tmp|partial)-(\d+)-")


def temp_prefix(kind: str = "tmp") -> str:
    """``.pb-<kind>-<pid>-``: the prefix of a temporary this process owns."""
    return f".pb-{kind}-{os.getpid()}-"


def check_input_file(path: str, error: type[Exception], name: str = "file", kind: str = "a file") -> None:
    """The file to read exists, is not a folder and is not empty; else one-line ``error`` naming it
    (``name``: "checkpoint file" -> "no such checkpoint file"; ``kind``: "an audio file" -> "is a folder, not
    an audio file")."""
    if not os.path.exists(path):
        raise error(f"{path}: no such {name}")
    if os.path.isdir(path):
        raise error(f"{path}: is a folder, not {kind}")
    if os.path.getsize(path) == 0:
        raise error(f"{path}: the {name} is empty (0 bytes)")


def check_writable_output(path: str, overwrite: bool = False, flag: str = "--overwrite") -> None:
    """Refuse to write over an existing ``path`` unless ``overwrite``; never touches the file.

    Raises ``OutputError`` with one line naming the file and the flag that allows replacing it."""
    if os.path.isdir(path):
        raise OutputError(f"{path} is a folder; give a file name")
    if os.path.lexists(path) and not overwrite:
        raise OutputError(f"{path} already exists; use {flag} to replace it")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's) or cannot tell: keep it
    return True


def remove_stale_partials(folder: str) -> list[str]:
    """Remove the hidden temporaries in ``folder`` whose writing process no longer runs (a run killed
    by SIGKILL or a power loss); returns the removed paths.  Other files are never touched."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for n in names:
        m = _STALE_RE.match(n)
        if not m or _pid_alive(int(m.group(1))):
            continue
        p = os.path.join(folder, n)
        try:
            if os.path.isfile(p) and not os.path.islink(p):
                os.unlink(p)
                removed.append(p)
        except OSError:
            pass
    return removed


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
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), suffix=suffix, dir=d)
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
