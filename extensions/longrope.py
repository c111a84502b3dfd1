"""LongRoPE (Ding et al. 2024, "LongRoPE: Extending LLM Context Window Beyond 2 Million Tokens"; Phi-3 and Phi-4
ship it; transformers' rope_type "longrope").

Every rotary pair i has its own divisor λ_i, found by LongRoPE's evolutionary search: θ'_i = θ_i / λ_i. Two sets are
kept: `short_factor` for sequences within the original context L and `long_factor` beyond it (transformers switches
when the sequence grows past L). Attention logits get a temperature through cos/sin, by default
sqrt(1 + ln(s)/ln(L)) with s = `factor`.

The factors come from the user (-E long_factor=1,1.2,... with d/2 values, or a list in an experiment file) or from
a model trained with LongRoPE (its config's own factors, with -E replace=true to rescale them). On a model with
neither, the method is refused: there is no closed form for the searched factors.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from extensions.base import KVPolicy
from extensions.llama3 import check_original, with_original
from extensions.rope import ORIGINAL, RopeExtension, ScaledRopeConfig, default_inv_freq, rope_dims, untrained


def _factors(name: str, value):
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"{name} is one divisor per rotary pair (a list of d/2 numbers, e.g. "
                         f"-E {name}=1,1.5,2,...), got the single number {value!r}")
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name} must be a list of positive numbers, got {value!r}")
    for v in value:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must hold positive finite numbers, got {v!r}")
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class LongRopeConfig(ScaledRopeConfig):
    long_factor: tuple[float, ...] | None = None  # λ_i beyond L (d/2 values); default: the model's own
    short_factor: tuple[float, ...] | None = None  # λ_i within L; default: the model's own, else all 1 (unscaled)
    original_max_position_embeddings: int | None = None  # L; default: the model's (its original window)
    attention_factor: float | None = None  # cos/sin multiplier; default sqrt(1 + ln(factor)/ln(L))

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "long_factor", _factors("long_factor", self.long_factor))
        object.__setattr__(self, "short_factor", _factors("short_factor", self.short_factor))
        check_original(self.original_max_position_embeddings)
        a = self.attention_factor
        if a is not None and (not isinstance(a, (int, float)) or isinstance(a, bool) or not math.isfinite(a)
                              or a <= 0):
            raise ValueError(f"attention_factor must be a positive number, got {a!r}")


def longrope_attention_factor(factor: float, original_max: int) -> float:
    """sqrt(1 + ln(s)/ln(L)), 1 for s ≤ 1."""
    return 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(original_max))


def longrope_inv_freq(dim: int, base: float, factors):
    """θ_i / λ_i: (dim/2,) float32."""
    import torch

    return default_inv_freq(dim, base) / torch.tensor(factors, dtype=torch.float32)


class LongRope(RopeExtension):
    name = "longrope"
    config_cls = LongRopeConfig
    static_keys = False  # a prompt's keys take the short or the long factors depending on its whole length
    rerotates_cache = True  # keys cached within L move to the long factors when the sequence crosses L
    per_layer_type = False  # one set of factors per model

    def resolve(self, config: LongRopeConfig, hf_config) -> LongRopeConfig:
        config = super().resolve(config, hf_config)
        trained = dict(getattr(hf_config, ORIGINAL, None) or hf_config.rope_parameters or {})
        own = trained if trained.get("rope_type") == "longrope" else {}
        if config.original_max_position_embeddings is None and own.get("original_max_position_embeddings"):
            config = dataclasses.replace(config, original_max_position_embeddings=int(
                own["original_max_position_embeddings"]))
        config = with_original(config, hf_config)
        dim, _ = rope_dims(hf_config)
        long = config.long_factor or _factors("the model's long_factor", own.get("long_factor"))
        if long is None:
            raise ValueError(f"longrope needs long_factor ({dim // 2} divisors, one per rotary pair): this "
                             f"{hf_config.model_type} model was not trained with LongRoPE, so it has none to read; "
                             f"give -E long_factor=... (or use ntk-by-parts, yarn or llama3, which have closed forms)")
        short = config.short_factor or _factors("the model's short_factor", own.get("short_factor")) \
            or (1.0,) * (dim // 2)
        for name, values in (("long_factor", long), ("short_factor", short)):
            if len(values) != dim // 2:
                raise ValueError(f"{name} has {len(values)} values; this model has {dim // 2} rotary pairs "
                                 f"(rotary dim {dim})")
        return dataclasses.replace(config, long_factor=long, short_factor=short)

    def _attention_factor(self, config: LongRopeConfig) -> float:
        if config.attention_factor is not None:
            return float(config.attention_factor)
        return longrope_attention_factor(config.factor, config.original_max_position_embeddings)

    def rope_parameters(self, config: LongRopeConfig, hf_config) -> dict:
        _, base = rope_dims(hf_config)
        return {**untrained(hf_config.rope_parameters), "rope_type": "longrope", "rope_theta": base,
                "factor": float(config.factor), "long_factor": list(config.long_factor),
                "short_factor": list(config.short_factor), "attention_factor": self._attention_factor(config),
                "original_max_position_embeddings": int(config.original_max_position_embeddings)}

    def inv_freq(self, config: LongRopeConfig, hf_config, seq_len=None):
        dim, base = rope_dims(hf_config)
        config = self.resolve(config, hf_config) if config.long_factor is None else with_original(config, hf_config)
        long = seq_len is not None and seq_len > config.original_max_position_embeddings
        return longrope_inv_freq(dim, base, config.long_factor if long else config.short_factor), \
            self._attention_factor(config)

    def kv_policy(self, config: LongRopeConfig, model_config):
        """Keys cached while the sequence was within L were rotated with the short factors: move them to the long
        ones before the step that makes it L + 1 tokens long (transformers leaves them, a mix of two rotations)."""
        L = config.original_max_position_embeddings

        def delta(seq_len: int):
            if seq_len != L + 1:
                return None
            old, _ = self.inv_freq(config, model_config, seq_len=L)
            new, _ = self.inv_freq(config, model_config, seq_len=L + 1)
            return new - old

        return KVPolicy(rerotate=delta)
