"""Attention temperatures that grow with position: queries past the trained window are multiplied by t(p) ≥ 1, so
the softmax over ever more keys stays as sharp as it was in training (attention entropy grows like log n otherwise).

  logn            t = max(1, log(p + 1) / log(L))          Qwen's log-n attention (Qwen-7B's use_logn_attn;
                                                          Chiang & Cholak 2022 motivate the log n factor)
  llama4-scaling  t = 1 + a·log(⌊(p + 1)/F⌋ + 1)           Llama 4's attention temperature tuning (F = 8192,
                                                          a = 0.1 there; F defaults to L here)
Neither moves a position: no re-rotation, and they run on models with or without RoPE."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from extensions.base import ATTENTION_SPEC, Extension, ExtensionConfig
from extensions.position_map import positive_ints, trained_length


@dataclass(frozen=True)
class LognConfig(ExtensionConfig):
    length: int | None = None  # L: the temperature starts past it; default: the trained window

    def __post_init__(self):
        positive_ints(self, "length", low=2)


@dataclass(frozen=True)
class Llama4ScalingConfig(ExtensionConfig):
    floor_scale: int | None = None  # F: default: the trained window
    attn_scale: float = 0.1  # a

    def __post_init__(self):
        positive_ints(self, "floor_scale", low=2)
        a = self.attn_scale
        if not isinstance(a, (int, float)) or isinstance(a, bool) or not math.isfinite(a) or a <= 0:
            raise ValueError(f"attn_scale must be a positive number, got {a!r}")


class _Temperature(Extension):
    mechanisms = frozenset({ATTENTION_SPEC})
    field = ""

    def resolve(self, config, hf_config):
        if getattr(config, self.field) is None:
            config = dataclasses.replace(config, **{self.field: trained_length(hf_config)})
        return config

    def query_scale(self, config):
        raise NotImplementedError

    def attention_spec(self, config, model_config, inv_freq, length: int):
        from kernels.spec import AttentionSpec

        return AttentionSpec(query_scale=self.query_scale(config))

    def inspect(self, config, hf_config, length=None):
        import torch

        config = self.resolve(config, hf_config)
        n = length or 4 * trained_length(hf_config)
        probe = sorted({0, n // 8, n // 4, n // 2, n - 1})
        return {"positions": probe, "temperature": [float(x) for x in self.query_scale(config)(torch.tensor(probe))]}


class Logn(_Temperature):
    name = "logn"
    config_cls = LognConfig
    field = "length"

    def query_scale(self, config):
        from kernels.spec import QueryScale

        return QueryScale("logn", int(config.length))


class Llama4Scaling(_Temperature):
    name = "llama4-scaling"
    config_cls = Llama4ScalingConfig
    field = "floor_scale"

    def query_scale(self, config):
        from kernels.spec import QueryScale

        return QueryScale("floor", int(config.floor_scale), float(config.attn_scale))
