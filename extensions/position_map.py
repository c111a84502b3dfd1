"""The base of the training-free attention-level methods: each is one `kernels.spec.PositionMap` (which pairs are
scored at other positions, and at which), plus optionally a window and sinks, hosted by every runner that
implements the attention spec (the oracle on hf, the CPU path and Triton on kernel). ReRoPE, Leaky ReRoPE, STRING,
LM-Infinite and Dual Chunk Attention are subclasses here; SelfExtend and sinks build their maps the same way.

Parameters that depend on the model default to sizes of its trained window L (`hf_config.max_position_embeddings`)
and are filled by `resolve`, so a run records the numbers it used.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from extensions.base import ATTENTION_SPEC, Extension, ExtensionConfig
from extensions.rope import require_rope


def positive_ints(config: ExtensionConfig, *names: str, low: int = 1) -> None:
    for name in names:
        v = getattr(config, name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")


def trained_length(hf_config) -> int:
    return int(hf_config.max_position_embeddings)


def window_below_trained(config, L: int) -> None:
    """A method whose `window` keeps true distances must leave room for the moved ones inside L."""
    if config.window >= L:
        raise ValueError(f"window {config.window} must be below the model's trained window {L}")


class PositionMapExtension(Extension):
    mechanisms = frozenset({ATTENTION_SPEC})
    rerotates = True
    what: ClassVar[str] = "re-maps rotary positions"

    def defaults(self, config: Any, L: int) -> dict:
        """Values for the parameters left unset, from the trained window L."""
        return {}

    def check(self, config: Any, L: int) -> None:
        """Refuse, with a ValueError naming the fix, parameters that cannot work on a model trained on L tokens."""

    def resolve(self, config: Any, hf_config) -> Any:
        require_rope(self.name, hf_config, self.what)
        L = trained_length(hf_config)
        fill = {k: v for k, v in self.defaults(config, L).items() if getattr(config, k) is None}
        config = dataclasses.replace(config, **fill) if fill else config
        self.check(config, L)
        return config

    def position_map(self, config: Any, length: int, model_config: Any):
        raise NotImplementedError

    def spec_window(self, config: Any) -> dict:
        """sink_tokens / window of the spec, for the methods that have them."""
        return {}

    def attention_spec(self, config: Any, model_config, inv_freq, length: int):
        from kernels.spec import AttentionSpec

        return AttentionSpec(position_map=self.position_map(config, length, model_config), inv_freq=inv_freq,
                             **self.spec_window(config))

    def inspect(self, config: Any, hf_config, length: int | None = None) -> dict:
        """The relative position the last query is scored at against every key, and the largest one any pair
        uses (it should stay below the trained window)."""
        import torch

        n = length or trained_length(hf_config)
        spec = self.attention_spec(config, hf_config, torch.zeros(1), n)
        m = spec.position_map
        last = n - 1
        keys = [j for j in range(n) if spec.window is None or last - j < spec.window or j < spec.sink_tokens]
        rel = [m.distance(last, j) for j in keys]
        return {"keys": keys, "positions": rel, "max_position": max(rel) if rel else 0,
                "trained_length": trained_length(hf_config), "map": m.name}
