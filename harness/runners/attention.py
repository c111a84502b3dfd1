"""Route a transformers model's attention through an attention spec (kernels/), per model.

transformers' `AttentionInterface` is one global table keyed by name: a closure registered under a fixed name is
shared by every model in the process that uses that name, so two models configured differently would both run the
last one registered. Each model here gets its own name (`longctx_<impl>_<n>`), its closure holds its own extension
config, and `set_attn_implementation` switches only that model.
"""
from __future__ import annotations

import itertools
from collections import Counter

_serial = itertools.count()


class SpecAttention:
    """The attention function of one model: builds the spec for the current length, runs `kernels.attention`,
    and counts which implementation served each call (runners record it per request)."""

    def __init__(self, extension, config, model_config, inv_freq, impl: str):
        self.extension, self.config, self.model_config = extension, config, model_config
        self.inv_freq, self.impl = inv_freq, impl
        self.used: Counter = Counter()
        self._spec = (None, None)  # (length, spec): one spec per forward, shared by its layers

    def spec(self, length: int):
        if self._spec[0] != length:
            self._spec = (length, self.extension.attention_spec(self.config, self.model_config, self.inv_freq,
                                                                length))
        return self._spec[1]

    def __call__(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        from kernels import attention, key_positions

        q_pos = query_positions(query, kwargs)
        spec = self.spec(int(q_pos[-1]) + 1)
        k_pos = key_positions(spec, q_pos, key.shape[2])
        out, used = attention(query, key, value, spec, q_pos, k_pos, scale=scaling, impl=self.impl)
        self.used[used] += 1
        return out.transpose(1, 2).contiguous(), None  # (B, T, H, D), what transformers' attention functions return


def query_positions(query, kwargs):
    """Absolute positions of the queries: transformers passes position_ids (1, T) down to attention functions."""
    pos = kwargs.get("position_ids")
    if pos is None:
        raise RuntimeError("position_ids did not reach the attention function; this transformers version is not "
                           "supported by longctx's attention-spec runners")
    return pos.reshape(-1)[-query.shape[2]:].to(query.device)


def install(model, extension, config, impl: str) -> tuple[SpecAttention, dict]:
    """Make `model` compute attention as `extension` specifies, with implementation `impl` (kernels.IMPLEMENTATIONS).
    Returns the attention function (its `used` counter) and a record for run.json."""
    from transformers import AttentionInterface

    from extensions.rope import rotary_inv_freq

    fn = SpecAttention(extension, config, model.config, rotary_inv_freq(model), impl)
    name = f"longctx_{impl.replace('-', '_')}_{next(_serial)}"
    AttentionInterface.register(name, fn)
    before = model.config._attn_implementation
    model.set_attn_implementation(name)
    spec = fn.spec(int(getattr(model.config, "max_position_embeddings", 0) or 1))
    return fn, {"attn_implementation_before": before, "attn_implementation": name, "attention_spec": spec.describe(),
                "kernel_impl": impl}

