"""NTK-aware RoPE scaling (bloc97, 2023; formalised in Peng et al. 2023, §3.1): change the base instead of the
positions, b' = b · s^(d/(d−2)). The highest frequency (i = 0) is unchanged; the lowest (i = d/2 − 1) is divided by
exactly s. Expressed to transformers as the default RoPE with a new rope_theta."""
from __future__ import annotations

from dataclasses import dataclass

from extensions.rope import RopeExtension, ScaledRopeConfig, default_inv_freq, rope_dims


@dataclass(frozen=True)
class NTKConfig(ScaledRopeConfig):
    pass


def ntk_base(base: float, factor: float, dim: int) -> float:
    """b' = b · s^(d/(d−2))."""
    return base * factor ** (dim / (dim - 2))


class NTKAware(RopeExtension):
    name = "ntk"
    config_cls = NTKConfig

    def rope_parameters(self, config: NTKConfig, hf_config) -> dict:
        dim, base = rope_dims(hf_config)
        return {**hf_config.rope_parameters, "rope_type": "default", "rope_theta": ntk_base(base, config.factor, dim)}

    def inv_freq(self, config: NTKConfig, hf_config, seq_len=None):
        dim, base = rope_dims(hf_config)
        return default_inv_freq(dim, ntk_base(base, config.factor, dim)), 1.0
