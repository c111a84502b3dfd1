"""Dynamic NTK scaling (emozilla, 2023), with transformers' semantics: for a sequence of L tokens,
b(L) = b · ((s·L / L_train) − (s − 1))^(d/(d−2)) when L > L_train, else b. Shorter inputs run unscaled.

Cached-key caveat: the base depends on the current length, so keys cached while the sequence was shorter were
rotated with an older base than the queries that read them later. transformers leaves them as they are. The HF
runner re-rotates cached keys whenever the base changes (option `rerotate`, default true), so every attention
score uses one base; set rerotate=false to reproduce transformers' behaviour exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

from extensions.rope import RopeExtension, ScaledRopeConfig, default_inv_freq, rope_dims


@dataclass(frozen=True)
class DynamicNTKConfig(ScaledRopeConfig):
    rerotate: bool = True  # re-rotate cached keys when the base grows (runners that can)

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.rerotate, bool):
            raise ValueError(f"rerotate must be true or false, got {self.rerotate!r}")


def dynamic_ntk_base(base: float, factor: float, dim: int, seq_len: int, trained_len: int) -> float:
    """b(L) = b · ((s·L/L_train) − (s − 1))^(d/(d−2)) for L > L_train, else b."""
    if seq_len <= trained_len:
        return base
    return base * ((factor * seq_len / trained_len) - (factor - 1)) ** (dim / (dim - 2))


class DynamicNTK(RopeExtension):
    name = "dynamic-ntk"
    static_keys = False  # the rotation depends on the prompt's length
    config_cls = DynamicNTKConfig
    per_layer_type = False  # its base grows on one rotary module per model
    rerotates_cache = True

    def rope_parameters(self, config: DynamicNTKConfig, hf_config) -> dict:
        _, base = rope_dims(hf_config)
        return {**hf_config.rope_parameters, "rope_type": "dynamic", "factor": float(config.factor),
                "rope_theta": base}

    def inv_freq(self, config: DynamicNTKConfig, hf_config, seq_len=None):
        dim, base = rope_dims(hf_config)
        trained = hf_config.max_position_embeddings
        return default_inv_freq(dim, dynamic_ntk_base(base, config.factor, dim, seq_len or trained, trained)), 1.0

    def before_request(self, model, config: DynamicNTKConfig) -> None:
        # transformers keeps the grown base on the module between calls (it only grows, or resets below the
        # trained length); a new request must start from the trained base.
        for rope in _rotary_modules(model):
            rope.inv_freq = rope.original_inv_freq.to(rope.inv_freq.device)
            rope.max_seq_len_cached = rope.original_max_seq_len

    def kv_policy(self, config: DynamicNTKConfig, model_config):
        """Re-rotate cached keys from the base of length L − 1 to the base of length L before each decode step."""
        if not config.rerotate:
            return None
        from extensions.base import KVPolicy

        trained = model_config.max_position_embeddings

        def delta(seq_len: int):
            if seq_len <= trained:
                return None
            old, _ = self.inv_freq(config, model_config, seq_len=seq_len - 1)
            new, _ = self.inv_freq(config, model_config, seq_len=seq_len)
            return new - old

        return KVPolicy(rerotate=delta)


def _rotary_modules(model):
    return [m for m in model.modules() if hasattr(m, "original_inv_freq") and hasattr(m, "max_seq_len_cached")]
