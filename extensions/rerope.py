"""ReRoPE (Su 2023, "Rectified Rotary Position Embeddings", kexue.fm/archives/9708): every pair at least w apart is
scored at the distance w; nearer pairs keep their true distance. No relative position ever exceeds w, so a model
never meets a distance it was not trained on, at any length; the price is that all far tokens look equally far.
With w at or past the prompt's length nothing changes."""
from __future__ import annotations

from dataclasses import dataclass

from extensions.base import ExtensionConfig
from extensions.position_map import PositionMapExtension, positive_ints, window_below_trained


@dataclass(frozen=True)
class ReRopeConfig(ExtensionConfig):
    window: int | None = None  # w: pairs at least w apart are scored at distance w; default: L/4

    def __post_init__(self):
        positive_ints(self, "window")


class ReRope(PositionMapExtension):
    name = "rerope"
    config_cls = ReRopeConfig

    def defaults(self, config, L):
        return {"window": L // 4}

    def check(self, config, L):
        window_below_trained(config, L)

    def position_map(self, config, length, model_config):
        from kernels.spec import ceiling_map

        return ceiling_map(config.window)

    def short_label(self, params: dict) -> str:
        return f"rerope w{params.get('window')}"
