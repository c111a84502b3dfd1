"""The unmodified model: the control row of every comparison."""
from __future__ import annotations

from dataclasses import dataclass

from extensions.base import Extension, ExtensionConfig


@dataclass(frozen=True)
class NoneConfig(ExtensionConfig):
    pass


class NoExtension(Extension):
    name = "none"
    config_cls = NoneConfig

    def describe(self, config: NoneConfig) -> str:
        return "none (native positions)"
