"""User-facing errors.

A `UserError` is a mistake the user can fix (unknown model, bad length, missing file). The CLI prints its message
on one line and exits with code 2; nothing else in the code base should print tracebacks for such mistakes.
"""
from __future__ import annotations

import difflib


class UserError(Exception):
    """A mistake in the user's input; the message is one line that says what was given and how to fix it."""


def unknown_name(kind: str, given: str, available: list[str] | tuple[str, ...]) -> UserError:
    """Build the error for an unknown registry name, listing what exists and the nearest match."""
    available = sorted(available)
    near = difflib.get_close_matches(given, available, n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    return UserError(f"unknown {kind} {given!r}; available: {', '.join(available)}.{hint}")


class RunFailed(Exception):
    """A run that produced no measurement where it was asked for one (every sample of a cell raised): the records
    are kept, the command exits non-zero with one line naming the error, never "0/n correct"."""
