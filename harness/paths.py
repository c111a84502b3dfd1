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
