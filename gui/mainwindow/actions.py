"""The menu bar: every menu entry is a small factory registered, in menu order, with ``add_action``.

An entry names its menu, text, shortcut and (optionally) the window attribute that keeps the QAction
(``act_save``, ``act_undo``...); its function gets the window and does the work.  ``build_actions(win)``
makes the menus from the registry, so a new command is one decorated function here and nothing else."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PyQt6.QtGui import QAction, QKeySequence

from plugin_bridge.gui.playback import MONITOR_MODES

__all__ = ["add_action", "build_actions"]


@dataclass(frozen=True)
class _Entry:
    menu: str
    kind: str                      # "action" | "separator" | "submenu"
    text: str = ""
    key: object = None             # anything QAction.setShortcut takes (str, StandardKey)
    name: str | None = None        # window attribute that keeps the QAction / QMenu
    trigger: Callable | None = None


_ENTRIES: list[_Entry] = []


def add_action(menu: str, text: str, key=None, name: str | None = None):
    """Register the decorated ``fn(win)`` as a menu entry (in the order of registration)."""
    def register(fn):
        _ENTRIES.append(_Entry(menu, "action", text, key, name, fn))
        return fn
    return register


def _separator(menu: str) -> None:
    _ENTRIES.append(_Entry(menu, "separator"))


def _submenu(menu: str, text: str, name: str) -> None:
    _ENTRIES.append(_Entry(menu, "submenu", text, name=name))


def build_actions(win) -> None:
    """Fill ``win``'s menu bar from the registry."""
    menus = {}
    for e in _ENTRIES:
        if e.menu not in menus:
            menus[e.menu] = win.menuBar().addMenu(e.menu)
        m = menus[e.menu]
        if e.kind == "separator":
            m.addSeparator()
        elif e.kind == "submenu":
            setattr(win, e.name, m.addMenu(e.text))
        else:
            a = QAction(e.text, win)
            if e.key is not None:
                a.setShortcut(e.key)
            a.triggered.connect(lambda _c=False, fn=e.trigger: fn(win))
            m.addAction(a)
            if e.name:
                setattr(win, e.name, a)


FILE, EDIT, VIEW, TRANSPORT = "&File", "&Edit", "&View", "&Transport"


@add_action(FILE, "&Open...", QKeySequence.StandardKey.Open)
def _open(win):
    win.open_dialog()


@add_action(FILE, "Open &Folder...", "Ctrl+Shift+O")
def _open_folder(win):
    win.open_folder_dialog()


_submenu(FILE, "Open &Recent", "recent_menu")
_separator(FILE)


@add_action(FILE, "&Save", QKeySequence.StandardKey.Save, "act_save")
def _save(win):
    win.save()


@add_action(FILE, "Save &As...", "Ctrl+Shift+S")
def _save_as(win):
    win.save_as()


_separator(FILE)


@add_action(FILE, "Export &DAWproject...", name="act_export_dawproject")
def _export_dawproject(win):
    win.export("dawproject")


@add_action(FILE, "Export Reaper &RPP...", name="act_export_rpp")
def _export_rpp(win):
    win.export("rpp")


_separator(FILE)


@add_action(FILE, "&Quit", QKeySequence.StandardKey.Quit)
def _quit(win):
    win.close()


@add_action(EDIT, "&Undo", "Ctrl+Z", "act_undo")
def _undo(win):
    win.undo()


@add_action(EDIT, "&Redo", "Ctrl+Shift+Z", "act_redo")
def _redo(win):
    win.redo()


_separator(EDIT)


@add_action(EDIT, "Delete Region")
def _delete_region(win):
    win.delete_current_region()


_separator(EDIT)


@add_action(EDIT, "Use Selection as &Query", "Ctrl+E", "act_use_selection")
def _use_selection(win):
    win.use_selection_as_query()


@add_action(EDIT, "&Teach a Sound...", name="act_teach")
def _teach(win):
    win.teach_dialog()


_separator(EDIT)


@add_action(EDIT, "&Settings...", "Ctrl+,")
def _settings(win):
    win.settings_dialog()


@add_action(VIEW, "Zoom In")
def _zoom_in(win):
    win.axis.zoom(1.5)


@add_action(VIEW, "Zoom Out")
def _zoom_out(win):
    win.axis.zoom(1 / 1.5)


@add_action(VIEW, "Zoom to Session")
def _zoom_session(win):
    win.axis.fit()


@add_action(VIEW, "Zoom to Region")
def _zoom_region(win):
    win.zoom_to_region()


@add_action(TRANSPORT, "Play / Stop")
def _play_stop(win):
    win.toggle_play()


@add_action(TRANSPORT, "Go to Start")
def _go_to_start(win):
    win.seek(0)


for _mode in MONITOR_MODES:
    add_action(TRANSPORT, f"Listen: {_mode.title()}")(lambda win, m=_mode: win.set_monitor(m))
