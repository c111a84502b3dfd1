"""Partial RoPE by proportion (transformers' rope_type "proportional", as Gemma 4 ships it; the idea studied as
p-RoPE by Barbero et al. 2025, "Round and Round We Go! What makes Rotary Positional Encodings useful?").

Only the first ⌊p·d/2⌋ rotary pairs keep rotating — the high frequencies, θ_i = b^(−2i/d) with d the head dim — and
the remaining low-frequency pairs get θ_i = 0: they carry no position, so the slow angles that a model never saw
complete a turn in training cannot go out of distribution at long range. Every kept frequency is then divided by
`factor` (1: none). p = 1 with factor s is position interpolation.
"""
from __future__ import annotations

from dataclasses import dataclass

from extensions.rope import RopeExtension, ScaledRopeConfig, rope_dims, untrained


@dataclass(frozen=True)
class ProportionalConfig(ScaledRopeConfig):
    factor: float = 1.0  # every kept frequency divided by this (1: unchanged)
    partial_rotary_factor: float = 0.75  # p: the fraction of rotary pairs that keep rotating

    def __post_init__(self):
        super().__post_init__()
        p = self.partial_rotary_factor
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 < p <= 1:
            raise ValueError(f"partial_rotary_factor must be in (0, 1], got {p!r}")


def proportional_inv_freq(head_dim: int, base: float, proportion: float, factor: float = 1.0):
    """(head_dim/2,) float32: b^(−2i/head_dim) / s for the first ⌊p·head_dim/2⌋ pairs, 0 for the rest."""
    import torch

    kept = int(proportion * head_dim // 2)
    inv = 1.0 / (base ** (torch.arange(0, 2 * kept, 2, dtype=torch.int64).to(torch.float32) / head_dim))
    return torch.cat([inv, torch.zeros(head_dim // 2 - kept)]) / factor


class Proportional(RopeExtension):
    name = "proportional"
    config_cls = ProportionalConfig

    def resolve(self, config: ProportionalConfig, hf_config) -> ProportionalConfig:
        config = super().resolve(config, hf_config)
        dim, _ = rope_dims(hf_config)
        if dim != _head_dim(hf_config):
            raise ValueError(f"proportional sets which pairs rotate over the whole head, but this "
                             f"{hf_config.model_type} model already rotates {dim} of {_head_dim(hf_config)} "
                             "dimensions (partial rotary); use pi, ntk, yarn or llama3")
        if int(config.partial_rotary_factor * dim // 2) < 1:
            raise ValueError(f"partial_rotary_factor={config.partial_rotary_factor} keeps no rotary pair of "
                             f"{dim // 2}; raise it")
        return config

    def rope_parameters(self, config: ProportionalConfig, hf_config) -> dict:
        _, base = rope_dims(hf_config)
        return {**untrained(hf_config.rope_parameters), "rope_type": "proportional", "rope_theta": base,
                "factor": float(config.factor), "partial_rotary_factor": float(config.partial_rotary_factor)}

    def inv_freq(self, config: ProportionalConfig, hf_config, seq_len=None):
        _, base = rope_dims(hf_config)
        return proportional_inv_freq(_head_dim(hf_config), base, config.partial_rotary_factor, config.factor), 1.0

    def short_label(self, params: dict) -> str:
        """"proportional p=0.75" (and ×s where a factor is given)."""
        s = params.get("factor", 1.0)
        return f"proportional p={params.get('partial_rotary_factor', 0.75):g}" + (f" ×{s:g}" if s != 1 else "")


def _head_dim(hf_config) -> int:
    return getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
