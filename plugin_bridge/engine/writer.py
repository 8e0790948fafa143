"""Writer: stems are streamed to hidden temporary files and renamed into place only when the whole job
succeeded.  A cancelled or failed job removes its temporaries, so no partial output is ever left.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from plugin_bridge.errors import OutputError
from plugin_bridge.fileio import publish, temp_prefix

__all__ = ["OutputFormat", "StemWriterSet", "WriterSink", "FORMATS"]

# name -> (extension, bit depth, float?)
FORMATS = {
    "wav16": (".wav", 16, False),
    "wav24": (".wav", 24, False),
    "wav32f": (".wav", 32, True),
    "flac16": (".flac", 16, False),
    "flac24": (".flac", 24, False),
}


@dataclass(frozen=True)
class OutputFormat:
    name: str = "wav24"

    def __post_init__(self):
        if self.name not in FORMATS:
            raise OutputError(f"unknown output format {self.name!r}; choose one of {', '.join(FORMATS)}")

    @property
    def extension(self) -> str:
        return FORMATS[self.name][0]

    @property
    def bit_depth(self) -> int:
        return FORMATS[self.name][1]

    @property
    def is_float(self) -> bool:
        return FORMATS[self.name][2]


def check_output_dir(out_dir: str) -> None:
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out_dir}: {exc.strerror}") from None
    if not os.path.isdir(out_dir):
        raise OutputError(f"output path {out_dir} is not a folder")
    try:
        fd, probe_path = tempfile.mkstemp(prefix=".pb-probe-", dir=out_dir)
        os.close(fd)
        os.unlink(probe_path)
    except OSError as exc:
        raise OutputError(f"output folder {out_dir} is not writable: {exc.strerror}") from None


class StemWriterSet:
    """One streaming writer per output name, committed together.

    ``open_file(index, tmp_path)`` opens output ``index`` at its temporary path (an object with
    ``write((channels, n) float32)`` and ``close()``); default: Pedalboard's writer in ``fmt``."""

    def __init__(self, paths: list[str], sample_rate: int, channels: int, fmt: OutputFormat,
                 prefix: str | None = None, open_file: Callable[[int, str], Any] | None = None):
        from pedalboard.io import AudioFile

        if open_file is None:
            def open_file(index: int, tmp: str):
                return AudioFile(tmp, "w", samplerate=sample_rate, num_channels=channels, bit_depth=fmt.bit_depth)
        self.paths = paths
        self.fmt = fmt
        self.clipped = [0] * len(paths)
        self.peaks = [0.0] * len(paths)
        self._tmp: list[str] = []
        self._files = []
        try:
            for i, p in enumerate(paths):
                d = os.path.dirname(os.path.abspath(p))
                check_output_dir(d)
                fd, tmp = tempfile.mkstemp(prefix=prefix or temp_prefix("partial"), suffix=fmt.extension, dir=d)
                os.close(fd)
                self._tmp.append(tmp)
                self._files.append(open_file(i, tmp))
        except OutputError:
            self.abort()
            raise
        except Exception as exc:
            self.abort()
            raise OutputError(f"cannot open output for writing: {exc}") from None

    def write(self, blocks: list[np.ndarray]) -> None:
        for i, (f, b) in enumerate(zip(self._files, blocks)):
            if b.shape[-1] == 0:
                continue
            b = np.asarray(b, np.float32)
            peak = float(np.max(np.abs(b)))
            self.peaks[i] = max(self.peaks[i], peak)
            if not self.fmt.is_float and peak > 1.0:
                self.clipped[i] += int(np.count_nonzero(np.abs(b) > 1.0))
                b = np.clip(b, -1.0, 1.0)
            try:
                f.write(b)
            except Exception as exc:
                raise OutputError(f"writing {self.paths[i]} failed: {exc}") from None

    def commit(self) -> list[str]:
        for f in self._files:
            f.close()
        self._files = []
        for tmp, final in zip(self._tmp, self.paths):
            publish(tmp, final)  # mkstemp creates 0600; stems get normal permissions
        self._tmp = []
        return list(self.paths)

    def abort(self) -> None:
        for f in self._files:
            try:
                f.close()
            except Exception:
                pass
        self._files = []
        for tmp in self._tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self._tmp = []


class WriterSink:
    """A ``StemWriterSet`` as the separator's ``StemSink``: blocks are appended in order, ``close()``
    commits (and returns the final paths), ``abort()`` removes the temporaries."""

    def __init__(self, writers: StemWriterSet):
        self.writers = writers

    def write(self, start: int, blocks: list[np.ndarray]) -> None:
        self.writers.write(blocks)

    def close(self) -> list[str]:
        return self.writers.commit()

    def abort(self) -> None:
        self.writers.abort()
