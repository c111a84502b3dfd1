"""LM-Infinite (Han et al. 2024, "LM-Infinite: Zero-Shot Extreme Length Generalization for Large Language
Models"): a Λ-shaped mask — every query sees the first n_global tokens and the n_local most recent ones — and a
distance ceiling: a pair further apart than the model was trained on is scored at the ceiling (the sinks, past the
window). Unlike StreamingLLM the sinks are not moved to in-cache positions; their distance is capped. Keys outside
the Λ are never seen again, so the runner evicts them like sinks (constant memory). Defaults from the paper:
n_global = 10, n_local = L, ceiling min(n_local, L) − 1 (the largest trained distance)."""
from __future__ import annotations

from dataclasses import dataclass

from extensions.base import KV_POLICY, ExtensionConfig, KVPolicy
from extensions.position_map import PositionMapExtension, positive_ints


@dataclass(frozen=True)
class LMInfiniteConfig(ExtensionConfig):
    sink_tokens: int = 10  # n_global: the starting tokens every query sees
    window: int | None = None  # n_local: the most recent tokens (the query included); default: L
    ceiling: int | None = None  # distances past the window are scored at this one; default: min(window, L) − 1
    chunk: int = 512  # tokens per streaming step of the prompt (results are identical for any chunk)

    def __post_init__(self):
        positive_ints(self, "sink_tokens", low=0)
        positive_ints(self, "window", "ceiling", "chunk")


class LMInfinite(PositionMapExtension):
    name = "lm-infinite"
    config_cls = LMInfiniteConfig
    static_keys = False  # the cache evicts
    mechanisms = PositionMapExtension.mechanisms | {KV_POLICY}
    LABEL_IGNORES = ("chunk",)

    def defaults(self, config, L):
        window = config.window or L
        return {"window": window, "ceiling": min(window, L) - 1}

    def check(self, config, L):
        if config.ceiling >= L:
            raise ValueError(f"ceiling {config.ceiling} must be below the model's trained window {L}")
        if config.ceiling > config.window:
            raise ValueError(f"ceiling {config.ceiling} must be at most the window {config.window}")

    def position_map(self, config, length, model_config):
        from kernels.spec import ceiling_map

        return ceiling_map(config.window, config.ceiling)

    def spec_window(self, config):
        return {"sink_tokens": config.sink_tokens, "window": config.window}

    def kv_policy(self, config, model_config):
        return KVPolicy(chunk=config.chunk, sink_tokens=config.sink_tokens, recent=config.window - 1)

    def short_label(self, params: dict) -> str:
        return f"lm-infinite {params.get('sink_tokens', 10)}+{params.get('window')}"
