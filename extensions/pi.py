"""Linear position interpolation (Chen et al. 2023, "Extending Context Window of Large Language Models via
Positional Interpolation"): position p → p / s, i.e. every θ_i divided by s. transformers' rope_type "linear"."""
from __future__ import annotations

from dataclasses import dataclass

from extensions.rope import RopeExtension, ScaledRopeConfig, default_inv_freq, rope_dims


@dataclass(frozen=True)
class PIConfig(ScaledRopeConfig):
    pass


def pi_inv_freq(dim: int, base: float, factor: float):
    """θ_i / s: (dim/2,) float32. A query/key pair at positions (s·p, s·q) sees the angles of (p, q) unscaled."""
    return default_inv_freq(dim, base) / factor


class PositionInterpolation(RopeExtension):
    name = "pi"
    config_cls = PIConfig

    def rope_parameters(self, config: PIConfig, hf_config) -> dict:
        _, base = rope_dims(hf_config)
        return {**hf_config.rope_parameters, "rope_type": "linear", "factor": float(config.factor),
                "rope_theta": base}

    def inv_freq(self, config: PIConfig, hf_config, seq_len=None):
        dim, base = rope_dims(hf_config)
        return pi_inv_freq(dim, base, config.factor), 1.0
