"""Route a transformers model's attention through an attention spec (kernels/), per model.

transformers' `AttentionInterface` is one global table keyed by name: a closure registered under a fixed name is
shared by every model in the process that uses that name, so two models configured differently would both run the
last one registered. Each model here gets its own name (`longctx_<impl>_<n>`), its closure holds its own extension
config, and `set_attn_implementation` switches only that model.

Bloom has no attention interface (its eager attention adds its ALiBi tensor to materialised scores): `install_bloom`
replaces the forward of that model's own attention modules with one that runs its trained slopes as an ALiBi spec.
"""
from __future__ import annotations

import itertools
from collections import Counter

_serial = itertools.count()


class SpecAttention:
    """The attention function of one model: builds the spec for the current length and layer, runs
    `kernels.attention`, and counts which implementation served each call (runners record it per request).

    What the model passes is composed with the method's spec, layer by layer (`compose`): its sliding window, its
    logit softcap, and its rotary embedding as the probe measured it (`harness.profile`: the layer's inv_freq,
    rotated dims and pairing; a layer without RoPE re-rotates by nothing), and its learned sink logits (`s_aux`,
    GPT-OSS) as the spec's sink_logits."""

    def __init__(self, extension, config, model_config, profile, impl: str):
        self.extension, self.config, self.model_config = extension, config, model_config
        self.profile, self.impl = profile, impl
        self.rotary = {la.index: la.rotary for la in profile.attention}
        self.used: Counter = Counter()
        self.tap = None  # harness.runners.diagnostics.Tap: reads chosen query rows' attention (--diagnostics)
        self.ablate: dict[int, list[int]] = {}  # layer → heads whose outputs are zeroed (--ablate-heads)
        self._specs: dict = {}  # (layer, window, softcap) → spec, for the current length
        self._length = None

    def spec(self, length: int, layer_idx=None, window=None, softcap=None, sink_logits=None):
        if self._length != length:
            self._specs, self._length = {}, length
        key = (layer_idx, window, softcap, None if sink_logits is None else id(sink_logits))
        if key not in self._specs:
            rot = self.rotary.get(layer_idx) if layer_idx is not None else _only(set(self.rotary.values()))
            inv = rot.tensor() if rot is not None else _no_rotation(self.profile)
            base = self.extension.attention_spec(self.config, self.model_config, inv, length)
            self._specs[key] = compose(base, window=window, softcap=softcap, rotary=rot, sink_logits=sink_logits)
        return self._specs[key]

    def __call__(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        from kernels import attention, key_positions

        q_pos = query_positions(query, kwargs)
        spec = self.spec(int(q_pos[-1]) + 1, getattr(module, "layer_idx", None), kwargs.get("sliding_window"),
                         kwargs.get("softcap"), kwargs.get("s_aux"))
        k_pos = key_positions(spec, q_pos, key.shape[2])
        out, used = attention(query, key, value, spec, q_pos, k_pos, scale=scaling, impl=self.impl)
        self.used[used] += 1
        if self.tap is not None and self.tap.armed:
            self.tap.observe(module, query, key, spec, q_pos, k_pos, scaling)
        if self.ablate:
            heads = self.ablate.get(getattr(module, "layer_idx", None))
            if heads:
                out = out.clone()
                out[:, heads] = 0  # (B, H, T, D)
        return out.transpose(1, 2).contiguous(), None  # (B, T, H, D), what transformers' attention functions return


def _only(values: set):
    return next(iter(values)) if len(values) == 1 else None


def _no_rotation(profile):
    """inv_freq for a layer without RoPE: re-rotating by zero angles leaves q and k as they are."""
    import torch

    return torch.zeros(max(1, (profile.head_dim or 2) // 2))


def compose(spec, window=None, softcap=None, rotary=None, sink_logits=None):
    """The method's spec on a layer of the model: the layer's own sliding window intersected with what the method
    shows, its logit softcap, its rotary pairing, its learned sink logits (H,).

    Window W_s of the model with
      plain causal / ALiBi      the window W_s;
      a method's window W       W ≥ W_s: the model's window alone (sinks out of its reach are never seen);
      (+ sinks S)               W < W_s: sinks + W, sinks visible only within W_s (a distance ceiling);
      a position map, no window its regimes inside W_s (e.g. SelfExtend's grouped regime only for N ≤ p_i − p_j < W_s)."""
    import dataclasses

    changes = {}
    if rotary is not None and spec.inv_freq is not None:
        changes["rotary_layout"] = rotary.layout
    if softcap:
        changes["softcap"] = float(softcap)
    if sink_logits is not None:
        changes["sink_logits"] = sink_logits.detach().float()
    if window:
        w = int(window)
        if spec.window is None:  # a map without a window of its own: its regimes inside the model's window
            changes["window"] = w
        elif spec.window >= w:  # the model's window alone: the method's sinks (and their map) are out of reach
            changes.update(window=w, sink_tokens=0, position_map=None)
        elif spec.sink_tokens:
            changes["max_distance"] = w
    return dataclasses.replace(spec, **changes) if changes else spec


def query_positions(query, kwargs):
    """Absolute positions of the queries: transformers passes position_ids (1, T) down to attention functions."""
    pos = kwargs.get("position_ids")
    if pos is None:
        raise RuntimeError("position_ids did not reach the attention function; this transformers version is not "
                           "supported by longctx's attention-spec runners")
    return pos.reshape(-1)[-query.shape[2]:].to(query.device)


def install(model, extension, config, impl: str, profile=None) -> tuple[SpecAttention, dict]:
    """Make `model` compute attention as `extension` specifies, with implementation `impl` (kernels.IMPLEMENTATIONS),
    composed with what `profile` (harness.profile, probed on this model; probed here when not given) says each layer
    does.
    Returns the attention function (its `used` counter) and a record for run.json."""
    from transformers import AttentionInterface

    if profile is None:
        from harness.profile import probe_model

        profile = probe_model(model)
    fn = SpecAttention(extension, config, model.config, profile, impl)
    name = f"longctx_{impl.replace('-', '_')}_{next(_serial)}"
    AttentionInterface.register(name, fn)
    before = model.config._attn_implementation
    model.set_attn_implementation(name)
    length = int(getattr(model.config, "max_position_embeddings", 0) or 1)
    layers = sorted({(la.index, la.window, la.softcap) for la in profile.attention}) or [(None, None, None)]
    described = sorted({fn.spec(length, *la).describe() for la in layers})
    return fn, {"attn_implementation_before": before, "attn_implementation": name,
                "attention_spec": "; ".join(described), "kernel_impl": impl}


class BloomSpecAttention:
    """The attention of one Bloom model as an ALiBi spec (its own slopes), counting implementations like
    SpecAttention. Bloom adds m_h·p_j to the scores; softmax is shift-invariant per query, so this equals the
    spec's −m_h·(p_i − p_j)."""

    def __init__(self, model, impl: str):
        import torch
        from transformers.models.bloom.modeling_bloom import build_alibi_tensor

        from kernels.spec import AttentionSpec

        heads = model.config.n_head
        slopes = build_alibi_tensor(torch.ones(1, 2), heads, torch.float32)[:, 0, 1]  # (H,): the bias at p_j = 1
        self.spec, self.impl, self.used = AttentionSpec(alibi_slopes=slopes), impl, Counter()

    def forward(self, module, hidden_states, residual, alibi, attention_mask, layer_past=None, use_cache=False,
                output_attentions=False, **kwargs):
        """BloomAttention.forward with the scores left to the kernel (the `alibi` and mask arguments unused)."""
        import torch
        from transformers.models.bloom.modeling_bloom import dropout_add

        from kernels import attention

        B, T, _ = hidden_states.shape
        q, k, v = module._reshape(module.query_key_value(hidden_states))  # (B, H, T, D) each
        if layer_past is not None:
            k, v = layer_past.update(k, v, module.layer_idx)
        S = k.shape[2]
        k_pos = torch.arange(S, device=q.device)
        out, used = attention(q, k, v, self.spec, k_pos[S - T:], k_pos, scale=module.inv_norm_factor, impl=self.impl)
        self.used[used] += 1
        context = out.transpose(1, 2).reshape(B, T, module.hidden_size)
        return dropout_add(module.dense(context), residual, module.hidden_dropout, module.training), None


def install_bloom(model, impl: str) -> tuple[BloomSpecAttention, dict]:
    """Make every attention module of this Bloom model run its ALiBi through `kernels.attention` (impl)."""
    import functools

    from transformers.models.bloom.modeling_bloom import BloomAttention

    if model.config.pretraining_tp > 1 and model.config.slow_but_exact:
        raise ValueError("Bloom with pretraining_tp > 1 and slow_but_exact is not supported by the kernel runner")
    fn = BloomSpecAttention(model, impl)
    modules = [m for m in model.modules() if isinstance(m, BloomAttention)]
    for m in modules:
        m.forward = functools.partial(fn.forward, m)
    return fn, {"attention_spec": fn.spec.describe() + " (Bloom's trained slopes)", "kernel_impl": impl,
                "attention_modules_replaced": len(modules)}


# Attention modules that do not call transformers' attention interface but that the kernel runner drives itself,
# by class name → their installer (the model's own declaration: its attention classes, read by the profile's probe)
OWN_MODULE_INSTALLERS = {"BloomAttention": install_bloom}


def own_modules(profile) -> bool:
    """Whether the model's attention is modules outside the interface that `OWN_MODULE_INSTALLERS` drives (Bloom's
    ALiBi attention: the model applies its trained slopes itself)."""
    return bool(profile.attention_classes) and not profile.through_interface and \
        set(profile.attention_classes) <= set(OWN_MODULE_INSTALLERS)

