"""Output paths checked before any work: one line naming the flag, instead of a traceback after minutes of work."""
from __future__ import annotations

import os
from pathlib import Path

from harness.errors import UserError


def _nearest_existing(path: Path) -> Path:
    return next((p for p in [path, *path.parents] if p.exists()), Path("."))


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """A directory that exists or can be created, and can be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a directory")
    parent = _nearest_existing(path)
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: {parent} is a file, so no directory can be made under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {parent} is not writable")
    return path


def check_output_file(path: str | Path, flag: str = "--output") -> Path:
    """A file path that is not a directory and whose directory exists or can be created, and can be written."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; give a file name, e.g. {path / 'report.html'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path} is not writable")
    check_output_dir(path.parent, flag=f"{flag} {path}: its folder")
    return path


def check_apart(path: str | Path, inputs: list, flag: str) -> None:
    """An output may not be one of the command's inputs nor lie inside a run directory it reads (a report written
    over results.jsonl would replace every record)."""
    out = Path(path).resolve()
    for i in map(Path, inputs):
        i = i.resolve()
        if out == i or i in out.parents:
            what = "one of its inputs" if out == i else f"inside {i}, which it reads"
            beside = Path(f"{i if i.is_dir() else i.parent}{out.suffix or ''}")
            raise UserError(f"{flag} {path} is {what}; write it beside instead (e.g. {beside})")


def longctx_home(writable: bool = False) -> Path:
    """$LONGCTX_HOME, else $XDG_CACHE_HOME/longctx, else ~/.cache/longctx. A home that is a file, or (where the
    caller will write) cannot be written, is a one-line error naming the path and the variable."""
    if os.environ.get("LONGCTX_HOME"):
        home, how = Path(os.environ["LONGCTX_HOME"]).expanduser(), "$LONGCTX_HOME"
    else:
        home, how = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "longctx", "the cache folder"
    if home.exists() and not home.is_dir():
        raise UserError(f"{how} {home} is a file, not a directory; point LONGCTX_HOME at a directory")
    if writable:
        near = next((p for p in [home, *home.parents] if p.exists()), Path("/"))
        if not near.is_dir() or not os.access(near, os.W_OK | os.X_OK):
            raise UserError(f"{how} {home} cannot be written ({near} is read-only to this user); point "
                            "LONGCTX_HOME at a writable directory")
    return home
