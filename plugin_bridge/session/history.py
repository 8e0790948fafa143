"""Undo/redo for every session edit, a dirty flag, change notifications, and crash-recovery autosave.

All edits of a session go through a ``History`` (command pattern).  Each public edit method validates
its input first (``SessionError`` naming the field, nothing changed on error), then applies one
``Command`` made of small reversible primitives (insert / remove / set attribute) that store deep
copies of what they replace, so undo restores the exact previous objects.

Notifications are plain callbacks ``cb(change: Change)``; no Qt.  They run on the thread that made the
edit (a render finishing in the ``JobQueue`` worker thread notifies from that thread; a Qt GUI should
forward them to its main thread with a queued signal).

Undoing a render removes its stem tracks and stem records from the session but leaves the files on
disk (redo needs them).
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from plugin_bridge.document import read_json
from plugin_bridge.paths import data_dir
from plugin_bridge.session import shape
from plugin_bridge.session.model import (
    TRACK_FILE_FACTS, JobRecord, QuerySpec, Region, Session, SessionError, Stem, Track, atomic_write_text, now_iso,
)

__all__ = ["Change", "History", "Autosaver", "Recoverable", "find_recoverable", "recover",
           "autosave_dir"]



@dataclass(frozen=True)
class Change:
    """What a callback receives.  ``kind`` e.g. 'track.add', 'track.set', 'region.move', 'query.edit',
    'render', 'settings'; ``action`` is 'do', 'undo', 'redo' or 'saved' (kind 'saved')."""

    kind: str
    label: str
    ids: tuple[str, ...]
    action: str = "do"                   # also 'state': a job record changed (not an undo step)


# --------------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------------
def _coll(session: Session, name: str) -> list:
    return getattr(session, name)


def _index_of(items: list, obj_id: str) -> int:
    for i, o in enumerate(items):
        if o.id == obj_id:
            return i
    raise SessionError(f"no object with id {obj_id!r}", "id")


class _Insert:
    def __init__(self, coll: str, obj, index: int | None = None):
        self.coll, self.obj, self.index = coll, copy.deepcopy(obj), index

    def do(self, s: Session):
        items = _coll(s, self.coll)
        i = len(items) if self.index is None else max(0, min(self.index, len(items)))
        self.index = i
        items.insert(i, copy.deepcopy(self.obj))

    def undo(self, s: Session):
        items = _coll(s, self.coll)
        del items[_index_of(items, self.obj.id)]


class _Remove:
    def __init__(self, coll: str, obj_id: str):
        self.coll, self.obj_id, self.obj, self.index = coll, obj_id, None, None

    def do(self, s: Session):
        items = _coll(s, self.coll)
        self.index = _index_of(items, self.obj_id)
        self.obj = copy.deepcopy(items[self.index])
        del items[self.index]

    def undo(self, s: Session):
        _coll(s, self.coll).insert(self.index, copy.deepcopy(self.obj))


class _Set:
    """Set ``attr`` of the object ``obj_id`` in ``coll`` (coll None: the session itself)."""

    def __init__(self, coll: str | None, obj_id: str | None, attr: str, value):
        self.coll, self.obj_id, self.attr, self.value, self.old = coll, obj_id, attr, copy.deepcopy(value), None

    def _target(self, s: Session):
        if self.coll is None:
            return s
        items = _coll(s, self.coll)
        return items[_index_of(items, self.obj_id)]

    def do(self, s: Session):
        t = self._target(s)
        self.old = copy.deepcopy(getattr(t, self.attr))
        setattr(t, self.attr, copy.deepcopy(self.value))

    def undo(self, s: Session):
        setattr(self._target(s), self.attr, copy.deepcopy(self.old))


@dataclass
class Command:
    kind: str
    label: str
    ids: tuple[str, ...]
    ops: list = field(default_factory=list)
    merge_key: Any = None
    serial: int = 0

    def do(self, s: Session):
        done = []
        try:
            for op in self.ops:
                op.do(s)
                done.append(op)
        except BaseException:
            for op in reversed(done):
                op.undo(s)
            raise

    def undo(self, s: Session):
        for op in reversed(self.ops):
            op.undo(s)


# --------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------
def _check(cls: type, changes: dict, what: str, prefix: str = "") -> None:
    """Check new field values of a ``cls`` object against the session schema (derived from the
    dataclass: ``shape.check_fields``); ``SessionError`` names the first bad field."""
    shape.check_fields(cls, changes, what, SessionError, prefix)


def _all_fields(obj) -> dict:
    return {k: getattr(obj, k) for k in shape.editable_fields(type(obj))}


def _check_query(q: Any, name: str = "query") -> QuerySpec:
    if not isinstance(q, QuerySpec):
        raise SessionError(f"{name} must be a QuerySpec", name)
    _check(QuerySpec, _all_fields(q), "query", f"{name}.")
    return q


# --------------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------------
class History:
    def __init__(self, session: Session, limit: int = 10000):
        self.session = session
        self.limit = limit
        self._done: list[Command] = []
        self._undone: list[Command] = []
        self._serial = 0
        self._saved_serial: int | None = 0  # serial of the top command when last saved (0: empty stack)
        self._listeners: list[Callable[[Change], None]] = []
        self._txn: list[Command] | None = None
        self._txn_label = ""
        self.edit_count = 0  # increases on every do/undo/redo (autosave trigger)

    # -- observers --------------------------------------------------------------------------------
    def subscribe(self, cb: Callable[[Change], None]) -> Callable[[], None]:
        self._listeners.append(cb)

        def unsubscribe():
            if cb in self._listeners:
                self._listeners.remove(cb)
        return unsubscribe

    def _notify(self, change: Change) -> None:
        for cb in list(self._listeners):
            try:
                cb(change)
            except Exception:  # a broken listener must not break editing
                import logging
                logging.getLogger(__name__).exception("session change listener failed")

    # -- state ------------------------------------------------------------------------------------
    @property
    def _top(self) -> int:
        return self._done[-1].serial if self._done else 0

    @property
    def dirty(self) -> bool:
        return self._top != self._saved_serial

    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    @property
    def undo_label(self) -> str | None:
        return self._done[-1].label if self._done else None

    @property
    def redo_label(self) -> str | None:
        return self._undone[-1].label if self._undone else None

    def mark_saved(self) -> None:
        self._saved_serial = self._top
        self._notify(Change("saved", "saved", (), "saved"))

    def mark_dirty(self) -> None:
        """Force the dirty flag (e.g. after crash recovery) until the next save."""
        self._saved_serial = None
        self._notify(Change("dirty", "recovered", (), "do"))

    def save(self, path: str | None = None) -> str:
        with self.session.lock:
            p = self.session.save(path)
        self.mark_saved()
        return p

    # -- core -------------------------------------------------------------------------------------
    def _apply(self, cmd: Command) -> Command:
        with self.session.lock:
            cmd.do(self.session)
            if self._txn is not None:
                self._txn.append(cmd)
                return cmd
            self._push(cmd)
        self.edit_count += 1
        self._notify(Change(cmd.kind, cmd.label, cmd.ids, "do"))
        return cmd

    def _push(self, cmd: Command) -> None:
        top = self._done[-1] if self._done else None
        if (cmd.merge_key is not None and top is not None and top.merge_key == cmd.merge_key
                and not self._undone and top.serial != self._saved_serial):
            top.ops.extend(cmd.ops)
        else:
            self._serial += 1
            cmd.serial = self._serial
            self._done.append(cmd)
            if len(self._done) > self.limit:
                del self._done[0]
        if self._undone:
            if self._saved_serial is not None and any(c.serial == self._saved_serial for c in self._undone):
                self._saved_serial = None  # the saved state can no longer be reached
            self._undone.clear()

    def undo(self) -> bool:
        with self.session.lock:
            if not self._done:
                return False
            cmd = self._done.pop()
            cmd.undo(self.session)
            self._undone.append(cmd)
        self.edit_count += 1
        self._notify(Change(cmd.kind, cmd.label, cmd.ids, "undo"))
        return True

    def redo(self) -> bool:
        with self.session.lock:
            if not self._undone:
                return False
            cmd = self._undone.pop()
            cmd.do(self.session)
            self._done.append(cmd)
        self.edit_count += 1
        self._notify(Change(cmd.kind, cmd.label, cmd.ids, "redo"))
        return True

    @contextlib.contextmanager
    def transaction(self, label: str, kind: str = "compound"):
        """Group several edits into one undo step.  If the block raises, its edits are rolled back."""
        if self._txn is not None:  # nested: join the outer transaction
            yield
            return
        self._txn, self._txn_label = [], label
        try:
            yield
        except BaseException:
            cmds, self._txn = self._txn, None
            with self.session.lock:
                for c in reversed(cmds):
                    c.undo(self.session)
            raise
        cmds, self._txn = self._txn, None
        if cmds:
            ids = tuple(dict.fromkeys(i for c in cmds for i in c.ids))
            big = Command(kind, label, ids, [op for c in cmds for op in c.ops])
            with self.session.lock:
                self._push(big)
            self.edit_count += 1
            self._notify(Change(kind, label, ids, "do"))

    # -- tracks -----------------------------------------------------------------------------------
    def add_track(self, track: Track, index: int | None = None) -> Track:
        if not isinstance(track, Track):
            raise SessionError("add_track needs a Track", "track")
        if any(t.id == track.id for t in self.session.tracks):
            raise SessionError(f"a track with id {track.id} already exists", "id")
        _check(Track, _all_fields(track), "track")
        if track.parent_id is not None:
            self.session.track(track.parent_id)
        self._apply(Command("track.add", f"Add track {track.name}", (track.id,), [_Insert("tracks", track, index)]))
        return self.session.track(track.id)

    def remove_track(self, track_id: str) -> None:
        """Removes the track, its regions, its stem/residual child tracks (recursively) and the stem
        records pointing at removed tracks, as one undo step."""
        s = self.session
        t = s.track(track_id)
        doomed = [track_id]
        i = 0
        while i < len(doomed):
            doomed += [c.id for c in s.children(doomed[i]) if c.id not in doomed]
            i += 1
        ops: list = []
        for st in s.stems:
            if st.track_id in doomed:
                ops.append(_Remove("stems", st.id))
        for r in s.regions:
            if r.track_id in doomed:
                ops.append(_Remove("regions", r.id))
        for tid in reversed(doomed):
            ops.append(_Remove("tracks", tid))
        self._apply(Command("track.remove", f"Remove track {t.name}", tuple(doomed), ops))

    def set_track(self, track_id: str, merge: bool = False, **changes) -> None:
        """Change track fields: name, path, gain_db, mute, solo, colour, offset, chain, ... .

        Filling in file facts the session lacks (``TRACK_FILE_FACTS`` that are None: a track added before
        its file was probed, e.g. by an older session file) is no undo step: they are what the file holds,
        not an edit, so they apply at once and notify with action 'state' like job records."""
        t = self.session.track(track_id)
        _check(Track, changes, "track")
        if "parent_id" in changes and changes["parent_id"] is not None:
            self.session.track(changes["parent_id"])
        ops = [_Set("tracks", track_id, k, v) for k, v in changes.items() if getattr(t, k) != v]
        if not ops:
            return
        if all(op.attr in TRACK_FILE_FACTS and getattr(t, op.attr) is None for op in ops):
            self._apply_state(Command("track.facts", f"Record the file facts of {t.name}", (track_id,), ops), True)
            return
        keys = ",".join(sorted(changes))
        kind = "track.set" if set(changes) - {"gain_db", "mute", "solo"} else f"track.{keys}"
        what = {"gain_db": "gain", "chain": "plugin chain"}.get(keys, keys)
        self._apply(Command(kind, f"Change {what} of {t.name}", (track_id,), ops,
                            merge_key=("track", track_id, keys) if merge else None))

    def set_gain(self, track_id: str, gain_db: float, merge: bool = True) -> None:
        self.set_track(track_id, merge=merge, gain_db=gain_db)

    def set_mute(self, track_id: str, mute: bool) -> None:
        self.set_track(track_id, mute=mute)

    def set_solo(self, track_id: str, solo: bool) -> None:
        self.set_track(track_id, solo=solo)

    def set_chain(self, track_id: str, chain: list[dict]) -> None:
        self.set_track(track_id, chain=chain)

    def move_track(self, track_id: str, index: int) -> None:
        s = self.session
        t = s.track(track_id)
        self._apply(Command("track.order", f"Move track {t.name}", (track_id,),
                            [_Remove("tracks", track_id), _Insert("tracks", t, index)]))

    @staticmethod
    def _check_new(obj, cls, what: str, existing) -> None:
        """A new region or job record: of the right type, a fresh id, valid queries and fields."""
        if not isinstance(obj, cls):
            raise SessionError(f"add_{what} needs a {cls.__name__}", what)
        if any(o.id == obj.id for o in existing):
            raise SessionError(f"a {what} with id {obj.id} already exists", "id")
        for i, q in enumerate(obj.queries):
            _check_query(q, f"queries[{i}]")
        _check(cls, _all_fields(obj), what)

    # -- regions ----------------------------------------------------------------------------------
    def _check_region_range(self, start: Any, end: Any) -> None:
        _check(Region, {"start": start, "end": end}, "region")
        if end <= start:
            raise SessionError(f"region end ({end}) must be after its start ({start})", "end")

    def add_region(self, region: Region) -> Region:
        self._check_new(region, Region, "region", self.session.regions)
        self.session.track(region.track_id)
        self._check_region_range(region.start, region.end)
        self._apply(Command("region.add", f"Add region {region.name or ''}".strip(), (region.id,),
                            [_Insert("regions", region)]))
        return self.session.region(region.id)

    def remove_region(self, region_id: str) -> None:
        r = self.session.region(region_id)
        self._apply(Command("region.remove", f"Remove region {r.name}".strip(), (region_id,),
                            [_Remove("regions", region_id)]))

    def move_region(self, region_id: str, start: int, track_id: str | None = None, merge: bool = True) -> None:
        """Move keeping the length (optionally onto another track)."""
        r = self.session.region(region_id)
        _check(Region, {"start": start, "end": start + r.length if isinstance(start, int) else start}, "region")
        ops = [_Set("regions", region_id, "start", start), _Set("regions", region_id, "end", start + r.length)]
        if track_id is not None and track_id != r.track_id:
            self.session.track(track_id)
            ops.append(_Set("regions", region_id, "track_id", track_id))
        self._apply(Command("region.move", f"Move region {r.name}".strip(), (region_id,), ops,
                            merge_key=("region.move", region_id) if merge else None))

    def resize_region(self, region_id: str, start: int, end: int, merge: bool = True) -> None:
        r = self.session.region(region_id)
        self._check_region_range(start, end)
        self._apply(Command("region.resize", f"Resize region {r.name}".strip(), (region_id,),
                            [_Set("regions", region_id, "start", start), _Set("regions", region_id, "end", end)],
                            merge_key=("region.resize", region_id) if merge else None))

    def rename_region(self, region_id: str, name: str) -> None:
        self.session.region(region_id)
        _check(Region, {"name": name}, "region")
        self._apply(Command("region.rename", f"Rename region {name}", (region_id,),
                            [_Set("regions", region_id, "name", name)]))

    # -- queries ----------------------------------------------------------------------------------
    def set_queries(self, region_id: str, queries: list[QuerySpec], label: str = "Edit queries",
                    kind: str = "query.set", preset: Any = ...) -> None:
        r = self.session.region(region_id)
        for i, q in enumerate(queries):
            _check_query(q, f"queries[{i}]")
        ops = [_Set("regions", region_id, "queries", list(queries))]
        if preset is not ...:
            ops.append(_Set("regions", region_id, "preset", preset))
        self._apply(Command(kind, label, (r.id,), ops))

    def add_query(self, region_id: str, query: QuerySpec, index: int | None = None) -> None:
        r = self.session.region(region_id)
        _check_query(query)
        qs = list(r.queries)
        qs.insert(len(qs) if index is None else index, query)
        self.set_queries(region_id, qs, f"Add query {query.display}", "query.add")

    def remove_query(self, region_id: str, index: int) -> None:
        r = self.session.region(region_id)
        if not isinstance(index, int) or not 0 <= index < len(r.queries):
            raise SessionError(f"query index {index!r} out of range (region has {len(r.queries)})", "index")
        qs = list(r.queries)
        q = qs.pop(index)
        self.set_queries(region_id, qs, f"Remove query {q.display}", "query.remove")

    def edit_query(self, region_id: str, index: int, **changes) -> None:
        r = self.session.region(region_id)
        if not isinstance(index, int) or not 0 <= index < len(r.queries):
            raise SessionError(f"query index {index!r} out of range (region has {len(r.queries)})", "index")
        _check(QuerySpec, changes, "query", f"queries[{index}].")
        q = copy.deepcopy(r.queries[index])
        for k, v in changes.items():
            setattr(q, k, v)
        _check_query(q, f"queries[{index}]")
        qs = list(r.queries)
        qs[index] = q
        self.set_queries(region_id, qs, f"Edit query {q.display}", "query.edit")

    def set_preset(self, region_id: str, preset) -> None:
        """Replace a region's queries by those of ``preset`` (a ``presets.Preset``)."""
        queries = preset.to_queries()
        self.set_queries(region_id, queries, f"Apply preset {preset.name}", "preset.set", preset=preset.name)

    # -- stems (renders) --------------------------------------------------------------------------
    def add_render(self, tracks: Iterable[Track], stems: Iterable[Stem], label: str = "Render stems",
                   job_id: str | None = None) -> None:
        """Add the stem tracks and stem records of one render, as one undo step.  A track or stem whose id
        the session (or this render) already has is refused before anything changes."""
        tracks, stems = list(tracks), list(stems)
        ids = {t.id for t in self.session.tracks}
        stem_ids = {st.id for st in self.session.stems}
        ops: list = []
        for t in tracks:
            if not isinstance(t, Track):
                raise SessionError("add_render needs Track objects", "track")
            if t.id in ids:
                raise SessionError(f"a track with id {t.id} already exists", "id")
            _check(Track, _all_fields(t), "track")
            if t.parent_id is not None and t.parent_id not in ids:
                self.session.track(t.parent_id)
            ops.append(_Insert("tracks", t, self._insert_index_after_family(t.parent_id, len(ops))))
            ids.add(t.id)
        for st in stems:
            if not isinstance(st, Stem):
                raise SessionError("add_render needs Stem objects", "stem")
            if st.id in stem_ids:
                raise SessionError(f"a stem with id {st.id} already exists", "id")
            stem_ids.add(st.id)
            _check(Stem, _all_fields(st), "stem")
            if st.track_id is not None and st.track_id not in ids:
                raise SessionError(f"stem {st.id} refers to an unknown track", "track_id")
            ops.append(_Insert("stems", st))
        all_ids = tuple(t.id for t in tracks) + tuple(s.id for s in stems) + ((job_id,) if job_id else ())
        self._apply(Command("render", label, all_ids, ops))

    def _insert_index_after_family(self, parent_id: str | None, already: int) -> int | None:
        """Index just below the parent track and its existing children (stems sit under their source)."""
        if parent_id is None:
            return None
        tracks = self.session.tracks
        fam = {parent_id}
        last = None
        for i, t in enumerate(tracks):
            if t.id in fam or t.parent_id in fam:
                last = i
        return None if last is None else last + 1 + already

    def remove_stems(self, stem_ids: Iterable[str], remove_tracks: bool = True) -> None:
        s = self.session
        ops: list = []
        ids = []
        for sid in stem_ids:
            st = s.stem(sid)
            ops.append(_Remove("stems", sid))
            ids.append(sid)
            if remove_tracks and st.track_id is not None and any(t.id == st.track_id for t in s.tracks):
                others = [o for o in s.stems if o.track_id == st.track_id and o.id not in ids]
                if not others and not any(isinstance(o, _Remove) and o.coll == "tracks" and o.obj_id == st.track_id
                                          for o in ops):
                    for r in s.regions_on(st.track_id):
                        ops.append(_Remove("regions", r.id))
                    ops.append(_Remove("tracks", st.track_id))
                    ids.append(st.track_id)
        if ops:
            self._apply(Command("stems.remove", "Remove stems", tuple(ids), ops))

    # -- jobs -------------------------------------------------------------------------------------
    # A job record logs a render: queued, running, done, failed.  It is not an undo step (undoing a
    # render removes its stems and tracks, never the fact that it ran), so job edits apply at once,
    # leave the undo stack and the dirty flag alone, and notify with action 'state' (as the file facts
    # ``set_track`` fills in).
    def _apply_state(self, cmd: Command, notify: bool) -> None:
        with self.session.lock:
            cmd.do(self.session)
        if notify:
            self._notify(Change(cmd.kind, cmd.label, cmd.ids, "state"))

    def add_job(self, job: JobRecord, notify: bool = True) -> JobRecord:
        """Append a job record (``jobs.make_job`` / ``make_rerender_job`` / ``make_learn_job`` build one):
        a separation names an existing region, a re-render an existing track."""
        self._check_new(job, JobRecord, "job", self.session.jobs)
        if job.kind == "separate":
            if job.region_id is None:
                raise SessionError("a separation job needs a region", "region_id")
            self.session.region(job.region_id)
        elif job.kind == "rerender":
            if job.track_id is None:
                raise SessionError("a re-render job needs a track", "track_id")
            self.session.track(job.track_id)
        self._apply_state(Command("job.add", f"Queue {job.kind}", (job.id,), [_Insert("jobs", job)]), notify)
        return self.session.job(job.id)

    def set_job(self, job_id: str, notify: bool = True, **changes) -> None:
        """Change job fields: status (one of JOB_STATES), error, progress, stem_ids, finished, queries,
        preset, settings (any field but ``id``).  ``notify=False`` for per-chunk progress (the queue reports that itself)."""
        job = self.session.job(job_id)
        for i, q in enumerate(changes.get("queries") or []):
            _check_query(q, f"queries[{i}]")
        _check(JobRecord, changes, "job")
        ops = [_Set("jobs", job_id, k, v) for k, v in changes.items() if getattr(job, k) != v]
        if ops:
            status = changes.get("status", job.status)
            self._apply_state(Command("job.state", f"Job {status}", (job_id,), ops), notify)

    def retry_job(self, job_id: str, notify: bool = True) -> bool:
        """Put a failed or cancelled job back in the queue; False if it was neither."""
        if self.session.job(job_id).status not in ("failed", "cancelled"):
            return False
        self.set_job(job_id, notify, status="pending", error=None, progress=0.0, finished=None)
        return True

    # -- session-level ----------------------------------------------------------------------------
    def set_settings(self, **changes) -> None:
        """Merge ``changes`` into ``session.settings`` (value None removes a key)."""
        new = dict(self.session.settings)
        for k, v in changes.items():
            if v is None:
                new.pop(k, None)
            else:
                new[k] = v
        _check(Session, {"settings": new}, "session")
        self._apply(Command("settings", "Change settings", (), [_Set(None, None, "settings", new)]))

    def rename_session(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise SessionError("session name must not be empty", "name")
        self._apply(Command("session.rename", f"Rename session {name}", (), [_Set(None, None, "name", name)]))


# --------------------------------------------------------------------------------------------------
# autosave / crash recovery
# --------------------------------------------------------------------------------------------------
def autosave_dir() -> str:
    return os.path.join(data_dir(), "autosave")


AUTOSAVE_SUFFIX = ".autosave.json"


class Autosaver:
    """Writes the session to ``<data>/autosave/<session id>.autosave.json`` every ``every_edits`` edits
    or, on ``tick()`` (call it from a GUI timer), when ``every_seconds`` passed since the first unsaved
    edit.  A real save (``History.save``) deletes the autosave."""

    def __init__(self, history: History, every_edits: int = 10, every_seconds: float = 30.0,
                 directory: str | None = None, clock: Callable[[], float] = time.monotonic):
        self.history = history
        self.every_edits = max(1, int(every_edits))
        self.every_seconds = float(every_seconds)
        self.directory = directory or autosave_dir()
        self.clock = clock
        self._pending = 0
        self._first_pending: float | None = None
        self._unsub = history.subscribe(self._on_change)

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.history.session.id + AUTOSAVE_SUFFIX)

    def _on_change(self, ch: Change) -> None:
        if ch.action == "saved":
            self.discard()
            return
        if ch.action == "state":  # job state: the job queue saves it itself
            return
        self._pending += 1
        if self._first_pending is None:
            self._first_pending = self.clock()
        if self._pending >= self.every_edits:
            self.save_now()

    def tick(self) -> bool:
        if self._pending and self._first_pending is not None and self.clock() - self._first_pending >= self.every_seconds:
            self.save_now()
            return True
        return False

    def save_now(self) -> str:
        s = self.history.session
        with s.lock:
            doc = {"autosave": {"session_path": s.path, "saved_at": now_iso(), "time": time.time(),
                                "name": s.name},
                   "session": s.to_dict(None)}
        text = json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False)
        atomic_write_text(self.path, text)
        self._pending = 0
        self._first_pending = None
        return self.path

    def discard(self) -> None:
        self._pending = 0
        self._first_pending = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def close(self, keep: bool = False) -> None:
        """Stop listening; delete the autosave unless ``keep`` (a clean close after saving)."""
        self._unsub()
        if not keep:
            self.discard()


@dataclass
class Recoverable:
    autosave_path: str
    session_path: str | None
    name: str
    saved_at: str
    autosave_mtime: float
    session_mtime: float | None


def find_recoverable(directory: str | None = None) -> list[Recoverable]:
    """Autosaves newer than their session file (or of never-saved / vanished sessions), newest first.
    Unreadable autosave files are skipped."""
    directory = directory or autosave_dir()
    out = []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    for n in names:
        if not n.endswith(AUTOSAVE_SUFFIX):
            continue
        p = os.path.join(directory, n)
        try:
            with open(p, encoding="utf-8") as f:
                head = json.load(f)["autosave"]
            amt = os.path.getmtime(p)
        except Exception:
            continue
        sp = head.get("session_path") if isinstance(head, dict) else None
        smt = None
        if isinstance(sp, str) and os.path.exists(sp):
            smt = os.path.getmtime(sp)
            if smt >= amt:
                continue
        out.append(Recoverable(p, sp if isinstance(sp, str) else None, str(head.get("name", "")),
                               str(head.get("saved_at", "")), amt, smt))
    out.sort(key=lambda r: r.autosave_mtime, reverse=True)
    return out


def recover(rec: Recoverable | str) -> tuple[Session, History]:
    """Rebuild the session of an autosave; the returned History is dirty (save to keep it)."""
    path = rec.autosave_path if isinstance(rec, Recoverable) else rec
    doc = read_json(path, "autosave", SessionError)
    if not isinstance(doc, dict) or "session" not in doc:
        raise SessionError(f"{path}: not an autosave file (field 'session' is missing)", "session")
    s = Session.from_dict(doc["session"], None, source=os.path.basename(path))
    head = doc.get("autosave") if isinstance(doc.get("autosave"), dict) else {}
    sp = head.get("session_path")
    s.path = sp if isinstance(sp, str) else None
    for j in s.jobs:
        if j.status == "running":
            j.status, j.progress = "pending", 0.0
    h = History(s)
    h.mark_dirty()
    return s, h
