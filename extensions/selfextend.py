"""SelfExtend (Jin et al. 2024, "LLM Maybe LongLM: Self-Extend LLM Context Window Without Tuning").

Two attention regimes merged per (query i, key j) pair:
  neighbours, i − j < W:  the ordinary relative position i − j;
  beyond the window:      grouped positions, query ⌊i/G⌋ + (W − ⌊W/G⌋), key ⌊j/G⌋, so the distance is
                          ⌊i/G⌋ − ⌊j/G⌋ + W − ⌊W/G⌋, which starts at about W where the neighbour regime ends.
The largest relative position used is then about (n − W)/G + W, so a model trained on L tokens reaches
(L − W)·G + W tokens. Implemented as an attention spec (kernels.spec: group G, neighbour window W): q and k arrive
rotated at their true positions and the grouped versions are re-rotated from there (rotations compose), so the KV
cache is the ordinary one.
"""
from __future__ import annotations

from dataclasses import dataclass

from extensions.base import ATTENTION_SPEC, Extension, ExtensionConfig
from extensions.rope import require_rope
from kernels.spec import grouped_query_position


@dataclass(frozen=True)
class SelfExtendConfig(ExtensionConfig):
    group: int = 4  # G: positions beyond the window are floor-divided by G
    window: int = 1024  # W: neighbour window with exact positions

    def __post_init__(self):
        for name in ("group", "window"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")


def selfextend_distances(n: int, group: int, window: int):
    """Relative positions a query at position n − 1 uses for keys 0..n−1: (n,) long."""
    import torch

    i = torch.tensor(n - 1)
    j = torch.arange(n)
    grouped = grouped_query_position(i, group, window) - j // group
    return torch.where(i - j < window, i - j, grouped)


def usable_length(trained: int, group: int, window: int) -> int:
    """(L − W)·G + W."""
    return (trained - window) * group + window


class SelfExtend(Extension):
    name = "selfextend"
    config_cls = SelfExtendConfig
    rerotates = True  # grouped positions past the neighbour window
    mechanisms = frozenset({ATTENTION_SPEC})

    def resolve(self, config: SelfExtendConfig, hf_config) -> SelfExtendConfig:
        require_rope(self.name, hf_config, "regroups rotary positions")
        trained = hf_config.max_position_embeddings
        if config.window >= trained:
            raise ValueError(f"window {config.window} must be smaller than the model's context {trained}")
        return config

    def attention_spec(self, config: SelfExtendConfig, model_config, inv_freq, length: int):
        from kernels.spec import AttentionSpec

        from kernels.spec import selfextend_map

        return AttentionSpec(position_map=selfextend_map(config.group, config.window), inv_freq=inv_freq)

    def attach(self, model, config: SelfExtendConfig) -> dict:
        return {"usable_length": usable_length(model.config.max_position_embeddings, config.group, config.window)}

    def short_label(self, params: dict) -> str:
        return f"selfextend G{params.get('group', 4)} W{params.get('window', 1024)}"

    def inspect(self, config: SelfExtendConfig, hf_config, length: int | None = None) -> dict:
        n = length or hf_config.max_position_embeddings
        d = selfextend_distances(n, config.group, config.window)
        return {"positions": [int(x) for x in d], "max_position": int(d.max()),
                "usable_length": usable_length(hf_config.max_position_embeddings, config.group, config.window)}
