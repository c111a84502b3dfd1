"""Attention kernels for the attention spec (`kernels.spec.AttentionSpec`): an fp32 oracle, a CPU path, a Triton
kernel, and dispatch to SDPA / flash-attn for the patterns those express natively.

    out, impl = attention(q, k, v, spec, q_pos, k_pos, scale)   # q (B, H, T, D); k, v (B, H_kv, S, D)

This package imports nothing from `extensions/` or `harness/`.
"""
from __future__ import annotations

import importlib.util

import torch

from kernels.spec import AttentionSpec, key_positions, lower  # noqa: F401

IMPLEMENTATIONS = ("auto", "reference", "cpu", "sdpa", "triton", "flash-attn")


def _aligned(q_pos, k_pos) -> bool:
    """Keys are positions 0..S−1 and the queries are the last T of them: what SDPA's and flash-attn's causal
    masks (bottom-right aligned, or square) assume."""
    S, T = k_pos.numel(), q_pos.numel()
    return int(k_pos[0]) == 0 and int(k_pos[-1]) == S - 1 and int(q_pos[0]) == S - T and int(q_pos[-1]) == S - 1


def _flash_attn_expresses(spec: AttentionSpec, q_pos, k_pos) -> bool:
    """flash-attn computes causal attention, ALiBi slopes and a pure sliding window (no sinks, no re-rotation),
    with positions implied by indices."""
    if spec.position_map is not None or spec.sink_tokens or spec.scale is not None or spec.softcap is not None \
            or spec.max_distance is not None or spec.sink_logits is not None or spec.query_scale is not None:
        return False
    contiguous = int(k_pos[-1]) - int(k_pos[0]) + 1 == k_pos.numel()
    return contiguous and int(q_pos[-1]) == int(k_pos[-1]) and int(q_pos[-1]) - int(q_pos[0]) + 1 == q_pos.numel()


def _sdpa_expresses(spec: AttentionSpec, q, q_pos, k_pos) -> bool:
    """Plain causal attention over positions 0..S−1, all queries or one decode step: SDPA without a mask."""
    return spec.is_causal_only and spec.scale is None and _aligned(q_pos, k_pos) and q.shape[2] in (1, k_pos.numel())


def choose(spec: AttentionSpec, q, q_pos, k_pos, impl: str = "auto") -> str:
    """Which implementation `attention` runs for this call."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown attention implementation {impl!r}; choose one of {', '.join(IMPLEMENTATIONS)}")
    if impl != "auto":
        return impl
    if q.is_cuda:
        if importlib.util.find_spec("flash_attn") is not None and q.dtype in (torch.bfloat16, torch.float16) \
                and _flash_attn_expresses(spec, q_pos, k_pos):
            return "flash-attn"
        # Plain causal attention is SDPA's own (its flash / memory-efficient CUDA kernels, fp32 too). Our Triton
        # kernel is for the specs SDPA cannot express: on an H100 it took 50 s to prefill SmolLM2 at 32k in fp32
        # (IEEE dots, no tensor cores) and 2.7 s per decode step (one program per head walks every key)
        # (docs/BENCHMARKS.md, "On a GPU").
        if _sdpa_expresses(spec, q, q_pos, k_pos):
            return "sdpa"
        return "triton"
    if _sdpa_expresses(spec, q, q_pos, k_pos):
        return "sdpa"
    # A chunk of queries after cached keys (prefix reuse, chunked prefill) needs SDPA's explicit mask, which takes
    # its slower path: kernels/cpu (unmasked cached keys + the causal triangle, merged by log-sum-exp) is twice as
    # fast there (scripts/bench_attention.py's "after cached keys" rows; docs/BENCHMARKS.md).
    return "cpu"


def attention(q, k, v, spec: AttentionSpec, q_pos, k_pos, scale: float | None = None, impl: str = "auto"):
    """Attention as `spec` defines it; returns ((B, H, T, D), the name of the implementation that ran)."""
    which = choose(spec, q, q_pos, k_pos, impl)
    if which == "reference":
        from kernels.reference import attention_ref

        return attention_ref(q, k, v, spec, q_pos, k_pos, scale), which
    if which == "cpu":
        from kernels.cpu import attention_cpu

        return attention_cpu(q, k, v, spec, q_pos, k_pos, scale), which
    if which == "sdpa":
        import torch.nn.functional as F

        if not (spec.is_causal_only and _aligned(q_pos, k_pos)):
            raise ValueError(f"SDPA computes plain causal attention only; this spec is {spec.describe()}")
        T, S = q.shape[2], k.shape[2]
        mask = None
        if 1 < T < S:  # a chunk after a cached prefix: SDPA's is_causal would align top-left
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
        gqa = q.shape[1] != k.shape[1]
        if gqa and q.is_cuda:
            # With enable_gqa, SDPA's fused CUDA kernels decline fp32 and it falls to the math path, which stores
            # T × S scores per head: 36 GiB for SmolLM2 at 32k on an H100. Repeated KV heads cost S × D each.
            rep = q.shape[1] // k.shape[1]
            k, v, gqa = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1), False
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and T > 1,
                                             scale=scale, enable_gqa=gqa)
        return out, which
    if which == "triton":
        from kernels.triton_attention import attention_triton

        return attention_triton(q, k, v, spec, q_pos, k_pos, scale), which
    return _flash_attn(q, k, v, spec, scale), which


def _flash_attn(q, k, v, spec: AttentionSpec, scale):
    """flash-attn's own kernel: (B, T, H, D) layout, bottom-right aligned causal mask, window as (left, right)."""
    from flash_attn import flash_attn_func

    window = (spec.window - 1, 0) if spec.window is not None else (-1, -1)
    slopes = None if spec.alibi_slopes is None else spec.alibi_slopes.to(q.device, dtype=torch.float32)
    out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale,
                          causal=True, window_size=window, alibi_slopes=slopes)
    return out.transpose(1, 2)

