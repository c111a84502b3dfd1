"""Leaky ReRoPE (Su 2023, "Rectified Rotary Position Embeddings"): pairs at least w apart are scored at the distance
w + (d − w)/k, so far distances still grow, k times slower. Where k is not given it is sized for the length: the
largest distance of an n-token prompt, w + (n − 1 − w)/k, lands on L − 1 (k = (n − 1 − w)/(L − 1 − w), at least 1).
SelfExtend is the same map with floor-divided positions."""
from __future__ import annotations

import math
from dataclasses import dataclass

from extensions.base import ExtensionConfig
from extensions.position_map import PositionMapExtension, positive_ints, window_below_trained


@dataclass(frozen=True)
class LeakyReRopeConfig(ExtensionConfig):
    window: int | None = None  # w: nearer pairs keep their distance; default: L/4
    k: float | None = None  # past w, distances grow 1/k as fast; default: sized so the prompt's reach is L − 1

    def __post_init__(self):
        positive_ints(self, "window")
        k = self.k
        if k is not None and (not isinstance(k, (int, float)) or isinstance(k, bool) or not math.isfinite(k)
                              or k < 1):
            raise ValueError(f"k must be a number >= 1 (1: plain RoPE), got {k!r}")


def leak_for(length: int, window: int, trained: int) -> float:
    """k that maps the largest distance of `length` tokens onto trained − 1."""
    return max(1.0, (length - 1 - window) / max(1, trained - 1 - window))


class LeakyReRope(PositionMapExtension):
    name = "leaky-rerope"
    config_cls = LeakyReRopeConfig
    # Without k, the leak is sized from the current sequence length (the prompt's at prefill, one more per decode
    # step), so a prefix's deeper keys depend on what follows it: no prefix reuse.
    static_keys = False

    def defaults(self, config, L):
        return {"window": L // 4}

    def check(self, config, L):
        window_below_trained(config, L)

    def position_map(self, config, length, model_config):
        from kernels.spec import leaky_map

        k = config.k if config.k is not None else leak_for(length, config.window,
                                                                      int(model_config.max_position_embeddings))
        return leaky_map(config.window, float(k))

    def short_label(self, params: dict) -> str:
        k = params.get("k")
        return f"leaky-rerope w{params.get('window')}" + (f" k{k:g}" if k is not None else "")
