"""ALiBi (Press et al. 2022, "Train Short, Test Long"): no position embedding, instead an additive logit bias
−m_h·(i − j) for query i and key j, with one slope m_h per head.

Slopes: for n heads and maximum bias B (8 in the paper), n' = the largest power of two ≤ n,
m_h = 2^(−B·h/n') for h = 1..n'; when n is not a power of two the remaining n − n' heads take the odd-indexed
slopes of the 2n' sequence, 2^(−B·(2h−1)/(2n')) for h = 1..n − n' (the paper's reference code, also Bloom's).

Slope scaling past the trained length L_train (`slope_scale`):
  none         the trained slopes at every length;
  interpolate  slopes × L_train / L for inputs of L > L_train tokens — the ALiBi analogue of position
               interpolation (Al-Khateeb et al. 2023, "Position Interpolation Improves ALiBi Extrapolation").

On a RoPE model the bias is added on top of the rotary scores (a recency prior; RoPE itself is untouched).
On a model trained with ALiBi (Bloom, MPT, Falcon-ALiBi) the trained slopes are already applied by the model:
`alibi` with slope_scale=none is then the identity, recorded as such.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from extensions.base import ATTENTION_SPEC, Extension, ExtensionConfig

SLOPE_SCALES = ("none", "interpolate")
NATIVE_ALIBI = ("bloom", "mpt")


def alibi_slopes(n_heads: int, max_bias: float = 8.0):
    """(n_heads,) float32 slopes."""
    import torch

    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = [2 ** (-max_bias * h / closest) for h in range(1, closest + 1)]
    extra = [2 ** (-max_bias * (2 * h - 1) / (2 * closest)) for h in range(1, n_heads - closest + 1)]
    return torch.tensor(slopes + extra, dtype=torch.float32)


@dataclass(frozen=True)
class AlibiConfig(ExtensionConfig):
    max_bias: float = 8.0  # B: slopes are 2^(−B·h/n)
    slope_scale: str = "none"  # none | interpolate
    train_length: int | None = None  # L_train for slope_scale=interpolate; default: the model's window

    def __post_init__(self):
        if not isinstance(self.max_bias, (int, float)) or self.max_bias <= 0:
            raise ValueError(f"max_bias must be a positive number, got {self.max_bias!r}")
        if self.slope_scale not in SLOPE_SCALES:
            raise ValueError(f"slope_scale must be one of {', '.join(SLOPE_SCALES)}, got {self.slope_scale!r}")
        if self.train_length is not None and (not isinstance(self.train_length, int) or self.train_length < 1):
            raise ValueError(f"train_length must be a positive integer, got {self.train_length!r}")


class Alibi(Extension):
    name = "alibi"
    config_cls = AlibiConfig
    mechanisms = frozenset({ATTENTION_SPEC})

    def identity_on_trained_alibi(self, config: AlibiConfig) -> bool:
        return config.slope_scale == "none" and config.max_bias == 8.0

    def resolve(self, config: AlibiConfig, hf_config) -> AlibiConfig:
        if hf_config.model_type in NATIVE_ALIBI and (config.slope_scale != "none" or config.max_bias != 8.0):
            raise ValueError(f"{hf_config.model_type} applies its trained ALiBi slopes itself; only "
                             "slope_scale=none and max_bias=8 are supported on it")
        if config.train_length is None:
            import dataclasses

            length = getattr(hf_config, "max_position_embeddings", None) or getattr(hf_config, "seq_length", None)
            return dataclasses.replace(config, train_length=int(length) if length else None)
        return config

    def slopes(self, config: AlibiConfig, hf_config, length: int | None = None):
        m = alibi_slopes(hf_config.num_attention_heads, config.max_bias)
        if config.slope_scale == "interpolate" and length and config.train_length and length > config.train_length:
            m = m * (config.train_length / length)
        return m

    def attention_spec(self, config: AlibiConfig, model_config, inv_freq, length: int):
        """Slopes for a sequence of `length` tokens (interpolated past the trained length when asked)."""
        from kernels.spec import AttentionSpec

        return AttentionSpec(alibi_slopes=self.slopes(config, model_config, length))

    def attach(self, model, config: AlibiConfig) -> dict:
        if model.config.model_type in NATIVE_ALIBI:
            self.resolve(config, model.config)  # refuses changed slopes on a model that applies its own
            return {"native_alibi": True, "changed": False}
        return {"slopes": [float(s) for s in self.slopes(config, model.config)]}

    def inspect(self, config: AlibiConfig, hf_config, length: int | None = None) -> dict:
        return {"slopes": [float(s) for s in self.slopes(config, hf_config, length)]}
