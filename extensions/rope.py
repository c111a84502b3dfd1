"""Shared RoPE math (pure functions, CPU-testable) and the base class of the RoPE-scaling methods.

RoPE (Su et al. 2021) rotates each pair i of a head's dimensions by angle p·θ_i at position p, with
θ_i = b^(−2i/d) for i = 0 .. d/2−1 (b: the base, "rope_theta"; d: the rotary dimension). Every RoPE scaling method
changes θ (or, equivalently, the positions) and some also scale the attention logits; the functions below return
`inv_freq` = θ as a (d/2,) float32 tensor.

The methods reach the model through transformers' own extension point, `config.rope_parameters` (rope_type,
factor, rope_theta ...), set before the weights load; no forward method is replaced.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from extensions.base import ROPE_PARAMETERS, Extension, ExtensionConfig, format_param
from kernels.rotary import rotate, rotate_half  # noqa: F401  (re-exported: one copy of the rotation)


# configure() keeps the trained rope parameters on the config under this name, so that the math can always be
# recomputed from the trained base (applying NTK's base change twice would be a silent error).
ORIGINAL = "longctx_original_rope_parameters"


def default_inv_freq(dim: int, base: float):
    """θ_i = base^(−2i/dim), i = 0 .. dim/2 − 1. Returns (dim/2,) float32."""
    import torch

    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float32) / dim))


def rope_dims(hf_config: Any) -> tuple[int, float]:
    """(rotary dimension d, base b) of a transformers config, as trained (before any RoPE method changed it)."""
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    params = getattr(hf_config, ORIGINAL, None) or getattr(hf_config, "rope_parameters", None) or {}
    base = params.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
    dim = int(head_dim * params.get("partial_rotary_factor", 1.0))
    return dim, float(base)


@dataclass(frozen=True)
class ScaledRopeConfig(ExtensionConfig):
    """Common to the factor-based RoPE methods."""

    factor: float = 2.0  # s: the context extension ratio (target length / trained length)
    replace: bool = False  # on a model whose RoPE was scaled in training (llama3, yarn ...): replace that scaling

    def __post_init__(self):
        if not isinstance(self.replace, bool):
            raise ValueError(f"replace must be true or false, got {self.replace!r}")
        if not isinstance(self.factor, (int, float)) or isinstance(self.factor, bool):
            raise ValueError(f"factor must be a number, got {self.factor!r}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1 (it is the extension ratio), got {self.factor}; "
                             "use e.g. factor=2 to double the context")


# Keys of a trained scaling that must not leak into a method's own rope parameters (-E replace=true).
SCALING_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings", "beta_fast",
                "beta_slow", "attention_factor", "short_factor", "long_factor", "mscale", "mscale_all_dim",
                "truncate", "short_mscale", "long_mscale")


def untrained(params: dict) -> dict:
    """Rope parameters less any trained scaling's own keys (rope_theta, partial_rotary_factor ... stay)."""
    return {k: v for k, v in params.items() if k not in SCALING_KEYS}


def require_rope(name: str, hf_config: Any, what: str = "rescales RoPE") -> None:
    """Refuse, in one line, a rotary method on a model without rotary embeddings (Bloom, MPT, Mamba...)."""
    if not getattr(hf_config, "rope_parameters", None):
        raise ValueError(f"{name!r} {what}, but this {hf_config.model_type} model has no RoPE; "
                         "use none (or alibi for ALiBi models)")


class RopeExtension(Extension):
    """A RoPE method: `rope_parameters(cfg, hf_config)` says what transformers should use."""

    mechanisms: ClassVar[frozenset[str]] = frozenset({ROPE_PARAMETERS})
    per_layer_type: ClassVar[bool] = True  # static frequencies: each layer type's parameters rescaled on its own

    def resolve(self, config: Any, hf_config: Any) -> Any:
        require_rope(self.name, hf_config)
        return config

    def rope_parameters(self, config: Any, hf_config: Any) -> dict:
        raise NotImplementedError

    def inv_freq(self, config: Any, hf_config: Any, seq_len: int | None = None):
        """(inv_freq (d/2,), attention_scaling) that a sequence of `seq_len` tokens is processed with."""
        raise NotImplementedError

    def configure(self, hf_config: Any, config: Any, profile: Any = None) -> dict:
        """Set the method's rope parameters. With parameters per layer type (Gemma 3), the types that
        profile's `rescaled_layer_types()` names are rescaled, each from its own trained parameters; the others
        keep theirs. On a RoPE scaled in training, the method's parameters replace the trained ones (only with
        replace=true: harness.support refuses otherwise). profile: the model's harness.profile.ModelProfile (read
        here, not imported: extensions sit below harness)."""
        if not getattr(hf_config, "rope_parameters", None):
            raise ValueError(f"extension {self.name!r} needs a RoPE model; "
                             f"{type(hf_config).__name__} has no rope_parameters")
        if getattr(hf_config, ORIGINAL, None):
            raise ValueError(f"this config already carries a RoPE method ({hf_config.rope_parameters}); "
                             "apply one method to a freshly loaded config")
        before = dict(hf_config.rope_parameters)
        per_type = {k: v for k, v in before.items() if isinstance(v, dict)}
        if per_type:
            import copy

            types = profile.rescaled_layer_types() if profile is not None else tuple(per_type)
            new = dict(before)
            for t in types:
                view = copy.copy(hf_config)
                view.rope_parameters = dict(per_type[t])
                new[t] = self.rope_parameters(config, view)
            record = {"rescaled_layer_types": list(types)}
        else:
            new, record = self.rope_parameters(config, hf_config), {}
        setattr(hf_config, ORIGINAL, before)
        hf_config.rope_parameters = new
        own = new.get("original_max_position_embeddings")
        attr = getattr(hf_config, "original_max_position_embeddings", None)
        if own is not None and attr is not None and attr != own:
            # transformers gives a config's own attribute (Phi-3's) priority over the rope parameters' value for
            # llama3 / yarn / longrope: left as it was, the model would run another L than the method computed.
            hf_config.original_max_position_embeddings = int(own)
            record["original_max_position_embeddings_attribute"] = {"before": attr, "after": int(own)}
        return {"rope_parameters_before": before, "rope_parameters": dict(hf_config.rope_parameters), **record}

    def short_label(self, params: dict) -> str:
        """"yarn ×4": the factor always, other parameters only where changed."""
        rest = {k: v for k, v in self.changed(params).items() if k != "factor"}
        factor = params.get("factor", 1)
        return " ".join([f"{self.name} ×{factor:g}"] + [f"{k}={format_param(v)}" for k, v in sorted(rest.items())])

    def inspect(self, config: Any, hf_config: Any, length: int | None = None) -> dict:
        """The frequencies and attention scaling the method computes; with rope parameters per layer type, for each
        type from its own trained parameters (which types are rescaled: `harness.support`, `longctx models check`)."""
        params = dict(getattr(hf_config, "rope_parameters", None) or {})
        per_type = {k: v for k, v in params.items() if isinstance(v, dict)}
        if per_type:
            import copy

            out = {}
            for t, p in sorted(per_type.items()):
                view = copy.copy(hf_config)
                view.rope_parameters = dict(p)
                inv_freq, scaling = self.inv_freq(config, view, seq_len=length)
                out[t] = {"inv_freq": [float(x) for x in inv_freq], "attention_scaling": float(scaling)}
            return {"per_layer_type": out}
        inv_freq, scaling = self.inv_freq(config, hf_config, seq_len=length)
        return {"inv_freq": [float(x) for x in inv_freq], "attention_scaling": float(scaling)}


def rotary_inv_freq(model):
    """The (D/2,) inverse frequencies of a transformers RoPE model's rotary module, or None without one."""
    for m in model.modules():
        if hasattr(m, "inv_freq") and hasattr(m, "rope_type"):
            return m.inv_freq.detach().float().clone()
    return None


def yarn_mscale(factor: float) -> float:
    """YaRN's attention temperature as a multiplier of cos/sin: sqrt(1/t) = 0.1·ln(s) + 1 (Peng et al. 2023)."""
    return 1.0 if factor <= 1 else 0.1 * math.log(factor) + 1.0
