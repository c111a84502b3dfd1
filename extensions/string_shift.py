"""STRING (An et al. 2025, "Why Does the Effective Context Length of LLMs Fall Short?"): the largest relative
positions are the least trained (few pairs that far apart occur in pretraining), so STRING drops them: pairs at
least S apart are scored at d − S + W — shifted back onto well-trained distances, with a local window W added so
that they stay apart from the nearest neighbours. Defaults from the paper: S = L/3, W = 128. With S at or past the
prompt's length nothing changes."""
from __future__ import annotations

from dataclasses import dataclass

from extensions.base import ExtensionConfig
from extensions.position_map import PositionMapExtension, positive_ints


@dataclass(frozen=True)
class StringConfig(ExtensionConfig):
    shift: int | None = None  # S: pairs at least S apart move back by S − W; default: L/3
    local: int = 128  # W: the local window added back to shifted distances

    def __post_init__(self):
        positive_ints(self, "shift")
        positive_ints(self, "local", low=0)


class String(PositionMapExtension):
    name = "string"
    config_cls = StringConfig

    def defaults(self, config, L):
        return {"shift": L // 3}

    def check(self, config, L):
        if config.local >= config.shift:
            raise ValueError(f"local {config.local} must be below shift {config.shift} (shifted pairs would move "
                             "further apart)")

    def position_map(self, config, length, model_config):
        from kernels.spec import shifted_map

        return shifted_map(config.shift, config.local)

    def short_label(self, params: dict) -> str:
        return f"string S{params.get('shift')} W{params.get('local', 128)}"
