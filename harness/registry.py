"""A lazy name → object registry (the shape of lm-eval's and inspect_ai's registries).

Entries are import paths ("package.module:Attr") so that choosing a runner or extension imports only that one;
an optional dependency that is missing surfaces when the entry is chosen, with an install hint, not at start-up.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Generic, TypeVar

from harness.errors import UserError, unknown_name

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    target: str  # "package.module:Attr"
    install_hint: str | None = None  # e.g. 'pip install -e ".[vllm]"'


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: str, install_hint: str | None = None) -> None:
        if name in self._entries and self._entries[name].target != target:
            raise ValueError(f"{self.kind} {name!r} is already registered to {self._entries[name].target}")
        self._entries[name] = Entry(target, install_hint)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise unknown_name(self.kind, name, self.names())
        entry = self._entries[name]
        module_name, _, attr = entry.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            hint = f" Install it with: {entry.install_hint}" if entry.install_hint else ""
            raise UserError(f"{self.kind} {name!r} needs the missing package {e.name!r}.{hint}") from e
        return getattr(module, attr)
