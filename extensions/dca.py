"""Dual Chunk Attention (An et al. 2024, "Training-Free Long-Context Scaling of Large Language Models",
ChunkLlama). The sequence is cut into chunks of s tokens and keys take positions p_j mod s; a query scores
  its own chunk (intra)           at its own position p_i mod s: the true distance;
  the previous chunk (successive) at s + (p_i mod s) while that is below s + w (the true distance: neighbours across a
                                  chunk edge stay neighbours), at s + w − 1 after;
  older chunks (inter)            at s + w − 1.
The largest distance is s + w − 1 at any length; defaults s = 3L/4, w = L/4 make it L − 1."""
from __future__ import annotations

from dataclasses import dataclass

from extensions.base import ExtensionConfig
from extensions.position_map import PositionMapExtension, positive_ints


@dataclass(frozen=True)
class DCAConfig(ExtensionConfig):
    chunk: int | None = None  # s: chunk size; default: 3L/4
    local: int | None = None  # w: the successive chunk keeps true distances below s + w; default: L/4

    def __post_init__(self):
        positive_ints(self, "chunk")
        positive_ints(self, "local", low=0)


class DualChunk(PositionMapExtension):
    name = "dca"
    config_cls = DCAConfig

    def defaults(self, config, L):
        return {"chunk": 3 * L // 4, "local": L - 3 * L // 4}

    def check(self, config, L):
        if config.local > config.chunk:
            raise ValueError(f"local {config.local} must be at most chunk {config.chunk}")
        if config.chunk + config.local > L:
            raise ValueError(f"chunk + local = {config.chunk + config.local} exceeds the model's trained window {L} "
                             "(the largest distance DCA uses is chunk + local − 1)")

    def position_map(self, config, length, model_config):
        from kernels.spec import chunk_map

        return chunk_map(config.chunk, config.local)

    def short_label(self, params: dict) -> str:
        return f"dca s{params.get('chunk')} w{params.get('local')}"
