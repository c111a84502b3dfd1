"""YaRN (Peng et al. 2023, "YaRN: Efficient Context Window Extension of Large Language Models").

NTK-by-parts: for each rotary pair i, r_i = L_orig / λ_i is how many full turns the pair makes over the original
context (λ_i = 2π/θ_i). Pairs with r_i > beta_fast keep θ_i (extrapolate), pairs with r_i < beta_slow are divided by
s (interpolate), and a linear ramp γ blends the two in between: θ'_i = (1 − γ_i)·θ_i/s + γ_i·θ_i.
Attention temperature: logits are scaled by 1/t with sqrt(1/t) = 0.1·ln(s) + 1, applied (as transformers does) by
multiplying cos and sin by that factor, which scales q·k by its square.

Ramp boundaries follow transformers (dimension index where the pair makes `beta` turns, floored/ceiled), so the
frequencies match its rope_type "yarn" exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from extensions.rope import RopeExtension, ScaledRopeConfig, rope_dims, yarn_mscale


@dataclass(frozen=True)
class YarnConfig(ScaledRopeConfig):
    beta_fast: float = 32.0  # pairs turning more often than this over the original context are left as they are
    beta_slow: float = 1.0  # pairs turning less often than this are fully interpolated
    original_max_position_embeddings: int | None = None  # L_orig; default: the model's max_position_embeddings
    attention_factor: float | None = None  # cos/sin multiplier; default: 0.1·ln(s) + 1

    def __post_init__(self):
        super().__post_init__()
        if not self.beta_fast > self.beta_slow > 0:
            raise ValueError(f"need beta_fast > beta_slow > 0, got beta_fast={self.beta_fast}, "
                             f"beta_slow={self.beta_slow}")
        if self.original_max_position_embeddings is not None and self.original_max_position_embeddings < 1:
            raise ValueError(f"original_max_position_embeddings must be positive, "
                             f"got {self.original_max_position_embeddings}")


def yarn_inv_freq(dim: int, base: float, factor: float, original_max: int, beta_fast: float = 32.0,
                  beta_slow: float = 1.0):
    """NTK-by-parts frequencies: (dim/2,) float32."""
    import torch

    def dim_for_turns(turns: float) -> float:  # the (fractional) dimension index whose pair makes `turns` turns
        return dim * math.log(original_max / (turns * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(dim_for_turns(beta_fast)), 0)
    high = min(math.ceil(dim_for_turns(beta_slow)), dim - 1)
    if low == high:
        high += 0.001  # a degenerate ramp becomes a step
    theta = 1.0 / (base ** (torch.arange(0, dim, 2).to(torch.float32) / dim))  # (dim/2,)
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    keep = 1 - ramp  # γ: 1 → keep θ (high frequency), 0 → θ/s (low frequency)
    return theta / factor * (1 - keep) + theta * keep


class Yarn(RopeExtension):
    name = "yarn"
    config_cls = YarnConfig

    def resolve(self, config: YarnConfig, hf_config) -> YarnConfig:
        config = super().resolve(config, hf_config)
        if config.original_max_position_embeddings is None:
            import dataclasses

            return dataclasses.replace(config,
                                       original_max_position_embeddings=int(hf_config.max_position_embeddings))
        return config

    def rope_parameters(self, config: YarnConfig, hf_config) -> dict:
        _, base = rope_dims(hf_config)
        params = {**hf_config.rope_parameters, "rope_type": "yarn", "factor": float(config.factor),
                  "rope_theta": base, "beta_fast": float(config.beta_fast), "beta_slow": float(config.beta_slow),
                  "original_max_position_embeddings": int(config.original_max_position_embeddings)}
        if config.attention_factor is not None:
            params["attention_factor"] = float(config.attention_factor)
        return params

    def inv_freq(self, config: YarnConfig, hf_config, seq_len=None):
        dim, base = rope_dims(hf_config)
        orig = config.original_max_position_embeddings or hf_config.max_position_embeddings
        scaling = config.attention_factor if config.attention_factor is not None else yarn_mscale(config.factor)
        return yarn_inv_freq(dim, base, config.factor, orig, config.beta_fast, config.beta_slow), scaling
