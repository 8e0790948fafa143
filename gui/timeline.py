"""Timeline widgets: time axis (zoom/scroll state), ruler, lane rows (header + waveform view).

Mouse and keys (what an editor expects):
* wheel: vertical scroll of the lanes; Shift+wheel: horizontal scroll; Ctrl+wheel: zoom around the
  pointer (also on the ruler).  Keys are bound by the main window (+/- zoom, arrows scroll, F fit).
* click on a lane or the ruler: move the playhead; drag on a source lane's empty space: draw a region;
  drag inside a region: move it (same length, one undo step); drag a region's edge (within 5 px):
  trim it; the pointer shows which (open hand / horizontal arrows);
  drag a stem/residual lane (or its header grip): drag the finished file out to a DAW or file manager.

The widgets know no window: ``TimelineWidget`` is given the shared ``TimeAxis``, the ``OverviewCache``
and, through setters, the session, the audible lanes and the selected region; what the user does leaves
as its signals (``regionDrawn``, ``regionMoved``, ``muteToggled``, ``dragRequested``, ...), which the
window turns into edits.
"""
from __future__ import annotations

import math
import os

import numpy as np
from PyQt6.QtCore import QMimeData, QPoint, QPointF, QRectF, Qt, QUrl, pyqtSignal, QObject
from PyQt6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen, QPolygonF
from PyQt6.QtWidgets import (
    QApplication, QFrame, QHBoxLayout, QLabel, QScrollArea, QScrollBar, QSizePolicy, QToolButton,
    QVBoxLayout, QWidget,
)

from plugin_bridge.errors import PluginBridgeError
from plugin_bridge.gui.waveform import BLOCK0, OverviewCache, read_samples, sample_envelope

HEADER_W = 210
SOURCE_H = 88
STEM_H = 62
RULER_H = 28
END_MARGIN = 1.02   # the timeline runs 2 % past the end of the longest track (Fit shows exactly that)

BG = QColor("#1e2127")
LANE_BG = QColor("#262a31")
LANE_BG_ALT = QColor("#23262d")
GRID = QColor("#343943")
TEXT = QColor("#d7dae0")
DIM = QColor("#8a919c")
PLAYHEAD = QColor("#ff5a4e")
SELECTION = QColor(255, 255, 255, 40)
LOOP = QColor(255, 210, 80, 22)


def fmt_time(seconds: float, precise: bool = True) -> str:
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if precise:
        return f"{sign}{int(h):02d}:{int(m):02d}:{sec:06.3f}" if h else f"{sign}{int(m):02d}:{sec:06.3f}"
    return f"{sign}{int(h)}:{int(m):02d}:{int(sec):02d}" if h else f"{sign}{int(m)}:{int(sec):02d}"


def stem_complete(session, track_id: str) -> bool:
    """True when the lane's file can be used: the track exists, its render (if it has a stem record)
    finished, and the file is on disk."""
    if session is None:
        return False
    try:
        t = session.track(track_id)
    except PluginBridgeError:
        return False
    st = next((st for st in session.stems if st.track_id == track_id), None)
    return (st is None or st.complete) and os.path.isfile(t.path)


def stem_file(session, track_id: str) -> str | None:
    """The lane's file when ``stem_complete``, else None."""
    return session.track(track_id).path if stem_complete(session, track_id) else None


def mime_for_files(paths: list[str]) -> QMimeData:
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(os.path.abspath(p)) for p in paths])
    md.setText("\n".join(os.path.abspath(p) for p in paths))
    return md


class TimeAxis(QObject):
    """Shared view state: frames per pixel, first visible frame, playhead, selection, loop."""

    changed = pyqtSignal()
    playheadMoved = pyqtSignal(int)

    MIN_FPP = 1.0 / 16     # 16 px per sample at most
    MAX_FPP = 48000 * 30   # 30 s per pixel at least

    def __init__(self, rate: int = 48000):
        super().__init__()
        self.rate = rate
        self.fpp = rate / 100.0   # 100 px per second
        self.origin = 0.0
        self.length = rate * 10
        self.view_px = 800
        self.playhead = 0
        self.loop: tuple[int, int] | None = None
        self.selection: tuple[str, int, int] | None = None   # (track id, start, end) being dragged

    def x_of(self, frame: float) -> float:
        return (frame - self.origin) / self.fpp

    def frame_at(self, x: float) -> int:
        return int(round(self.origin + x * self.fpp))

    def set_length(self, frames: int) -> None:
        self.length = max(int(frames), self.rate)
        self.clamp()
        self.changed.emit()

    def clamp(self) -> None:
        self.fpp = min(max(self.fpp, self.MIN_FPP), self.MAX_FPP)
        max_origin = max(0.0, self.length * END_MARGIN - self.view_px * self.fpp)
        self.origin = min(max(self.origin, 0.0), max_origin)

    def zoom(self, factor: float, anchor_x: float | None = None) -> None:
        """factor > 1 zooms in; the frame under ``anchor_x`` (default: playhead if visible, else centre) stays put."""
        if anchor_x is None:
            px = self.x_of(self.playhead)
            anchor_x = px if 0 <= px <= self.view_px else self.view_px / 2
        f = self.origin + anchor_x * self.fpp
        self.fpp /= factor
        self.fpp = min(max(self.fpp, self.MIN_FPP), self.MAX_FPP)
        self.origin = f - anchor_x * self.fpp
        self.clamp()
        self.changed.emit()

    def scroll_px(self, dx: float) -> None:
        self.origin += dx * self.fpp
        self.clamp()
        self.changed.emit()

    def fit(self) -> None:
        self.fpp = max(self.length * END_MARGIN / max(self.view_px, 1), self.MIN_FPP)
        self.origin = 0.0
        self.clamp()
        self.changed.emit()

    def show_range(self, start: int, end: int) -> None:
        span = max(end - start, 1)
        self.fpp = span * 1.1 / max(self.view_px, 1)
        self.origin = start - span * 0.05
        self.clamp()
        self.changed.emit()

    def set_playhead(self, frame: int, follow: bool = False) -> None:
        self.playhead = max(0, int(frame))
        if follow:
            x = self.x_of(self.playhead)
            if x > self.view_px * 0.95 or x < 0:
                self.origin = self.playhead - self.view_px * 0.05 * self.fpp
                self.clamp()
                self.changed.emit()
        self.playheadMoved.emit(self.playhead)

    def tick_step(self, min_px: float = 80) -> float:
        """Seconds between labelled ticks so that labels are at least ``min_px`` apart."""
        sec_per_px = self.fpp / self.rate
        target = sec_per_px * min_px
        for step in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600,
                     900, 1800, 3600, 7200):
            if step >= target:
                return step
        return 7200.0


class Ruler(QWidget):
    seekRequested = pyqtSignal(int)

    def __init__(self, axis: TimeAxis, parent=None):
        super().__init__(parent)
        self.axis = axis
        self.setFixedHeight(RULER_H)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        axis.changed.connect(self.update)
        axis.playheadMoved.connect(lambda _f: self.update())

    def paintEvent(self, ev):
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#181b20"))
        ax = self.axis
        step = ax.tick_step()
        rate = ax.rate
        t0 = ax.origin / rate
        t1 = (ax.origin + self.width() * ax.fpp) / rate
        p.setFont(QFont(self.font().family(), 8))
        fm = QFontMetrics(p.font())
        k = math.floor(t0 / step)
        precise = step < 1
        while k * step <= t1:
            t = k * step
            x = ax.x_of(t * rate)
            p.setPen(QPen(DIM))
            p.drawLine(int(x), self.height() - 10, int(x), self.height())
            if step >= 1 and step < 60:
                label = fmt_time(t, False)
            elif precise:
                label = f"{t:.3f}".rstrip("0").rstrip(".") + " s" if t < 60 else fmt_time(t)
            else:
                label = fmt_time(t, False)
            if x + 3 + fm.horizontalAdvance(label) <= self.width():   # no label cut at the right edge
                p.setPen(QPen(TEXT))
                p.drawText(int(x) + 3, 12, label)
            for j in range(1, 4):  # minor ticks
                xm = ax.x_of((t + j * step / 4) * rate)
                p.setPen(QPen(GRID))
                p.drawLine(int(xm), self.height() - 5, int(xm), self.height())
            k += 1
        if ax.loop:
            a, b = ax.x_of(ax.loop[0]), ax.x_of(ax.loop[1])
            p.fillRect(QRectF(a, 0, b - a, self.height()), QColor(255, 210, 80, 70))
        x = ax.x_of(ax.playhead)
        p.setPen(QPen(PLAYHEAD, 1))
        p.setBrush(PLAYHEAD)
        p.drawPolygon(QPolygonF([QPointF(x - 5, self.height() - 9), QPointF(x + 5, self.height() - 9),
                                 QPointF(x, self.height())]))
        p.end()

    def mousePressEvent(self, ev):
        if ev.button() == Qt.MouseButton.LeftButton:
            self.seekRequested.emit(self.axis.frame_at(ev.position().x()))

    def mouseMoveEvent(self, ev):
        if ev.buttons() & Qt.MouseButton.LeftButton:
            self.seekRequested.emit(self.axis.frame_at(ev.position().x()))

    def wheelEvent(self, ev):
        _wheel(self.axis, ev, force_zoom=True)


def _wheel(axis: TimeAxis, ev, force_zoom: bool = False) -> bool:
    """Handle zoom / horizontal scroll; returns False when the event should scroll vertically."""
    mods = ev.modifiers()
    dy = ev.angleDelta().y()
    dx = ev.angleDelta().x()
    if mods & Qt.KeyboardModifier.ControlModifier or (force_zoom and dy):
        axis.zoom(1.25 ** (dy / 120.0), ev.position().x())
        ev.accept()
        return True
    if mods & Qt.KeyboardModifier.ShiftModifier or dx:
        axis.scroll_px(-(dx or dy) / 120.0 * 60)
        ev.accept()
        return True
    ev.ignore()
    return False


class LaneView(QWidget):
    """Waveform of one track, with its regions, the selection being dragged, loop and playhead.

    It shows ``session`` (read only), ``audible`` (drawn dimmed when False) and ``current_region``
    (highlighted); edits leave as signals."""

    regionDrawn = pyqtSignal(str, int, int)   # track id, start, end (session frames)
    regionClicked = pyqtSignal(str)           # region id
    regionMoved = pyqtSignal(str, int)        # region id, new start (a drag inside the region)
    regionResized = pyqtSignal(str, int, int)  # region id, start, end (a drag of one of its edges)
    seekRequested = pyqtSignal(int)
    contextMenuRequested = pyqtSignal(str, QPoint)   # track id, global position
    dragRequested = pyqtSignal(str, object)          # track id, the widget the drag starts from

    def __init__(self, axis: TimeAxis, overviews: OverviewCache, track, session=None, parent=None):
        super().__init__(parent)
        self.track = track
        self.axis = axis
        self.overviews = overviews
        self.session = session
        self.audible = True
        self.current_region: str | None = None
        # a click on the timeline takes the keyboard focus from a query field, so Space plays again
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumWidth(50)
        self._press: QPoint | None = None
        self._press_frame = 0
        self._dragging = False
        # editing an existing region by mouse: (mode, region id, start, end at press); mode is
        # "move", "start" or "end".  The edit is previewed in _preview and committed once on release.
        self._grab: tuple[str, str, int, int] | None = None
        self._preview: tuple[str, int, int] | None = None
        self.setMouseTracking(True)  # hover cursor over regions and their edges
        self._samples_cache: tuple | None = None
        self.axis.changed.connect(self.update)
        self.axis.playheadMoved.connect(self._playhead_moved)
        self._last_ph_x = None

    def _playhead_moved(self, frame: int):
        x = int(self.axis.x_of(frame))
        if self._last_ph_x is not None:
            self.update(self._last_ph_x - 2, 0, 5, self.height())
        self.update(x - 2, 0, 5, self.height())
        self._last_ph_x = x

    @property
    def is_stem(self) -> bool:
        return self.track.kind in ("stem", "residual")

    def colour(self) -> QColor:
        c = QColor(self.track.colour or "#4aa3ff")
        if self.track.kind == "residual":
            c = QColor("#9aa0a8")
        return c

    # -- painting ---------------------------------------------------------------------------------
    def paintEvent(self, ev):
        p = QPainter(self)
        r = self.rect()
        w, h = r.width(), r.height()
        t = self.track
        s = self.session
        muted = not self.audible
        p.fillRect(r, LANE_BG if t.kind == "source" else LANE_BG_ALT)
        ax = self.axis
        # grid lines at ruler ticks
        step = ax.tick_step()
        k = math.floor(ax.origin / ax.rate / step)
        p.setPen(QPen(GRID))
        while True:
            x = ax.x_of(k * step * ax.rate)
            if x > w:
                break
            p.drawLine(int(x), 0, int(x), h)
            k += 1
        # loop
        if ax.loop:
            a, b = ax.x_of(ax.loop[0]), ax.x_of(ax.loop[1])
            p.fillRect(QRectF(a, 0, b - a, h), LOOP)
        # regions on this track
        if s is not None:
            sel_region = self.current_region
            for reg in s.regions_on(t.id):
                start, end = reg.start, reg.end
                if self._preview and self._preview[0] == reg.id:
                    start, end = self._preview[1], self._preview[2]
                a, b = ax.x_of(start), ax.x_of(end)
                if b < 0 or a > w:
                    continue
                selected = reg.id == sel_region
                fill = QColor(255, 255, 255, 38 if selected else 18)
                p.fillRect(QRectF(a, 0, b - a, h), fill)
                p.setPen(QPen(QColor("#ffd166") if selected else QColor(255, 255, 255, 90), 1.5 if selected else 1))
                p.drawRect(QRectF(a, 0.5, b - a, h - 1))
                p.setPen(QPen(TEXT))
                p.setFont(QFont(self.font().family(), 8))
                label = reg.name or "region"
                if reg.queries:
                    label += ": " + ", ".join(q.display for q in reg.queries)
                fm = QFontMetrics(p.font())
                p.drawText(QRectF(a + 4, 2, max(b - a - 8, 0), 14), Qt.AlignmentFlag.AlignLeft,
                           fm.elidedText(label, Qt.TextElideMode.ElideRight, int(max(b - a - 8, 0))))
        # waveform
        col = self.colour()
        if muted:
            col = QColor(col.red() // 2 + 40, col.green() // 2 + 40, col.blue() // 2 + 40)
        self._draw_wave(p, w, h, col)
        # selection being dragged
        sel = ax.selection
        if sel and sel[0] == t.id:
            a, b = ax.x_of(min(sel[1], sel[2])), ax.x_of(max(sel[1], sel[2]))
            p.fillRect(QRectF(a, 0, b - a, h), SELECTION)
            p.setPen(QPen(QColor("#ffffff"), 1, Qt.PenStyle.DashLine))
            p.drawRect(QRectF(a, 0.5, b - a, h - 1))
        # incomplete stem
        if self.is_stem and not stem_complete(s, t.id):
            p.setPen(QPen(DIM))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, "rendering...")
        # playhead
        x = ax.x_of(ax.playhead)
        if 0 <= x <= w:
            p.setPen(QPen(PLAYHEAD, 1))
            p.drawLine(int(x), 0, int(x), h)
        p.setPen(QPen(QColor("#111318")))
        p.drawLine(0, h - 1, w, h - 1)
        p.end()

    def _draw_wave(self, p: QPainter, w: int, h: int, col: QColor):
        """Three zoom regimes, each O(width) to draw: the overview's min/max envelope when a pixel
        covers >= BLOCK0/2 frames; below that, a min/max envelope computed from the samples
        themselves; at <= 2 frames per pixel, a line through the samples (with dots when very close)."""
        t = self.track
        s = self.session
        ax = self.axis
        mid = h / 2
        amp = (h / 2 - 3)
        srate = s.sample_rate if s else ax.rate
        frate = t.sample_rate or srate
        scale = frate / srate           # file frames per session frame
        f0 = (ax.origin - t.offset) * scale
        f1 = (ax.origin + w * ax.fpp - t.offset) * scale
        fpp_file = ax.fpp * scale
        if fpp_file < BLOCK0 / 2:
            # zoomed in past the overview: read the visible samples (a few hundred thousand at most)
            a, b = int(math.floor(f0)) - 1, int(math.ceil(f1)) + 2
            key = (t.path, a, b)
            if self._samples_cache is None or self._samples_cache[0] != key:
                try:
                    x = read_samples(t.path, a, b)
                    frames = t.frames if t.frames is not None else b
                    self._samples_cache = (key, x, frames)
                except Exception:
                    self._samples_cache = (key, None, 0)
            _, x, frames = self._samples_cache
            if x is None or not x.size:
                return
            if fpp_file > 2:
                mins, maxs = sample_envelope(x, a, f0, fpp_file, w, frames)
                self._draw_envelope(p, mins, maxs, mid, amp, col)
                return
            # one value per sample: the channel with the larger magnitude (keeps the sign)
            hi, lo = x.max(axis=0), x.min(axis=0)
            y = np.where(np.abs(lo) > np.abs(hi), lo, hi)
            n = np.arange(a, b)
            valid = (n >= 0) & (n < frames)
            xs = (n / scale + t.offset - ax.origin) / ax.fpp
            ys = mid - y * amp
            p.setPen(QPen(col, 1.3))
            p.setBrush(Qt.BrushStyle.NoBrush)
            for run in np.split(np.arange(len(n)), np.nonzero(np.diff(valid.astype(np.int8)))[0] + 1):
                if len(run) and valid[run[0]]:
                    p.drawPolyline(QPolygonF([QPointF(float(xs[i]), float(ys[i])) for i in run]))
            if ax.fpp < 1 / 4:  # individual sample dots
                p.setBrush(col)
                for i in np.nonzero(valid)[0]:
                    p.drawEllipse(QPointF(float(xs[i]), float(ys[i])), 2, 2)
            return
        ov = self.overviews.get(t.path)
        if ov is None:
            prog = self.overviews.progress(t.path)
            p.setPen(QPen(DIM))
            msg = "reading audio..." if prog is None else f"reading audio... {int(prog * 100)} %"
            if not os.path.exists(t.path):
                msg = f"missing file: {os.path.basename(t.path)}"
            p.drawText(QRectF(0, 0, w, h), Qt.AlignmentFlag.AlignCenter, msg)
            return
        mins, maxs = ov.envelope(f0, f1, w)
        self._draw_envelope(p, mins, maxs, mid, amp, col)

    @staticmethod
    def _draw_envelope(p: QPainter, mins: np.ndarray, maxs: np.ndarray, mid: float, amp: float, col: QColor):
        """Per-pixel (min, max) columns (NaN = no audio there) as filled polygons, one per run."""
        ok = ~np.isnan(mins)
        if not ok.any():
            return
        top = mid - np.nan_to_num(maxs) * amp
        bot = mid - np.nan_to_num(mins) * amp
        # make every column at least 1 px tall so silence still shows as a line
        bot = np.maximum(bot, top + 1)
        p.setPen(QPen(col, 1))
        idx = np.nonzero(ok)[0]
        breaks = np.nonzero(np.diff(idx) > 1)[0]
        starts = np.concatenate([[0], breaks + 1])
        ends = np.concatenate([breaks + 1, [len(idx)]])
        fill = QColor(col)
        fill.setAlpha(200)
        p.setBrush(fill)
        for s0, s1 in zip(starts, ends):
            cols = idx[s0:s1]
            pts = [QPointF(float(c), float(top[c])) for c in cols]
            pts += [QPointF(float(c) + 1, float(bot[c])) for c in cols[::-1]]
            p.drawPolygon(QPolygonF(pts))
        p.setPen(QPen(QColor(255, 255, 255, 30)))
        p.drawLine(int(idx[0]), int(mid), int(idx[-1]), int(mid))

    # -- mouse ------------------------------------------------------------------------------------
    EDGE_PX = 5

    def region_hit(self, x: float) -> tuple[str, str, int, int] | None:
        """What a press at pixel ``x`` would grab: ("start"|"end", id, start, end) within EDGE_PX of an
        edge (the nearest edge wins), ("move", ...) inside a region, else None.  Source lanes only."""
        s = self.session
        if s is None or self.is_stem:
            return None
        best = None
        for reg in s.regions_on(self.track.id):
            for mode, fr in (("start", reg.start), ("end", reg.end)):
                d = abs(self.axis.x_of(fr) - x)
                if d <= self.EDGE_PX and (best is None or d < best[0]):
                    best = (d, (mode, reg.id, reg.start, reg.end))
        if best:
            return best[1]
        f = self.axis.frame_at(x)
        for reg in s.regions_on(self.track.id):
            if reg.start <= f < reg.end:
                return ("move", reg.id, reg.start, reg.end)
        return None

    def _hover_cursor(self, x: float):
        hit = self.region_hit(x)
        if hit is None:
            self.unsetCursor()
        elif hit[0] == "move":
            self.setCursor(Qt.CursorShape.OpenHandCursor)
        else:
            self.setCursor(Qt.CursorShape.SizeHorCursor)

    def mousePressEvent(self, ev):
        if ev.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(ev)
        self._press = ev.position().toPoint()
        self._press_frame = self.axis.frame_at(ev.position().x())
        self._dragging = False
        self._grab = self.region_hit(ev.position().x())
        self._preview = None

    def mouseMoveEvent(self, ev):
        if self._press is None or not (ev.buttons() & Qt.MouseButton.LeftButton):
            self._hover_cursor(ev.position().x())
            return
        pos = ev.position().toPoint()
        if not self._dragging and (pos - self._press).manhattanLength() < QApplication.startDragDistance():
            return
        self._dragging = True
        if self.is_stem:
            self._press = None
            self.start_drag()
            return
        f = max(0, self.axis.frame_at(ev.position().x()))
        if self._grab is not None:
            mode, rid, a, b = self._grab
            delta = f - self._press_frame
            if mode == "move":
                self.setCursor(Qt.CursorShape.ClosedHandCursor)
                na = max(0, a + delta)
                self._preview = (rid, na, na + (b - a))
            elif mode == "start":
                self._preview = (rid, min(max(0, a + delta), b - 1), b)
            else:
                self._preview = (rid, a, max(a + 1, b + delta))
            self.update()
            return
        self.axis.selection = (self.track.id, self._press_frame, f)
        self.axis.changed.emit()

    def mouseReleaseEvent(self, ev):
        if self._press is None:
            return
        press_frame = self._press_frame
        self._press = None
        grab, preview = self._grab, self._preview
        self._grab = self._preview = None
        if self._dragging and grab is not None:
            self._hover_cursor(ev.position().x())
            if preview is not None and (preview[1], preview[2]) != (grab[2], grab[3]):
                if grab[0] == "move":
                    self.regionMoved.emit(grab[1], preview[1])
                else:
                    self.regionResized.emit(grab[1], preview[1], preview[2])
                self.regionClicked.emit(grab[1])
            self.update()
            return
        if self._dragging and self.axis.selection and self.axis.selection[0] == self.track.id:
            _, a, b = self.axis.selection
            self.axis.selection = None
            a, b = sorted((max(0, a), max(0, b)))
            if b > a:
                self.regionDrawn.emit(self.track.id, a, b)
            self.axis.changed.emit()
            return
        if not self._dragging:
            # click inside a region selects it; anywhere moves the playhead
            s = self.session
            if s is not None:
                for reg in s.regions_on(self.track.id):
                    if reg.start <= press_frame < reg.end:
                        self.regionClicked.emit(reg.id)
                        break
            self.seekRequested.emit(max(0, press_frame))

    def wheelEvent(self, ev):
        _wheel(self.axis, ev)

    def contextMenuEvent(self, ev):
        self.contextMenuRequested.emit(self.track.id, ev.globalPos())

    # -- drag out ---------------------------------------------------------------------------------
    def start_drag(self):
        """Ask for a real QDrag carrying the stem file's URL (the window starts it when the file is complete)."""
        self.dragRequested.emit(self.track.id, self)


class LaneHeader(QFrame):
    """Name, kind and format of a lane, its mute / solo buttons and (stems) the drag grip and menu."""

    muteToggled = pyqtSignal(str, bool)              # track id, on
    soloToggled = pyqtSignal(str, bool)
    contextMenuRequested = pyqtSignal(str, QPoint)   # track id, global position
    dragRequested = pyqtSignal(str, object)          # track id, the widget the drag starts from

    def __init__(self, track, session=None, parent=None):
        super().__init__(parent)
        self.track = track
        self.setFixedWidth(HEADER_W)
        self.setObjectName("laneHeader")
        self._press = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 4, 4, 4)
        lay.setSpacing(2)
        top = QHBoxLayout()
        top.setSpacing(4)
        indent = "    " if track.kind != "source" else ""
        self.name = QLabel()
        self.name.setObjectName("laneName")
        self.name.setToolTip(f"{track.name}\n{track.path}")
        fm = QFontMetrics(self.name.font())
        shown = track.name
        if track.parent_id and session is not None:
            try:
                pname = session.track(track.parent_id).name
                if shown.startswith(pname + " - "):
                    shown = "↳ " + shown[len(pname) + 3:]
            except PluginBridgeError:
                pass
        self.name.setText(fm.elidedText(shown, Qt.TextElideMode.ElideRight, HEADER_W - 90 - (14 if indent else 0)))
        top.addWidget(self.name, 1)
        self.mute = QToolButton(text="M")
        self.mute.setCheckable(True)
        self.mute.setChecked(track.mute)
        self.mute.setToolTip("Mute")
        self.mute.setObjectName("muteButton")
        self.solo = QToolButton(text="S")
        self.solo.setCheckable(True)
        self.solo.setChecked(track.solo)
        self.solo.setToolTip("Solo")
        self.solo.setObjectName("soloButton")
        for b in (self.mute, self.solo):
            b.setFixedSize(24, 22)
            top.addWidget(b)
        self.mute.clicked.connect(lambda on: self.muteToggled.emit(self.track.id, on))
        self.solo.clicked.connect(lambda on: self.soloToggled.emit(self.track.id, on))
        lay.addLayout(top)
        info = QHBoxLayout()
        kind = {"source": "", "stem": "stem", "residual": "residual"}[track.kind]
        s = session
        details = []
        if track.channels:
            details.append({1: "mono", 2: "stereo"}.get(track.channels, f"{track.channels} ch")
                           if track.kind == "source" else f"{track.channels} ch")
        if track.sample_rate and track.kind == "source":
            details.append(f"{track.sample_rate / 1000:g} kHz")
            if s is not None and track.sample_rate != s.sample_rate:
                details.append("(rate differs)")
        self.info = QLabel(" · ".join(([kind] if kind else []) + details))
        self.info.setObjectName("laneInfo")
        info.addWidget(self.info, 1)
        if track.kind != "source":
            self.grip = QToolButton(text="⇱ drag")
            self.grip.setToolTip("Drag the stem file into your DAW or a folder")
            self.grip.setObjectName("dragGrip")
            self.grip.setCursor(Qt.CursorShape.OpenHandCursor)
            self.grip.pressed.connect(lambda: self.dragRequested.emit(self.track.id, self.grip))
            info.addWidget(self.grip)
            self.menu_btn = QToolButton(text="⋯")
            self.menu_btn.setToolTip("Reveal, copy path, plugin chain...")
            self.menu_btn.clicked.connect(lambda: self.contextMenuRequested.emit(
                self.track.id, self.menu_btn.mapToGlobal(QPoint(0, self.menu_btn.height()))))
            info.addWidget(self.menu_btn)
        lay.addLayout(info)
        lay.addStretch(1)
        col = QColor(track.colour or "#4aa3ff") if track.kind != "residual" else QColor("#9aa0a8")
        self.setStyleSheet(f"#laneHeader {{ border-left: {6 if track.kind == 'source' else 4}px solid {col.name()}; "
                           f"margin-left: {0 if track.kind == 'source' else 14}px; }}")

    def contextMenuEvent(self, ev):
        self.contextMenuRequested.emit(self.track.id, ev.globalPos())

    def mousePressEvent(self, ev):
        if ev.button() == Qt.MouseButton.LeftButton:
            self._press = ev.position().toPoint()

    def mouseMoveEvent(self, ev):
        if (self._press is not None and self.track.kind != "source"
                and (ev.position().toPoint() - self._press).manhattanLength() >= QApplication.startDragDistance()):
            self._press = None
            self.dragRequested.emit(self.track.id, self)


class LaneRow(QWidget):
    def __init__(self, axis: TimeAxis, overviews: OverviewCache, track, session=None, parent=None):
        super().__init__(parent)
        self.track = track
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        self.header = LaneHeader(track, session)
        self.view = LaneView(axis, overviews, track, session)
        lay.addWidget(self.header)
        lay.addWidget(self.view, 1)
        self.setFixedHeight(SOURCE_H if track.kind == "source" else STEM_H)


class TimelineWidget(QWidget):
    """Ruler + scrollable lane rows + horizontal scroll bar.

    Shows what it is given (``set_session``, ``rebuild``, ``set_audible``, ``set_current_region``); its
    signals carry every lane's (and the ruler's) requests, so a user of the widget connects them once."""

    regionDrawn = pyqtSignal(str, int, int)          # track id, start, end (session frames)
    regionClicked = pyqtSignal(str)                  # region id
    regionMoved = pyqtSignal(str, int)               # region id, new start
    regionResized = pyqtSignal(str, int, int)        # region id, start, end
    seekRequested = pyqtSignal(int)                  # session frame (a click on a lane or the ruler)
    muteToggled = pyqtSignal(str, bool)              # track id, on
    soloToggled = pyqtSignal(str, bool)
    contextMenuRequested = pyqtSignal(str, QPoint)   # track id, global position
    dragRequested = pyqtSignal(str, object)          # track id, the widget the drag starts from

    def __init__(self, axis: TimeAxis, overviews: OverviewCache, parent=None):
        super().__init__(parent)
        self.axis = axis
        self.overviews = overviews
        self.session = None
        self.rows: dict[str, LaneRow] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        top = QHBoxLayout()
        top.setSpacing(0)
        self.corner = QLabel("  Tracks")
        self.corner.setFixedSize(HEADER_W, RULER_H)
        self.corner.setObjectName("rulerCorner")
        self.ruler = Ruler(self.axis)
        self.ruler.seekRequested.connect(self.seekRequested)
        top.addWidget(self.corner)
        top.addWidget(self.ruler, 1)
        lay.addLayout(top)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.inner = QWidget()
        self.inner.setObjectName("laneArea")
        self.vbox = QVBoxLayout(self.inner)
        self.vbox.setContentsMargins(0, 0, 0, 0)
        self.vbox.setSpacing(1)
        self.vbox.addStretch(1)
        self.placeholder = QLabel("Drop audio files, a folder, a session, a .dawproject or a .rpp here\n"
                                  "or use File ▸ Open")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setObjectName("placeholder")
        self.vbox.insertWidget(0, self.placeholder)
        self.scroll.setWidget(self.inner)
        lay.addWidget(self.scroll, 1)
        bottom = QHBoxLayout()
        sp = QWidget()
        sp.setFixedWidth(HEADER_W)
        self.hbar = QScrollBar(Qt.Orientation.Horizontal)
        bottom.addWidget(sp)
        bottom.addWidget(self.hbar, 1)
        lay.addLayout(bottom)
        self._syncing = False
        self.hbar.valueChanged.connect(self._bar_moved)
        self.axis.changed.connect(self._sync_bar)

    def _bar_moved(self, v):
        if self._syncing:
            return
        self.axis.origin = v * self.axis.fpp
        self.axis.clamp()
        self.axis.changed.emit()

    def _sync_bar(self):
        self._syncing = True
        ax = self.axis
        total_px = int(math.ceil(ax.length * END_MARGIN / ax.fpp))
        self.hbar.setRange(0, max(0, total_px - ax.view_px))
        self.hbar.setPageStep(ax.view_px)
        self.hbar.setSingleStep(max(ax.view_px // 20, 1))
        self.hbar.setValue(int(ax.origin / ax.fpp))
        self._syncing = False

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        self.axis.view_px = max(self.ruler.width(), 100)
        self.axis.clamp()
        self._sync_bar()

    def set_session(self, session) -> None:
        """The session the lanes read (regions, sample rates, stem records); ``rebuild`` makes the rows."""
        if session is self.session:
            return
        self.session = session
        for row in self.rows.values():
            row.view.session = session
            row.view.update()

    def set_audible(self, track_ids) -> None:
        """The lanes that sound (the others are drawn dimmed)."""
        for tid, row in self.rows.items():
            on = tid in track_ids
            if row.view.audible != on:
                row.view.audible = on
                row.view.update()

    def set_current_region(self, region_id: str | None) -> None:
        """The region drawn as selected."""
        for row in self.rows.values():
            if row.view.current_region != region_id:
                row.view.current_region = region_id
                row.view.update()

    def rebuild(self, tracks):
        """Re-create the rows (tracks, in order).  Cheap: widgets only; waveforms come from the cache."""
        for row in self.rows.values():
            row.setParent(None)
            row.deleteLater()
        self.rows = {}
        self.placeholder.setVisible(not tracks)
        for i, t in enumerate(tracks):
            row = LaneRow(self.axis, self.overviews, t, self.session)
            for sig in ("regionDrawn", "regionClicked", "regionMoved", "regionResized", "seekRequested",
                        "contextMenuRequested", "dragRequested"):
                getattr(row.view, sig).connect(getattr(self, sig))
            for sig in ("muteToggled", "soloToggled", "contextMenuRequested", "dragRequested"):
                getattr(row.header, sig).connect(getattr(self, sig))
            self.vbox.insertWidget(i, row)
            self.rows[t.id] = row
        self.axis.view_px = max(self.ruler.width(), 100)

    def wheelEvent(self, ev):
        if not _wheel(self.axis, ev):
            super().wheelEvent(ev)
