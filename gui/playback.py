"""Real-time preview: a sounddevice OutputStream whose callback mixes the audible lanes live.

Design (the callback must never stall, even while a render job keeps the CPU busy):

* Every lane is a *source* that can copy the frames of any timeline range into a caller's buffer:
  ``ArraySource`` holds the whole file in memory (at the session rate, output channel layout);
  ``StreamSource`` serves from a ring buffer that a feeder thread keeps ~2 s ahead of the playhead
  (a loop's first second is kept in a separate head buffer, so a loop wraps without a gap).
  Small files are pre-loaded in a background thread; until then (and for long files) they stream.
* The callback reads one immutable *mix plan* (sources + linear gains, swapped atomically when the
  user mutes, solos or switches A/B), copies each audible source's frames into a pre-allocated
  scratch buffer and accumulates them in place.  No file I/O, no locks, no array allocation.
* Mute/solo/A/B therefore act within one audio block; seek and loop are picked up at the next block.

No Qt in this module; the GUI polls ``position`` with a timer.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["LaneSpec", "ArraySource", "StreamSource", "PlaybackEngine", "PlaybackError", "compute_gains",
           "MONITOR_MODES", "load_array", "list_output_devices"]

from plugin_bridge.audio_io import open_audio
from plugin_bridge.errors import PluginBridgeError

MONITOR_MODES = ("mix", "original", "stems", "residual")
PRELOAD_MAX_SECONDS = 60 * 10            # per source: files up to 10 min are held in memory
PRELOAD_BUDGET_BYTES = 1 << 30            # all pre-loaded sources together
RING_SECONDS = 2.0
HEAD_SECONDS = 1.0
FEED_CHUNK = 8192
MAX_BLOCK = 16384


class PlaybackError(PluginBridgeError):
    """The audio output cannot be used (no device, unsupported rate...)."""


@dataclass
class LaneSpec:
    id: str
    path: str
    kind: str = "source"          # "source" | "stem" | "residual"
    offset: int = 0               # session frame where the file starts
    gain_db: float = 0.0
    mute: bool = False
    solo: bool = False


def compute_gains(lanes: list[LaneSpec], monitor: str = "mix") -> dict[str, float]:
    """Linear gain per lane id.  ``mix``: what the session plays (mute and solo respected).  A/B modes
    ``original`` / ``stems`` / ``residual`` play only lanes of that kind (mute ignored, solo among
    them respected), so the user can flip between the source and what was extracted from it."""
    if monitor not in MONITOR_MODES:
        raise ValueError(f"unknown monitor mode {monitor!r}")
    kind = {"original": "source", "stems": "stem", "residual": "residual"}.get(monitor)
    considered = [l for l in lanes if kind is None or l.kind == kind]
    any_solo = any(l.solo for l in considered)
    out = {l.id: 0.0 for l in lanes}
    for l in considered:
        if kind is None and l.mute:
            continue
        if any_solo and not l.solo:
            continue
        out[l.id] = float(10.0 ** (l.gain_db / 20.0))
    return out


def _fit_channels(x: np.ndarray, out_ch: int) -> np.ndarray:
    """(C, n) -> (n, out_ch) float32: mono is copied to every output, extra channels are dropped
    (stereo to mono is averaged)."""
    c = x.shape[0]
    if c == out_ch:
        y = x
    elif c == 1:
        y = np.repeat(x, out_ch, axis=0)
    elif out_ch == 1:
        y = x.mean(axis=0, keepdims=True)
    elif c > out_ch:
        y = x[:out_ch]
    else:
        y = np.concatenate([x, np.repeat(x[-1:], out_ch - c, axis=0)], axis=0)
    return np.ascontiguousarray(y.T, dtype=np.float32)


class _Reader:
    """Seekable reader at the session rate (resampling on the fly when the file's rate differs)."""

    def __init__(self, path: str, rate: int):
        self._f = open_audio(path)
        self.file_rate = int(round(self._f.samplerate))
        self.channels = int(self._f.num_channels)
        self.rate = rate
        if self.file_rate != rate:
            self._r = self._f.resampled_to(float(rate))
            self.frames = int(round(self._f.frames * rate / self.file_rate))
        else:
            self._r = self._f
            self.frames = int(self._f.frames)

    def read(self, start: int, n: int) -> np.ndarray:
        """(C, m) frames from ``start``; m < n only at the end of the file."""
        start = max(0, start)
        n = max(0, min(n, self.frames - start))
        if n == 0:
            return np.zeros((self.channels, 0), np.float32)
        if self._r.tell() != start:
            self._r.seek(start)
        x = self._r.read(n)
        return x

    def close(self):
        try:
            self._f.close()
        except Exception:
            pass


def load_array(path: str, rate: int, out_ch: int) -> np.ndarray:
    """Whole file at ``rate`` as (frames, out_ch) float32."""
    r = _Reader(path, rate)
    try:
        parts, pos = [], 0
        while pos < r.frames:
            x = r.read(pos, 1 << 20)
            if x.shape[1] == 0:
                break
            parts.append(_fit_channels(x, out_ch))
            pos += x.shape[1]
        data = np.concatenate(parts) if parts else np.zeros((0, out_ch), np.float32)
        if data.shape[0] < r.frames:  # resamplers may deliver a frame short: keep the nominal length
            data = np.concatenate([data, np.zeros((r.frames - data.shape[0], out_ch), np.float32)])
        return np.ascontiguousarray(data[:r.frames])
    finally:
        r.close()


class ArraySource:
    streamed = False

    def __init__(self, data: np.ndarray, offset: int = 0):
        self.data = data
        self.offset = offset
        self.frames = data.shape[0]

    def read_into(self, pos: int, n: int, out: np.ndarray) -> bool:
        """Copy timeline frames [pos, pos+n) into out[:n]; zeros where the lane has no audio."""
        a = pos - self.offset
        b = a + n
        i0, i1 = max(a, 0), min(b, self.frames)
        if i1 <= i0:
            out[:n] = 0.0
            return True
        if i0 > a:
            out[:i0 - a] = 0.0
        out[i0 - a:i1 - a] = self.data[i0:i1]
        if i1 < b:
            out[i1 - a:n] = 0.0
        return True


class StreamSource:
    """Frames served from a ring that the feeder fills ahead of the playhead."""

    streamed = True

    def __init__(self, path: str, rate: int, out_ch: int, offset: int = 0):
        self.reader = _Reader(path, rate)
        self.offset = offset
        self.frames = self.reader.frames
        self.out_ch = out_ch
        self.size = max(int(RING_SECONDS * rate), FEED_CHUNK * 4)
        self.ring = np.zeros((self.size, out_ch), np.float32)
        self.window = (0, 0)                # file frames [lo, hi) present in the ring
        self.head: tuple[int, np.ndarray] | None = None   # (file frame, (n, out_ch)) of the loop start
        self.lock = threading.Lock()        # feeder-side only (never taken by the callback)

    # callback side -------------------------------------------------------------------------------
    def read_into(self, pos: int, n: int, out: np.ndarray) -> bool:
        a = pos - self.offset
        b = a + n
        if b <= 0 or a >= self.frames:
            out[:n] = 0.0
            return True
        lo, hi = self.window
        i0, i1 = max(a, 0), min(b, self.frames)
        if not (lo <= i0 and i1 <= hi):
            head = self.head
            if head is not None and head[0] <= i0 and i1 <= head[0] + head[1].shape[0]:
                out[:n] = 0.0
                out[i0 - a:i1 - a] = head[1][i0 - head[0]:i1 - head[0]]
                return True
            out[:n] = 0.0
            return False                    # underrun: the feeder has not caught up
        out[:n] = 0.0
        s0, s1 = i0 % self.size, (i0 % self.size) + (i1 - i0)
        if s1 <= self.size:
            out[i0 - a:i1 - a] = self.ring[s0:s1]
        else:
            k = self.size - s0
            out[i0 - a:i0 - a + k] = self.ring[s0:]
            out[i0 - a + k:i1 - a] = self.ring[:s1 - self.size]
        return True

    # feeder side ---------------------------------------------------------------------------------
    def fill(self, play_pos: int, stop_at: int | None = None, max_frames: int | None = None) -> int:
        """Top the ring up for a playhead at timeline frame ``play_pos``; returns frames read."""
        with self.lock:
            want = max(play_pos - self.offset, 0)
            lo, hi = self.window
            if not (lo <= want <= hi):
                lo = hi = min(want, self.frames)
                self.window = (hi, hi)
            end = self.frames if stop_at is None else min(self.frames, max(stop_at - self.offset, 0))
            limit = want + self.size - 1             # never overwrite frames not yet played
            total = 0
            budget = self.size if max_frames is None else max_frames
            while hi < min(end, limit) and total < budget:
                n = min(FEED_CHUNK, end - hi, limit - hi, budget - total)
                x = self.reader.read(hi, n)
                m = x.shape[1]
                if m == 0:
                    break
                y = _fit_channels(x, self.out_ch)
                s0 = hi % self.size
                k = min(m, self.size - s0)
                self.ring[s0:s0 + k] = y[:k]
                if m > k:
                    self.ring[:m - k] = y[k:]
                hi += m
                total += m
                lo = max(lo, hi - self.size + 1)
                self.window = (lo, hi)
            return total

    def set_head(self, loop_start: int | None, loop_end: int | None) -> None:
        if loop_start is None:
            self.head = None
            return
        a = max(loop_start - self.offset, 0)
        b = min(a + int(HEAD_SECONDS * self.reader.rate), self.frames, max(loop_end - self.offset, 0))
        if b <= a:
            self.head = None
            return
        with self.lock:
            x = self.reader.read(a, b - a)
        self.head = (a, _fit_channels(x, self.out_ch))

    def close(self):
        self.reader.close()


def list_output_devices() -> list[tuple[int, str]]:
    """(index, "name (host API)") of every device with output channels; [] when PortAudio is absent."""
    try:
        import sounddevice as sd

        apis = sd.query_hostapis()
        return [(i, f"{d['name']} ({apis[d['hostapi']]['name']})") for i, d in enumerate(sd.query_devices())
                if d["max_output_channels"] > 0]
    except Exception:
        return []


@dataclass
class _Plan:
    sources: tuple = ()
    gains: tuple = ()


@dataclass
class PlaybackStats:
    callbacks: int = 0
    frames: int = 0
    underruns: int = 0
    status_flags: int = 0
    max_callback_s: float = 0.0
    first_audio_latency_s: float | None = None   # play() -> first callback that delivered audio
    open_s: float | None = None                  # time to open + start the stream


class PlaybackEngine:
    def __init__(self, sample_rate: int = 48000, channels: int = 2, device=None, blocksize: int = 512):
        self.rate = int(sample_rate)
        self.channels = int(channels)
        self.device = device
        self.blocksize = blocksize
        self._lanes: dict[str, LaneSpec] = {}
        self._sources: dict[str, object] = {}
        self._monitor = "mix"
        self._plan = _Plan()
        self._pos = 0
        self._seek_to: int | None = None
        self._loop: tuple[int, int] | None = None
        self._loop_enabled = False
        self._end = 0
        self._playing = False
        self._ended = False
        self._stream = None
        self._mix = np.zeros((MAX_BLOCK, self.channels), np.float32)
        self._tmp = np.zeros((MAX_BLOCK, self.channels), np.float32)
        self.stats = PlaybackStats()
        self._play_t0 = 0.0
        self._wake = threading.Event()
        self._quit = threading.Event()
        self._feeder = threading.Thread(target=self._feed_loop, name="playback-feeder", daemon=True)
        self._feeder.start()
        self._loader_lock = threading.Lock()
        self.errors: list[str] = []

    # -- lanes -----------------------------------------------------------------------------------
    def set_lanes(self, lanes: list[LaneSpec], preload: bool = True, wait: bool = False) -> None:
        """Replace the lane set (keeps sources of unchanged files; opens new ones; starts pre-loading)."""
        new_sources = {}
        to_load = []
        for l in lanes:
            old = self._lanes.get(l.id)
            src = self._sources.get(l.id)
            if src is not None and old is not None and old.path == l.path:
                src.offset = l.offset
                new_sources[l.id] = src
                continue
            try:
                s = StreamSource(l.path, self.rate, self.channels, l.offset)
            except Exception as exc:
                self.errors.append(f"{l.path}: {exc}")
                continue
            new_sources[l.id] = s
            if preload and s.frames <= PRELOAD_MAX_SECONDS * self.rate:
                to_load.append(l)
        for lid, src in self._sources.items():
            if lid not in new_sources and isinstance(src, StreamSource):
                src.close()
        self._lanes = {l.id: l for l in lanes}
        self._sources = new_sources
        self._end = max([s.offset + s.frames for s in new_sources.values()] or [0])
        self._rebuild_plan()
        if to_load:
            t = threading.Thread(target=self._preload, args=(to_load,), name="playback-preload", daemon=True)
            t.start()
            if wait:
                t.join()

    def update_lane(self, lane_id: str, **changes) -> None:
        l = self._lanes.get(lane_id)
        if l is None:
            return
        for k, v in changes.items():
            setattr(l, k, v)
        self._rebuild_plan()

    def _preload(self, lanes: list[LaneSpec]) -> None:
        for l in lanes:
            with self._loader_lock:
                need = self._sources.get(l.id)
                if need is None or not need.streamed:
                    continue
                nbytes = need.frames * self.channels * 4
                held = sum(s.data.nbytes for s in list(self._sources.values()) if isinstance(s, ArraySource))
                if held + nbytes > PRELOAD_BUDGET_BYTES:
                    continue
                try:
                    data = load_array(l.path, self.rate, self.channels)
                except Exception as exc:
                    self.errors.append(f"{l.path}: {exc}")
                    continue
                cur = self._sources.get(l.id)
                if cur is need:
                    self._sources[l.id] = ArraySource(data, cur.offset)
                    self._rebuild_plan()
                    cur.close()

    @property
    def monitor(self) -> str:
        return self._monitor

    def set_monitor(self, mode: str) -> None:
        if mode not in MONITOR_MODES:
            raise ValueError(f"unknown monitor mode {mode!r}")
        self._monitor = mode
        self._rebuild_plan()

    def gains(self) -> dict[str, float]:
        return compute_gains(list(self._lanes.values()), self._monitor)

    def _rebuild_plan(self) -> None:
        g = self.gains()
        pairs = [(self._sources[i], g[i]) for i in self._lanes if i in self._sources and g.get(i, 0.0) != 0.0]
        self._plan = _Plan(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))  # atomic swap
        self._wake.set()

    # -- transport -------------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def position(self) -> int:
        return self._pos if self._seek_to is None else self._seek_to

    @property
    def end(self) -> int:
        return self._end

    def seek(self, frame: int) -> None:
        frame = max(0, int(frame))
        if self._playing:
            self._seek_to = frame
            self._prefill(frame)
        else:
            self._pos = frame
        self._wake.set()

    def set_loop(self, start: int | None, end: int | None, enabled: bool = True) -> None:
        if start is None or end is None or end <= start:
            self._loop = None
        else:
            self._loop = (int(start), int(end))
        self._loop_enabled = bool(enabled) and self._loop is not None
        for s in list(self._sources.values()):
            if isinstance(s, StreamSource):
                s.set_head(*(self._loop if self._loop_enabled else (None, None)))
        self._wake.set()

    @property
    def loop(self) -> tuple[int, int] | None:
        return self._loop if self._loop_enabled else None

    def _prefill(self, pos: int) -> None:
        stop = self._loop[1] if self._loop_enabled and self._loop and pos < self._loop[1] else None
        for s in list(self._sources.values()):
            if isinstance(s, StreamSource):
                s.fill(pos, stop)

    def play(self) -> None:
        """Start output at the current position (or the loop start when the playhead is outside an
        enabled loop).  Raises PlaybackError when no output device can be opened."""
        if self._playing:
            return
        pos = self.position
        if self._loop_enabled and self._loop and not (self._loop[0] <= pos < self._loop[1]):
            pos = self._loop[0]
        if not self._loop_enabled and pos >= self._end:
            pos = 0
        self._pos, self._seek_to = pos, None
        self._ended = False
        self._play_t0 = time.perf_counter()
        self.stats.first_audio_latency_s = None
        self._prefill(pos)
        self._playing = True
        try:
            import sounddevice as sd
        except OSError as exc:
            self._playing = False
            raise PlaybackError(f"audio output is unavailable: {exc} (install PortAudio: libportaudio2)") from None
        try:
            t = time.perf_counter()
            self._stream = sd.OutputStream(samplerate=self.rate, channels=self.channels, dtype="float32",
                                           callback=self._callback, blocksize=self.blocksize,
                                           device=self.device, latency="low",
                                           finished_callback=self._finished)
            self._stream.start()
            self.stats.open_s = time.perf_counter() - t
        except Exception as exc:
            self._playing = False
            self._stream = None
            dev = "the default output" if self.device is None else f"output device {self.device}"
            raise PlaybackError(f"cannot play through {dev} at {self.rate} Hz: {exc}") from None
        self._wake.set()

    def stop(self) -> None:
        self._playing = False
        st, self._stream = self._stream, None
        if st is not None:
            try:
                st.abort()
                st.close()
            except Exception:
                pass
        if self._seek_to is not None:
            self._pos, self._seek_to = self._seek_to, None

    @property
    def ended(self) -> bool:
        return self._ended

    def close(self) -> None:
        self.stop()
        self._quit.set()
        self._wake.set()
        for s in self._sources.values():
            if isinstance(s, StreamSource):
                s.close()

    def _finished(self) -> None:
        self._playing = False

    # -- audio thread ----------------------------------------------------------------------------
    def _callback(self, outdata, frames, time_info, status) -> None:
        t0 = time.perf_counter()
        st = self.stats
        if status:
            st.status_flags += 1
        if not self._playing or frames > MAX_BLOCK:
            outdata.fill(0)
            return
        seek = self._seek_to
        if seek is not None:
            self._pos = seek
            self._seek_to = None
        pos = self._pos
        plan = self._plan
        loop = self._loop if self._loop_enabled else None
        mix = self._mix[:frames]
        mix.fill(0.0)
        tmp = self._tmp
        done = 0
        audible = False
        while done < frames:
            n = frames - done
            if loop is not None and pos < loop[1]:
                n = min(n, loop[1] - pos)
            if loop is None and pos >= self._end:
                self._ended = True
                break
            seg = tmp[:n]
            for src, g in zip(plan.sources, plan.gains):
                if not src.read_into(pos, n, seg):
                    st.underruns += 1
                np.multiply(seg, g, out=seg)
                dst = mix[done:done + n]
                np.add(dst, seg, out=dst)
                audible = True
            pos += n
            done += n
            if loop is not None and pos >= loop[1]:
                pos = loop[0]
        outdata[:] = mix
        if self._seek_to is None:
            self._pos = pos
        st.callbacks += 1
        st.frames += frames
        if audible and st.first_audio_latency_s is None:
            st.first_audio_latency_s = t0 - self._play_t0
        dt = time.perf_counter() - t0
        if dt > st.max_callback_s:
            st.max_callback_s = dt

    # -- feeder thread ---------------------------------------------------------------------------
    def _feed_loop(self) -> None:
        while not self._quit.is_set():
            self._wake.wait(0.01)
            self._wake.clear()
            if not self._playing:
                continue
            pos = self.position
            loop = self._loop if self._loop_enabled else None
            stop = loop[1] if loop and pos < loop[1] else None
            for s in list(self._sources.values()):
                if isinstance(s, StreamSource):
                    try:
                        s.fill(pos, stop, max_frames=FEED_CHUNK * 4)
                    except Exception as exc:  # a file vanished mid-play: silence, reported once
                        msg = f"playback read failed: {exc}"
                        if msg not in self.errors:
                            self.errors.append(msg)
