"""What a model declares about its attention, read once into a small profile: every decision downstream asks it.

A long-context method meets a model at its attention: its windows, softcaps, rotary layout and frequencies, the
layers that have no RoPE, a RoPE already scaled in training, learned sink logits, recurrent layers, and whether
attention goes through transformers' attention interface at all (where longctx's kernels are installed). None of
it is decided from the family's name. It is read from:
- the config (layer types, sliding window, softcaps, logits scaling, rope parameters), and
- a probe forward: a counting attention function is registered for the model and the model is run on one token at
  positions 0, 1 and 57. With one token, attention returns the token's own value whatever the scores, so every
  layer's input is the same at every position and a layer's query and key at position p differ from those at 0 only
  by the layer's rotation. The probe counts the calls (attention off the interface: none), records the keywords
  the model passes (sliding_window, softcap, s_aux: learned sink logits), and fits each layer's rotation against
  the model's own inv_freq buffers in the half-split and the interleaved layout (a layer whose q and k do not move:
  no RoPE; one that moves but matches no hypothesis: a rotation longctx cannot re-rotate).

`read_profile(hf_config)` probes a random model built from the config (vocabulary and MLP shrunk, layers cut to one
period of their pattern when the model is large) before anything is loaded or written; `probe_model(model)` probes
the loaded model itself (what the runners use, keyed by the attention modules). Both give a `ModelProfile`.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

PROBE_POSITIONS = (1, 57)  # p = 1 fixes each frequency (θ ≤ π); p = 57 checks it where rotations have wrapped


@dataclass(frozen=True)
class Rotary:
    """One layer's rotary embedding as the probe measured it."""

    dim: int  # rotated dimensions: the first `dim` of each head (partial rotary when < head_dim)
    layout: str  # "half" (pairs i, i + dim/2: Llama) or "interleaved" (pairs 2i, 2i + 1: GPT-J, Cohere)
    inv_freq: tuple[float, ...]  # (dim/2,) θ_i, read from the model's own buffer that matched
    buffer: str  # that buffer's name

    def tensor(self):
        import torch

        return torch.tensor(self.inv_freq, dtype=torch.float32)


@dataclass(frozen=True)
class LayerProfile:
    index: int  # call order in a forward (= layer index for attention layers)
    layer_type: str | None  # the config's layer_types entry, if any
    window: int | None  # sliding window the model passes (the query counts itself); None: full attention
    softcap: float | None  # attention logit softcap the model passes
    learned_sinks: bool  # the model passes per-head sink logits (s_aux)
    rotary: Rotary | None  # None: the layer's q and k do not move with position (no RoPE on this layer)
    rotary_unknown: bool = False  # q and k move, but not by any rotation longctx can reproduce
    keywords: tuple[str, ...] = ()  # the keyword arguments the model passes to its attention function


@dataclass(frozen=True)
class ModelProfile:
    model_type: str
    num_layers: int
    head_dim: int | None
    layer_types: tuple[str, ...]  # the config's, or () without one
    attention: tuple[LayerProfile, ...]  # one per attention call of a forward, in order
    interface_calls: int  # attention-interface calls in one forward
    attention_modules: int  # modules that look like attention (have q/k projections), counted from the model
    recurrent_layers: tuple[str, ...]  # layer types whose state is not keys and values (mamba, conv, linear ...)
    rope: bool  # the config declares rotary embeddings and some layer rotates
    rope_type: str | None  # the trained scaling ("llama3", "yarn", "linear" ...); None for plain RoPE
    per_layer_rope: tuple[str, ...]  # layer types with rope parameters of their own (Gemma 3); () for one set
    alibi: bool  # trained ALiBi slopes: the config declares them, or a module builds them (Bloom's)
    final_softcap: float | None
    logits_scaling: float | None  # logits are divided by it (Granite)
    logit_scale: float | None  # logits are multiplied by it (Cohere)
    max_position: int | None
    probe_error: str | None = None  # why the probe could not run (then attention-level methods are refused)
    supports_sdpa: bool = True  # the model class declares transformers' SDPA attention (Bloom's does not)
    attention_classes: tuple[str, ...] = ()  # class names of the attention modules (a runner may drive its own)

    # ---------------------------------------------------------------------------------------------- features
    @property
    def through_interface(self) -> bool:
        """Every attention of the model goes through transformers' attention interface (where longctx installs)."""
        return self.probe_error is None and self.interface_calls > 0 and \
            self.interface_calls >= self.attention_modules

    @property
    def recurrent_only(self) -> bool:
        return bool(self.recurrent_layers) and self.attention_modules == 0

    @property
    def windows(self) -> dict[int, int]:
        return {la.index: la.window for la in self.attention if la.window is not None}

    @property
    def sliding(self) -> bool:
        return bool(self.windows)

    @property
    def softcap(self) -> float | None:
        caps = {la.softcap for la in self.attention if la.softcap}
        return max(caps) if caps else None

    @property
    def learned_sinks(self) -> bool:
        return any(la.learned_sinks for la in self.attention)

    @property
    def partial_rotary(self) -> bool:
        return any(la.rotary and self.head_dim and la.rotary.dim < self.head_dim for la in self.attention)

    @property
    def interleaved(self) -> bool:
        return any(la.rotary and la.rotary.layout == "interleaved" for la in self.attention)

    @property
    def nope_layers(self) -> tuple[int, ...]:
        return tuple(la.index for la in self.attention if la.rotary is None and not la.rotary_unknown) \
            if self.rope else ()

    @property
    def rotary_unknown(self) -> bool:
        return any(la.rotary_unknown for la in self.attention)

    @property
    def scaled_rope(self) -> bool:
        return self.rope_type is not None

    @property
    def post_processes_logits(self) -> bool:
        return bool(self.final_softcap or self.logits_scaling not in (None, 1.0)
                    or self.logit_scale not in (None, 1.0))

    def features(self) -> list[str]:
        """The features that differ from a plain Llama, each as one short phrase (for `longctx models check`)."""
        out = []
        if self.probe_error:
            out.append(f"probe failed: {self.probe_error}")
        if self.recurrent_only:
            out.append(f"recurrent only ({', '.join(self.recurrent_layers)})")
        elif self.recurrent_layers:
            out.append(f"hybrid: recurrent layers ({', '.join(self.recurrent_layers)})")
        if self.attention_modules and not self.through_interface and not self.probe_error:
            out.append(f"attention outside transformers' interface ({self.interface_calls} of "
                       f"{self.attention_modules} attention modules call it)")
        if self.sliding:
            w = sorted(set(self.windows.values()))
            out.append(f"sliding window {'/'.join(map(str, w))} on {len(self.windows)} of {len(self.attention)} "
                       "attention layers")
        if self.softcap:
            out.append(f"attention logit softcap {self.softcap:g}")
        if self.learned_sinks:
            out.append("learned sink logits")
        if self.alibi:
            out.append("trained ALiBi")
        if self.rope:
            if self.partial_rotary:
                dims = sorted({la.rotary.dim for la in self.attention if la.rotary})
                out.append(f"partial rotary ({'/'.join(map(str, dims))} of {self.head_dim} dims)")
            if self.interleaved:
                out.append("interleaved rotary pairs")
            if self.per_layer_rope:
                out.append(f"rope parameters per layer type ({', '.join(self.per_layer_rope)})")
            if self.rope_type:
                out.append(f"RoPE scaled in training ({self.rope_type})")
            if self.nope_layers:
                out.append(f"layers without RoPE ({', '.join(map(str, self.nope_layers))})")
            if self.rotary_unknown:
                out.append("a rotation longctx cannot reproduce")
        if self.final_softcap:
            out.append(f"final logit softcap {self.final_softcap:g}")
        if self.logits_scaling not in (None, 1.0):
            out.append(f"logits divided by {self.logits_scaling:g}")
        if self.logit_scale not in (None, 1.0):
            out.append(f"logits multiplied by {self.logit_scale:g}")
        return out

    def rescaled_layer_types(self) -> tuple[str, ...]:
        """Layer types whose rope parameters a RoPE method rescales when they are given per layer type: those whose
        layers attend without a window (a sliding layer never sees a distance past its window, so its RoPE is never
        asked to extrapolate); all of them when every type is windowed."""
        windowed = {self.layer_types[i] for i in self.windows if i < len(self.layer_types)}
        types = tuple(t for t in self.per_layer_rope if t not in windowed)
        return types or tuple(self.per_layer_rope)

    def rerotation_layouts(self) -> set[tuple[str, int]]:
        """{(layout, rotated dims)} over the layers that rotate: what a cache re-rotation must use."""
        return {(la.rotary.layout, la.rotary.dim) for la in self.attention if la.rotary}

    def layer(self, index: int) -> LayerProfile | None:
        for la in self.attention:
            if la.index == index:
                return la
        return None

    def to_json(self) -> dict:
        import dataclasses

        d = dataclasses.asdict(self)
        for la in d["attention"]:
            if la["rotary"]:
                la["rotary"] = {k: v for k, v in la["rotary"].items() if k != "inv_freq"}
        d["features"] = self.features()
        return d

    # ------------------------------------------------------------------------------------------- token scoring
    def logits_from_head(self, logits):
        """What the model's forward does to its LM head's output (Granite's division, Cohere's scale, a final
        softcap), so token scoring through `head(hidden)` gives the model's own logits."""
        import torch

        if self.logits_scaling not in (None, 1.0):
            logits = logits / self.logits_scaling
        if self.logit_scale not in (None, 1.0):
            logits = logits * self.logit_scale
        if self.final_softcap:
            logits = torch.tanh(logits / self.final_softcap) * self.final_softcap
        return logits


# -------------------------------------------------------------------------------------------------- reading
def _rope_params(cfg) -> dict:
    return dict(getattr(cfg, "rope_parameters", None) or {})


def _trained_rope_type(params: dict) -> tuple[str | None, tuple[str, ...]]:
    """(a scaling type other than plain RoPE, the layer types that have parameters of their own)."""
    per_type = tuple(sorted(k for k, v in params.items() if isinstance(v, dict)))
    sets = [params[k] for k in per_type] if per_type else [params]
    types = sorted({s.get("rope_type", "default") for s in sets if s} - {"default"})
    return (",".join(types) or None), per_type


def _attention_modules(model) -> list[str]:
    """Modules with query and key projections (fused or not), by class name: the model's attention layers."""
    found = []
    for m in model.modules():
        names = set(dict(m.named_children()))
        if ({"q_proj", "k_proj"} <= names or "query_key_value" in names or "qkv_proj" in names
                or "Wqkv" in names or {"q_proj", "kv_proj"} <= names) and not any(
                    isinstance(c, type(m)) for c in m.children()):
            found.append(type(m).__name__)
    return found


def _recurrent_types(cfg) -> tuple[str, ...]:
    """Layer types whose cached state is not keys and values, as transformers' cache mapping says."""

    types = recurrent_layer_types(cfg)
    if not types and any(hasattr(cfg, k) for k in ("state_size", "ssm_state_size")) and \
            not getattr(cfg, "num_attention_heads", None):
        types = ["recurrent"]  # a state-space model whose config lists no layer types (Mamba-1)
    return tuple(types)


def probe_model(model, hf_config=None) -> ModelProfile:
    """Profile a loaded transformers model by reading its config and running the probe forward on it."""
    cfg = hf_config or model.config
    head_dim = getattr(cfg, "head_dim", None) or getattr(cfg, "attention_head_dim", None)
    if not head_dim and getattr(cfg, "num_attention_heads", None):
        head_dim = cfg.hidden_size // cfg.num_attention_heads
    params = _rope_params(cfg)
    rope_type, per_type = _trained_rope_type(params)
    error, calls = None, []
    try:
        calls = probe_calls(model)
    except Exception as e:  # a model the probe cannot drive: refuse what needs it, say why
        error = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    buffers = _inv_freq_buffers(model)
    layer_types = tuple(getattr(cfg, "layer_types", None) or ())
    attention = []
    for i, c in enumerate(calls):
        rot, unknown = _fit_rotation(c, buffers)
        lt = c.get("layer_type")
        attention.append(LayerProfile(index=c.get("layer_idx", i) if c.get("layer_idx") is not None else i,
                                      layer_type=lt, window=c.get("sliding_window"), softcap=c.get("softcap"),
                                      learned_sinks=c.get("s_aux", False), rotary=rot, rotary_unknown=unknown,
                                      keywords=tuple(c.get("keywords", ()))))
    declares_rope = bool(params) and not getattr(cfg, "alibi", False)
    rope = declares_rope and any(la.rotary or la.rotary_unknown for la in attention)
    if declares_rope and not attention and error is None:
        rope = True  # attention outside the interface: the probe cannot see its rotation; the config's word
    modules = _attention_modules(model)
    n_attention = len(modules)
    return ModelProfile(
        model_type=str(getattr(cfg, "model_type", "?")), num_layers=int(getattr(cfg, "num_hidden_layers", 0) or 0),
        head_dim=head_dim, layer_types=layer_types, attention=tuple(attention), interface_calls=len(calls),
        attention_modules=n_attention, attention_classes=tuple(sorted(set(modules))),
        recurrent_layers=_recurrent_types(cfg), rope=rope,
        rope_type=rope_type if rope else None, per_layer_rope=per_type if rope else (),
        alibi=bool(getattr(cfg, "alibi", False)) or any(hasattr(m, "build_alibi_tensor") for m in model.modules()),
        final_softcap=getattr(cfg, "final_logit_softcapping", None) or None,
        logits_scaling=getattr(cfg, "logits_scaling", None), logit_scale=getattr(cfg, "logit_scale", None),
        max_position=getattr(cfg, "max_position_embeddings", None), probe_error=error,
        supports_sdpa=bool(getattr(type(model), "_supports_sdpa", False)))


def _inv_freq_buffers(model) -> dict[str, Any]:
    """Every rotary frequency buffer of the model (transformers names them *inv_freq), deduplicated by value."""
    out = {}
    for name, buf in model.named_buffers():
        if name.endswith("inv_freq") and "original" not in name and buf is not None and buf.dim() == 1:
            out.setdefault(name, buf.detach().float().cpu().clone())
    return out


def probe_calls(model, positions: tuple[int, ...] = PROBE_POSITIONS) -> list[dict]:
    """One-token forwards at position 0 and each of `positions` through a counting attention function; per call
    of the first forward: the module's layer index and type, the keywords the model passed, and q, k at every
    position (q_at / k_at: position → (H, D) float32)."""
    import torch
    from transformers import AttentionInterface

    records: list[list[dict]] = []

    def fn(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
        records[-1].append({
            "layer_idx": getattr(module, "layer_idx", None),
            "layer_type": getattr(module, "layer_type", None) or getattr(module, "attention_type", None),
            "sliding_window": kw.get("sliding_window"), "softcap": kw.get("softcap"),
            "s_aux": kw.get("s_aux") is not None, "keywords": sorted(kw),
            "q": query[0, :, -1].detach().float().clone(), "k": key[0, :, -1].detach().float().clone()})
        H, Hkv = query.shape[1], value.shape[1]
        out = value.repeat_interleave(H // Hkv, dim=1)  # one key: softmax is 1 whatever the score
        return out.transpose(1, 2).contiguous(), None

    name = f"longctx_probe_{id(model)}"
    AttentionInterface.register(name, fn)
    before = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        device = next(model.parameters()).device
        token = torch.tensor([[min(5, model.config.vocab_size - 1)]], device=device)
        with torch.inference_mode():
            for p in (0, *positions):
                records.append([])
                model(input_ids=token, position_ids=torch.tensor([[p]], device=device), use_cache=False)
    finally:
        model.set_attn_implementation(before)
    first = records[0]
    for call_no, c in enumerate(first):
        c["q_at"] = {0: c.pop("q")} | {p: r[call_no]["q"] for p, r in zip(positions, records[1:])
                                         if call_no < len(r)}
        c["k_at"] = {0: c.pop("k")} | {p: r[call_no]["k"] for p, r in zip(positions, records[1:])
                                         if call_no < len(r)}
    return first


def _fit_rotation(call: dict, buffers: dict) -> tuple[Rotary | None, bool]:
    """(the rotation that explains how this layer's q and k move with position, whether they move without one)."""
    import torch

    from kernels.rotary import rotate_pairs

    q_at, k_at = call.get("q_at", {}), call.get("k_at", {})
    if len(q_at) < 1 + len(PROBE_POSITIONS):
        return None, False
    x0 = torch.cat([q_at[0], k_at[0]])  # (H + H_kv, D)
    scale = float(x0.abs().max()) or 1.0
    moved = max(float((torch.cat([q_at[p], k_at[p]]) - x0).abs().max()) for p in PROBE_POSITIONS) / scale
    if moved < 1e-6:
        return None, False
    D = x0.shape[-1]
    for name, inv in buffers.items():
        dim = 2 * inv.numel()
        if dim > D:
            continue
        for layout in ("half", "interleaved"):
            err = 0.0
            for p in PROBE_POSITIONS:
                want = torch.cat([q_at[p], k_at[p]])
                got = rotate_pairs(x0, (p * inv)[None, :].expand(x0.shape[0], -1), layout, dim)
                err = max(err, float((got - want).abs().max()) / scale)
            if err < 1e-4:
                return Rotary(dim=dim, layout=layout, inv_freq=tuple(float(v) for v in inv), buffer=name), False
    return None, True


# --------------------------------------------------------------------------------------- before anything loads
def _probe_config(cfg):
    """A copy of the config small enough to build at random in a second: the vocabulary and the MLP shrunk (neither
    reaches attention), and the layers cut to one period of their pattern when the model is large."""
    small = copy.deepcopy(cfg)
    vocab = int(getattr(small, "vocab_size", 0) or 0)
    if vocab > 512:
        small.vocab_size = 512
        for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
            v = getattr(small, k, None)
            if isinstance(v, int) and v >= 512:
                setattr(small, k, 1)
            elif isinstance(v, list):
                setattr(small, k, [x if x < 512 else 1 for x in v])
    for k in ("intermediate_size", "ffn_hidden_size", "moe_intermediate_size", "shared_expert_intermediate_size"):
        if isinstance(getattr(small, k, None), int) and getattr(small, k) > 64:
            setattr(small, k, 64)
    n = int(getattr(small, "num_hidden_layers", 0) or 0)
    hidden = int(getattr(small, "hidden_size", 0) or 0)
    if n > 4 and hidden * hidden * 4 * n > 200_000_000:  # ~0.8 GB of attention weights in fp32: keep a period
        types = list(getattr(small, "layer_types", None) or [])
        keep = n
        for k in range(2, n + 1):
            if not types or set(types[:k]) == set(types):
                keep = max(k, 4)
                break
        keep = min(keep, n)
        for attr, value in list(vars(small).items()):
            if isinstance(value, list) and len(value) == n:
                setattr(small, attr, value[:keep])
        small.num_hidden_layers = keep
    return small


def _profile_of_config(cfg) -> ModelProfile:
    import dataclasses

    import torch
    from transformers import AutoModelForCausalLM

    try:
        small = _probe_config(cfg)
        state = torch.random.get_rng_state()
        try:
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(small, dtype=torch.float32).eval()
        finally:
            torch.random.set_rng_state(state)
    except Exception as e:  # a config transformers cannot build: the probe cannot run
        error = f"cannot build the model from its config ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
        return _config_only(cfg, error)
    prof = probe_model(model, small)
    return dataclasses.replace(prof, num_layers=int(getattr(cfg, "num_hidden_layers", 0) or 0),
                               layer_types=tuple(getattr(cfg, "layer_types", None) or ()))


def _config_only(cfg, error: str) -> ModelProfile:
    params = _rope_params(cfg)
    rope_type, per_type = _trained_rope_type(params)
    return ModelProfile(
        model_type=str(getattr(cfg, "model_type", "?")), num_layers=int(getattr(cfg, "num_hidden_layers", 0) or 0),
        head_dim=getattr(cfg, "head_dim", None), layer_types=tuple(getattr(cfg, "layer_types", None) or ()),
        attention=(), interface_calls=0, attention_modules=0, recurrent_layers=_recurrent_types(cfg),
        rope=bool(params), rope_type=rope_type, per_layer_rope=per_type, alibi=bool(getattr(cfg, "alibi", False)),
        final_softcap=getattr(cfg, "final_logit_softcapping", None) or None,
        logits_scaling=getattr(cfg, "logits_scaling", None), logit_scale=getattr(cfg, "logit_scale", None),
        max_position=getattr(cfg, "max_position_embeddings", None), probe_error=error)


_PROFILES: dict[str, ModelProfile] = {}  # config JSON → profile: one probe per model and process


def read_profile(hf_config) -> ModelProfile:
    """The profile of the model `hf_config` describes, without loading its weights (a random copy is probed)."""
    d = hf_config.to_diff_dict() if hasattr(hf_config, "to_diff_dict") else dict(vars(hf_config))
    d = {k: v for k, v in d.items() if not k.startswith("longctx_")}
    d.pop("model_type", None)
    d.pop("transformers_version", None)
    d.pop("quantization_config", None)
    key = f"{hf_config.model_type}:{json.dumps(d, sort_keys=True, default=str)}"
    if key not in _PROFILES:
        if len(_PROFILES) >= 32:
            _PROFILES.clear()
        _PROFILES[key] = _profile_of_config(hf_config)
    return _PROFILES[key]


def recurrent_layer_types(model_config) -> list[str]:
    """The layer types of a hybrid model whose cached state is not keys and values (LFM2's short convolutions,
    linear-attention and hybrid layers): a state cannot be cut back to a prefix, so prefix reuse cannot serve such a
    model. transformers' own cache mapping decides which types keep a state; its `moe` / `mlp` placeholders stay
    empty, so they do not count."""
    from transformers.cache_utils import DYNAMIC_LAYER_TYPE_MAPPING, LinearAttentionCacheLayerMixin

    def stateful(t: str) -> bool:
        cls = DYNAMIC_LAYER_TYPE_MAPPING.get(t)
        return cls is not None and issubclass(cls, LinearAttentionCacheLayerMixin) and t not in ("moe", "mlp")

    return sorted({t for t in (getattr(model_config, "layer_types", None) or []) if stateful(t)})


# What longctx's attention function reads of the keywords a model passes (harness.runners.attention): the rest must
# be bookkeeping. Layer types it composes: plain and sliding attention (recurrent types run the model's own code).
READ_KEYWORDS = {"position_ids", "sliding_window", "softcap", "s_aux"}
INERT_KEYWORDS = {"use_cache", "output_router_logits", "output_attentions", "cache_position", "is_causal"}
ATTENTION_LAYER_TYPES = {"full_attention", "sliding_attention"}


def unread_attention(profile) -> str | None:
    """Why the attention spec cannot stand in for this model's attention, or None: a keyword the model passes that
    the spec does not read (it may carry a mask the spec would drop: chunked attention, a bidirectional prefix), or
    a layer type that is neither plain, sliding nor recurrent. A family longctx was never tested on is refused here
    rather than run on a plausible wrong number."""
    unread = sorted({k for la in profile.attention for k in la.keywords} - READ_KEYWORDS - INERT_KEYWORDS)
    if unread:
        return (f"this {profile.model_type} model passes {', '.join(unread)} to its attention function, which "
                "longctx's attention spec does not read")
    types = sorted(set(profile.layer_types) - ATTENTION_LAYER_TYPES - set(profile.recurrent_layers))
    if types:
        return (f"this {profile.model_type} model has {', '.join(types)} layers, which longctx's attention spec "
                "does not model")
    return None
