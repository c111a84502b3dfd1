"""Llama 3.1's RoPE scaling (Meta 2024, "The Llama 3 Herd of Models"; transformers' rope_type "llama3").

Per rotary pair i with wavelength λ_i = 2π/θ_i, against the original context L (original_max_position_embeddings):
  λ_i < L / high_freq_factor   high frequency, kept:        θ'_i = θ_i
  λ_i > L / low_freq_factor    low frequency, interpolated:  θ'_i = θ_i / s
  otherwise                    blended by γ = (L/λ_i − low_freq_factor) / (high_freq_factor − low_freq_factor):
                               θ'_i = (1 − γ)·θ_i/s + γ·θ_i.
No attention temperature. It is NTK-by-parts (YaRN without its temperature) with the ramp placed by wavelength
fractions of L instead of turn counts; Llama 3.1 shipped it with s = 8, factors 1 and 4, L = 8192.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from extensions.rope import RopeExtension, ScaledRopeConfig, default_inv_freq, rope_dims, untrained


@dataclass(frozen=True)
class Llama3Config(ScaledRopeConfig):
    low_freq_factor: float = 1.0  # pairs with wavelength above L / low_freq_factor are divided by the factor
    high_freq_factor: float = 4.0  # pairs with wavelength below L / high_freq_factor are kept
    original_max_position_embeddings: int | None = None  # L; default: the model's max_position_embeddings

    def __post_init__(self):
        super().__post_init__()
        for name in ("low_freq_factor", "high_freq_factor"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if not self.high_freq_factor > self.low_freq_factor:
            raise ValueError(f"need high_freq_factor > low_freq_factor, got high_freq_factor={self.high_freq_factor}"
                             f", low_freq_factor={self.low_freq_factor}")
        check_original(self.original_max_position_embeddings)


def check_original(value) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"original_max_position_embeddings must be a positive integer, got {value!r}")


def with_original(config, hf_config):
    """config with original_max_position_embeddings filled from the model's max_position_embeddings where unset
    (as yarn does; a config's own `original_max_position_embeddings` attribute belongs to the scaling it was trained
    with, which these methods replace only with replace=true)."""
    if config.original_max_position_embeddings is None:
        return dataclasses.replace(config, original_max_position_embeddings=int(hf_config.max_position_embeddings))
    return config


def llama3_inv_freq(dim: int, base: float, factor: float, original_max: int, low_freq_factor: float = 1.0,
                    high_freq_factor: float = 4.0):
    """(dim/2,) float32: the three bands above, computed from wavelengths."""
    import torch

    theta = default_inv_freq(dim, base)
    wavelength = 2 * math.pi / theta
    gamma = ((original_max / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)).clamp(0, 1)
    blended = (1 - gamma) * theta / factor + gamma * theta
    out = torch.where(wavelength < original_max / high_freq_factor, theta, blended)
    return torch.where(wavelength > original_max / low_freq_factor, theta / factor, out)


class Llama3(RopeExtension):
    name = "llama3"
    config_cls = Llama3Config

    def resolve(self, config: Llama3Config, hf_config) -> Llama3Config:
        return with_original(super().resolve(config, hf_config), hf_config)

    def rope_parameters(self, config: Llama3Config, hf_config) -> dict:
        _, base = rope_dims(hf_config)
        return {**untrained(hf_config.rope_parameters), "rope_type": "llama3", "rope_theta": base,
                "factor": float(config.factor), "low_freq_factor": float(config.low_freq_factor),
                "high_freq_factor": float(config.high_freq_factor),
                "original_max_position_embeddings": int(config.original_max_position_embeddings)}

    def inv_freq(self, config: Llama3Config, hf_config, seq_len=None):
        dim, base = rope_dims(hf_config)
        config = with_original(config, hf_config)
        return llama3_inv_freq(dim, base, config.factor, config.original_max_position_embeddings,
                               config.low_freq_factor, config.high_freq_factor), 1.0
