"""Peak memory and FLOPs predicted before anything is loaded (the cost model, from the config alone).

Measurement lives in `harness.measure` (`PeakMemory`).

Prediction (`predict_peak`): weights + KV cache (or recurrent state) + the largest set of activations alive at once
on the attention path the runner will take + what the allocator keeps + the runtime, from the model's config alone
(`MemoryEstimate` says what each term is; docs/BENCHMARKS.md, "Memory prediction", compares it with measurements).
`longctx ... --max-memory` refuses cells predicted above it (harness.experiment.check_memory).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from harness.measure import current_rss

# ------------------------------------------------------------------------------------------------------ prediction
# The prediction below is the sum of four terms, each computed from the model's config and the code path the runner
# will take — never from loaded weights — so a cell can be refused before anything is loaded or written.

RUNTIME_BYTES = 638 * 2**20
"""The process's resident set before any weight is touched: Python, torch, transformers, the tokenizer (loaded
twice: by `prepare` and by the runner), the task's prompt and the shared libraries' touched pages. Measured as the
record's peak_mem_bytes of `longctx passkey -m TINY -l 512 -n 1 --max-new-tokens 4` with a 2-layer, 64-wide random
Llama and SmolLM2's tokenizer (651.7 MiB, four runs within 0.6 MiB, 1 or 2 torch threads) less that model's own
weights, cache and activations as predicted here (13.8 MiB). With a byte-level tokenizer (the Bloom baseline)
the same measurement gives about 590 MiB: the constant overstates such runs by ~50 MiB."""

ALLOCATOR_SLACK = 0.28
"""Resident memory glibc's allocator holds beyond the live tensors, as a fraction of cache + activations. Blocks up
to 32 MiB (its largest dynamic mmap threshold) come from the heap, where each layer's KV blocks, allocated between
that layer's temporaries, pin holes that stay resident after the temporaries are freed; blocks above 32 MiB are
mmapped and returned at once. Measured, not derived: the least-squares fit of (measured peak − weights − cache −
activations − runtime) against (cache + activations) over the 15 SmolLM2 points of docs/BENCHMARKS.md's memory
table (hf, kernel, kernel + SelfExtend at 2k–32k). Point by point that ratio ranged from −0.01 (hf, 16k) to 0.91
(kernel + SelfExtend, 2k), mean 0.37; four runs of the same 8k command gave 0.38–0.69."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak memory of one request, in bytes, term by term (`total` is their sum).

    weights      every parameter once (tied embeddings once), at the runner's dtype;
    cache        the KV cache at the end of the request — 2 · layers · kv_heads · head_dim · tokens · dtype bytes,
                 tokens = prompt + new tokens − 1 (the last token is never fed), capped at sinks + recent by a
                 policy that evicts — or a Mamba model's recurrent and convolution state;
    activations  the largest set of temporaries alive at one moment of the prefill (or of a decode step), for the
                 attention path this runner takes (`path`); `terms` lists what it is made of;
    allocator    what the CPU allocator keeps resident beyond live tensors, ALLOCATOR_SLACK · (cache + activations)
                 (0 on CUDA, where the peak is the allocator's max_memory_allocated: live tensors only);
    runtime      the process before any weight is touched (RUNTIME_BYTES; 0 on CUDA).
    """

    weights: int
    cache: int
    activations: int
    allocator: int
    runtime: int
    path: str  # the attention path assumed, e.g. "sdpa", "kernels/cpu", "reference", "eager"
    terms: tuple = ()  # (name, bytes) of the activation phase that sets `activations`

    @property
    def total(self) -> int:
        return self.weights + self.cache + self.activations + self.allocator + self.runtime

    def describe(self) -> str:
        return (f"{format_bytes(self.total)} = weights {format_bytes(self.weights)} + cache "
                f"{format_bytes(self.cache)} + activations {format_bytes(self.activations)} ({self.path}) + "
                f"allocator {format_bytes(self.allocator)} + runtime {format_bytes(self.runtime)}")


def format_bytes(n: int) -> str:
    """1288490188 → '1.20 GiB'; below 1 GiB in MiB."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.ASCII | re.IGNORECASE)


def parse_size(text: str) -> int:
    """'8GiB' → 8·2³⁰, '500MB' → 500·10⁶, '8G' → 8·2³⁰ (a bare K/M/G/T is binary, as in lengths), '1000000' →
    bytes. Raises UserError on anything else."""
    from harness.errors import UserError

    m = _SIZE.match(str(text))
    if not m or (m.group(3) and not m.group(2)):
        raise UserError(f"bad memory size {text!r}: use e.g. 8GiB, 500MB, 16G or a number of bytes")
    number, unit, binary, b = float(m.group(1)), m.group(2).lower(), m.group(3), m.group(4)
    power = " kmgt".index(unit) if unit else 0
    base = 1000 if (unit and b and not binary) else 1024
    value = number * base ** power
    if value < 1 or value != value:
        raise UserError(f"bad memory size {text!r}: it must be a positive amount, e.g. 8GiB")
    return int(value)


def available_memory(device: str = "cpu") -> int | None:
    """What a run on `device` may use: on CPU, MemAvailable (/proc/meminfo) plus this process's own resident set
    (already counted in a prediction's runtime term); on CUDA, the device's free memory. None where unknown."""
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as f:
            m = re.search(r"^MemAvailable:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) * 1024 + (current_rss() or 0) if m else None


@dataclass(frozen=True)
class Geometry:
    """The shapes that memory depends on, read from a transformers config (Llama-family, Bloom; Mamba: `_mamba`)."""

    model_type: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, cfg) -> "Geometry | None":
        """None for a config without the fields a decoder-only transformer has (then nothing is predicted)."""

        def get(*names, default=None):
            for n in names:
                v = getattr(cfg, n, None)
                if v is not None:
                    return v
            return default

        hidden, layers = get("hidden_size", "n_embd", "d_model"), get("num_hidden_layers", "n_layer")
        if not isinstance(hidden, int) or not isinstance(layers, int):
            return None
        heads = get("num_attention_heads", "n_head", default=1)
        inter = get("intermediate_size", "n_inner", "ffn_dim", default=None) or 4 * hidden
        return cls(model_type=str(getattr(cfg, "model_type", "")), layers=layers,
                   hidden=hidden, intermediate=inter, heads=heads, kv_heads=get("num_key_value_heads", default=heads),
                   head_dim=get("head_dim", default=None) or hidden // heads)


def meta_model(cfg):
    """The model built on torch's meta device: shapes and parameter sharing, no storage, no weights read."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(copy.deepcopy(cfg))


_PARAMETERS: dict[str, int] = {}  # config JSON → parameters


def parameter_count(cfg) -> int:
    """Parameters of the model `cfg` describes (shared ones, such as tied embeddings, once), counted on the meta
    device: no weight is read."""
    key = cfg.to_json_string(use_diff=False)
    if key not in _PARAMETERS:
        _PARAMETERS[key] = sum(p.numel() for p in meta_model(cfg).parameters())
    return _PARAMETERS[key]


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of a forward, from the model's geometry (`Geometry`, the one reader of a config's shapes)
    and its weights counted on a weightless (meta-device) instance."""

    geometry: "Geometry"
    linear_params: int  # weights of the blocks' Linear modules (not the embedding, not the LM head)
    head_params: int  # V × H
    params: int  # every parameter (weights' bytes = params × dtype size)
    attention: bool  # False where every layer is recurrent (the model's profile says so)

    @classmethod
    def of(cls, hf_config) -> "FlopCount":
        import torch

        from harness.profile import read_profile

        model = meta_model(hf_config)
        head = model.get_output_embeddings()
        linear = sum(m.weight.numel() for m in model.modules()
                     if isinstance(m, torch.nn.Linear) and m is not head)
        return cls(geometry=Geometry.of(hf_config), linear_params=linear, head_params=head.weight.numel(),
                   params=parameter_count(hf_config), attention=not read_profile(hf_config).recurrent_only)

    @property
    def pair_flops(self) -> float:
        """FLOPs of one (query, key) pair over every layer and head: q·k and p·v, 2 × head_dim each."""
        g = self.geometry
        return 4 * g.head_dim * g.heads * g.layers if self.attention else 0.0

    def prefill_flops(self, tokens: int, cached: int = 0) -> float:
        """FLOPs of prefilling `tokens` prompt tokens of which the first `cached` come from a kept cache."""
        new = tokens - cached
        pairs = (tokens * (tokens + 1) - cached * (cached + 1)) / 2  # (query, key) pairs of queries cached … T−1
        return 2.0 * self.linear_params * new + 2.0 * self.head_params + self.pair_flops * pairs

    def decode_flops(self, tokens: int, new_tokens: int) -> float:
        """FLOPs of `new_tokens` − 1 decode steps after a `tokens`-long prompt (the first new token is the prefill's)."""
        total = 0.0
        for t in range(tokens, tokens + max(0, new_tokens - 1)):
            total += 2.0 * (self.linear_params + self.head_params) + self.pair_flops * (t + 1)
        return total


def dtype_bytes(dtype: str) -> int:
    return {"float32": 4, "float16": 2, "bfloat16": 2}.get(str(dtype).replace("torch.", ""), 4)


def attention_path(runner: str, extension, cfg, runner_options: dict | None = None) -> str | None:
    """Which attention code serves the prefill, as the runner itself declares it (its `attention_path` classmethod,
    decided from the method and the model's profile without loading): "sdpa", "eager", "reference"
    (kernels.reference), "kernels/cpu", "fused" (Triton / flash-attn on CUDA), "recurrent" (Mamba); None for a
    runner that declares none (vLLM sizes its own memory)."""
    from harness.runners import RUNNERS

    declared = getattr(RUNNERS.get(runner), "attention_path", None)
    return None if declared is None else declared(extension, cfg, dict(runner_options or {}))


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def predict_peak(cfg, runner: str, extension, extension_config, prompt_tokens: int, new_tokens: int = 1,
                 runner_options: dict | None = None, scoring: bool = False) -> MemoryEstimate | None:
    """Predict the peak memory of one request before anything is loaded.

    Args:
        cfg: the model's transformers config (AutoConfig; nothing else is read).
        runner: runner name (hf, kernel, mamba; vllm and unknown runners → None: their engines size their own
            memory).
        extension, extension_config: the method (its mechanisms and KV policy decide the path and the cache).
        prompt_tokens: tokens of the prompt; new_tokens: tokens to generate (the budget: an upper bound).
        runner_options: the runner's constructor keywords (dtype, device, impl, attn_implementation).
        scoring: token scoring (perplexity) of `prompt_tokens` tokens instead of generation: one forward without a
            cache where the method allows it (else streamed like a prefill), hidden states projected to the
            vocabulary 1,024 positions at a time.
    Returns:
        A MemoryEstimate (see its docstring for each term), or None. Its total is weights + cache + activations +
        allocator + runtime.

    Activations, per forward of T query tokens over S keys (b = dtype bytes, f = 4 for the fp32 buffers of our
    kernels; h hidden, I intermediate, H / H_kv heads, d head_dim). The peak is the largest of a few moments: two
    in the last layer, when every layer's KV is already cached, a decode step, and (token scoring) the head:
      MLP      4·T·h·b (the embeddings, which the model keeps referenced, the layer's input, its residual and the
               normed input) + 3·T·I·b (gate, activation, up and their product: three alive at once);
      attention  3·T·h·b + T·(H + 2·H_kv)·d·b (q, k, v) + 2·T·(H + H_kv)·d·b (rotary temporaries) + the path's:
               sdpa        2·T·H·d·b (output and its contiguous transpose; torch's flash kernel keeps only blocks);
               kernels/cpu 2·T·H·d·f (fp32 output, merged per 1024-query block) + the alternative q, k the spec
                           re-rotates (sinks, SelfExtend: T·H·d·f + S·H_kv·d·f) + ALiBi's augmented copies of q, k, v
                           with one extra column (T·H·(d+1)·f + 2·S·H_kv·(d+1)·f);
               reference   keys and values repeated to H heads in fp32 (2·S·H·d·f, 3· with an alternative key set),
                           its output T·H·d·f, and per 512-query chunk the scores and their softmax, 2·H·512·S·f;
               eager       scores, masked scores and probabilities, 3·H·T·S·b.
    plus what lives through the whole forward: the (T, S) causal mask transformers builds for eager attention (a
    float, b bytes, and its bool source) — Bloom builds it on the kernel runner too, which is why that runner
    prefills Bloom in 1,024-token chunks — and, where the cache grows by concatenation (chunked or streamed prefill,
    every decode step), one layer's keys and values copied (2·S·H_kv·d·b). A streamed prefill (sinks) holds
    `chunk` more tokens per layer before each eviction. Token scoring adds the moment after the forward: the last
    hidden states T·h·b and one chunk's logits with their log-softmax, 2·1024·vocab·f. Mamba: the piece's scan
    intermediates (see `_mamba`).
    """
    opts = dict(runner_options or {})
    device = str(opts.get("device") or _default_device())
    path = attention_path(runner, extension, cfg, opts)
    if path is None:
        return None
    b = dtype_bytes(opts.get("dtype") or ("bfloat16" if device.startswith("cuda") else "float32"))
    cuda = device.startswith("cuda")
    runtime = 0 if cuda else RUNTIME_BYTES

    def estimate(cache: int, terms: list) -> MemoryEstimate:
        activations = sum(n for _, n in terms)
        slack = 0 if cuda else int(ALLOCATOR_SLACK * (cache + activations))
        return MemoryEstimate(weights, cache, activations, slack, runtime, path, tuple(terms))
    from harness.profile import read_profile
    from harness.runners import RUNNERS
    from harness.runners.attention import own_modules
    from kernels.reference import CHUNK as REFERENCE_CHUNK  # queries per score block of the fp32 oracle

    weights = parameter_count(cfg) * b
    T, new = max(1, int(prompt_tokens)), (0 if scoring else max(1, int(new_tokens)))
    head = [("last hidden states", T * getattr(cfg, "hidden_size", 0) * b),
            ("logits chunk + log-softmax", 2 * min(1024, T) * int(getattr(cfg, "vocab_size", 0)) * 4)] \
        if scoring else []
    if path == "recurrent":
        cache, terms = _mamba(cfg, T, b, opts)
        return estimate(cache, max(terms, head, key=lambda ts: sum(n for _, n in ts)))
    g = Geometry.of(cfg)
    if g is None:
        return None
    prof = read_profile(cfg)
    own = own_modules(prof)
    limit = getattr(RUNNERS.get(runner), "prefill_limit", lambda _: None)(prof) if path != "eager" else None
    kv_per_token = 2 * g.layers * g.kv_heads * g.head_dim * b
    policy = extension.kv_policy(extension_config, cfg)
    one_pass = scoring and _scores_in_one_pass(runner, extension, policy)
    if one_pass:  # one forward over the whole text, no cache kept (HFRunner._one_pass, KernelRunner._one_pass)
        policy = None
    kv_per_token_kept = 0 if one_pass else kv_per_token
    kept = None if policy is None or policy.recent is None else policy.sink_tokens + policy.recent
    fed = T + new - 1 if new else T
    cache = kv_per_token_kept * (fed if kept is None else min(fed, kept))

    # The forward with the largest working set: the prompt in one forward, or its last chunk over every key.
    if policy is not None and policy.chunk is not None:  # streamed: chunks over a cache trimmed to `kept`
        Tf, S, grows = min(T, policy.chunk), min(T, (kept or T) + policy.chunk), True
    elif limit and not one_pass:  # the runner's chunked prefill (the kernel runner's on Bloom's own modules)
        Tf, S, grows = min(T, limit), T, T > limit
    else:
        Tf, S, grows = T, T, False
    h, inter, H, Hkv, d, f = g.hidden, g.intermediate, g.heads, g.kv_heads, g.head_dim, 4
    mlp = [("hidden states", 4 * Tf * h * b), ("MLP", 3 * Tf * inter * b)]
    attn = [("hidden states", 3 * Tf * h * b), ("q, k, v", Tf * (H + 2 * Hkv) * d * b),
            ("rotary", 2 * Tf * (H + Hkv) * d * b)]
    spec = None if path in ("sdpa", "eager", "fused") else _spec_kind(extension, extension_config, cfg)
    if path == "sdpa" or path == "fused":
        attn.append(("attention output", 2 * Tf * H * d * b))
    elif path == "kernels/cpu":
        attn.append(("attention output (fp32)", 2 * Tf * H * d * f))
        if spec == "rerotates":
            attn.append(("re-rotated q, k", (Tf * H + S * Hkv) * d * f))
        if spec == "alibi":
            attn.append(("ALiBi-augmented q, k, v", (Tf * H + 2 * S * Hkv) * (d + 1) * f))
    elif path == "reference":
        attn += [("k, v repeated to H heads (fp32)", (3 if spec == "rerotates" else 2) * S * H * d * f),
                 ("output (fp32)", Tf * H * d * f), ("scores + softmax", 2 * H * min(REFERENCE_CHUNK, Tf) * S * f)]
        if spec == "rerotates":
            attn.append(("re-rotated q, k", (Tf * H + S * Hkv) * d * f))
    elif path == "eager":
        attn.append(("scores, masked, softmax", 3 * H * Tf * S * b))
    phase = max((mlp, attn), key=lambda ts: sum(n for _, n in ts))
    always = []
    if path == "eager" or own:  # transformers' eager masks, or modules that build their own (Bloom's)
        always.append(("causal mask (T, S)", Tf * S * (b + 1)))
    if grows:
        always.append(("one layer's K, V re-concatenated", kv_per_token // g.layers * S))
    if kept is not None and policy.chunk is not None and S > min(fed, kept):
        always.append(("cache before eviction", kv_per_token * (S - min(fed, kept))))
    decode = [("one layer's K, V re-concatenated (decode)", kv_per_token // g.layers * (T + new))] if new > 1 else []
    return estimate(cache, max(phase + always, decode, head, key=lambda ts: sum(n for _, n in ts)))


def _scores_in_one_pass(runner: str, extension, policy) -> bool:
    """Whether token scoring runs one forward without a cache, as the runner declares it (`scores_in_one_pass`;
    a runner without the declaration: only where the method keeps no cache policy)."""
    from harness.runners import RUNNERS

    declared = getattr(RUNNERS.get(runner), "scores_in_one_pass", None)
    if declared is None:
        return policy is None or (policy.chunk is None and policy.recent is None)
    return declared(extension, policy)


def _spec_kind(extension, extension_config, cfg) -> str | None:
    """What the method's attention spec costs beyond causal attention, read from the spec it builds for this model:
    "rerotates" (an alternative q, k: sinks, SelfExtend), "alibi" (a bias column), or None (Bloom's trained slopes
    are ALiBi, the profile says so)."""
    import torch

    from extensions.base import ATTENTION_SPEC

    if ATTENTION_SPEC not in extension.mechanisms:
        from harness.profile import read_profile

        return "alibi" if read_profile(cfg).alibi else None
    g = Geometry.of(cfg)
    inv = torch.zeros(max(1, (g.head_dim if g else 2) // 2))
    spec = extension.attention_spec(extension_config, cfg, inv, int(getattr(cfg, "max_position_embeddings", 0) or 1))
    if spec.rerotates:
        return "rerotates"
    return "alibi" if spec.alibi_slopes is not None else None


def _mamba(cfg, T: int, b: int, opts: dict) -> tuple[int, list]:
    """Recurrent state (conv window + SSM state per layer) and the scan's intermediates for one prefill piece.

    Mamba-2 (chunked, `chunk` tokens a piece): transformers' torch SSD materialises per piece the (chunk, inner,
    state) products of the states and (pieces of chunk_size)² × heads × state decay products. Mamba-1 (one
    unchunked forward by default): the (T, inner, state) discretised A and B·u, alive together."""
    layers = cfg.num_hidden_layers
    state = cfg.state_size
    kernel = cfg.conv_kernel
    if cfg.model_type == "mamba2":
        inner = int(cfg.expand * cfg.hidden_size)
        conv_dim = inner + 2 * cfg.n_groups * state
        cache = layers * (conv_dim * kernel + cfg.num_heads * cfg.head_dim * state) * b
        mode = opts.get("prefill", "auto")
        piece = {"token": 1, "full": T}.get(mode, min(T, int(opts.get("chunk", 2048))))
        cs = min(piece, cfg.chunk_size)
        terms = [("SSD states (piece, inner, state)", piece * inner * state * b),
                 ("SSD decay products", piece * cs * cfg.num_heads * state * b),
                 ("hidden states", 4 * piece * cfg.hidden_size * b), ("in_proj", piece * (2 * inner + 2 * state) * b)]
        return cache, terms
    inner = int(cfg.intermediate_size)
    cache = layers * (inner * kernel + inner * state) * b
    piece = 1 if opts.get("prefill") == "token" else T
    return cache, [("scan: discretised A and B·u", 2 * piece * inner * state * b),
                   ("hidden states", 4 * piece * cfg.hidden_size * b)]
