"""Damaged audio files that once crashed, hung or silently padded (shared by the hostile-input tests)."""
from __future__ import annotations

import struct

import numpy as np


def wav_bytes(tag: int, ch: int, rate: int, bits: int, data: bytes, data_size: int | None = None,
              block_align: int | None = None, extra: bytes = b"") -> bytes:
    ba = ch * bits // 8 if block_align is None else block_align
    fmt = struct.pack("<HHIIHH", tag, ch, rate, rate * ba, ba, bits) + extra
    ds = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", ds) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def make_hostile_files(folder) -> dict:
    """{name: expected words of the one-line message} for files written into ``folder``."""
    from pedalboard.io import AudioFile

    pcm = (np.random.RandomState(0).randn(48000 * 2) * 3000).astype("<i2").tobytes()  # 1 s stereo
    files = {
        "alaw16.wav": (wav_bytes(6, 2, 48000, 16, pcm), "A-law with 16-bit"),
        "ulaw16.wav": (wav_bytes(7, 2, 48000, 16, pcm), "mu-law with 16-bit"),
        "huge.wav": (wav_bytes(1, 2, 48000, 16, pcm, data_size=0xF0000000), "holds only 48000 frames"),
        "adpcm.wav": (wav_bytes(0x11, 2, 48000, 4, pcm, block_align=1, extra=struct.pack("<HH", 2, 1)),
                      "codec 0x0011 is not supported"),
        "cut.wav": (wav_bytes(1, 2, 48000, 16, pcm)[:100000], "truncated"),
    }
    for name, (data, _msg) in files.items():
        (folder / name).write_bytes(data)
    x = (np.random.RandomState(0).randn(2, 48000 * 3) * 0.1).astype(np.float32)
    with AudioFile(str(folder / "full.flac"), "w", 48000, 2, bit_depth=16) as f:
        f.write(x)
    d = (folder / "full.flac").read_bytes()
    (folder / "full.flac").unlink()
    (folder / "cut.flac").write_bytes(d[: len(d) // 2])
    (folder / "cutlast.flac").write_bytes(d[:-100])
    out = {n: m for n, (_d, m) in files.items()}
    out["cut.flac"] = "truncated"
    out["cutlast.flac"] = "cut short"
    return out


def drop_paths(widget, paths) -> bool:
    """Drag ``paths`` onto ``widget`` and drop them, as a file manager does; True when the drag was accepted."""
    from PyQt6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
    from PyQt6.QtGui import QDragEnterEvent, QDropEvent
    from PyQt6.QtWidgets import QApplication

    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(QPoint(200, 200), Qt.DropAction.CopyAction, md, Qt.MouseButton.NoButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    ev = QDropEvent(QPointF(200, 200), Qt.DropAction.CopyAction, md, Qt.MouseButton.NoButton,
                    Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, ev)
    return True
