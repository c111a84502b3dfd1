"""Attention-level methods (ALiBi, SelfExtend, attention sinks) plug into transformers through its attention
interface (`AttentionInterface.register` + `model.set_attn_implementation`), not by replacing forward methods.

They share one reference computation, `positional_attention`: exact causal attention in query chunks, where each
(query, key) pair may (a) be masked out, (b) take its score from an alternative rotation of q and k (SelfExtend's
grouped positions, a sink's in-cache position), and (c) get an additive bias (ALiBi). It is written for clarity
and exactness in fp32, in chunks so a 16k × 16k score matrix is never materialised.
"""
from __future__ import annotations

from typing import Callable

CHUNK = 512  # queries per chunk: (H, CHUNK, S) fp32 scores, 9 × 512 × 16k × 4 B ≈ 300 MB for SmolLM2 at 16k


def positional_attention(query, key, value, scaling: float, q_pos, k_pos,
                         allowed: Callable, alt: tuple | None = None, bias: Callable | None = None,
                         chunk: int = CHUNK):
    """Exact attention with per-pair masking, score source and bias.

    Args:
        query: (B, H, T, D), already rotated at its true positions.
        key, value: (B, H_kv, S, D); H a multiple of H_kv (GQA).
        q_pos: (T,) absolute positions of the queries; k_pos: (S,) of the keys, increasing.
        allowed(qp (c,), kp (S,)) -> bool (c, S): which keys each query may see (causality included).
        alt: optional (alt_query (B, H, T, D), alt_key (B, H_kv, S, D), use_alt(qp, kp) -> bool (c, S), split):
            where use_alt holds, the score is alt_query·alt_key instead of query·key. `split(qp) -> (a, b)`
            (or None) says that for these queries keys [0, a) always use alt and keys [b, S) never do, so only
            the band [a, b) needs both products (SelfExtend's band is one chunk wide, sinks' is empty).
        bias(qp, kp) -> (H, c, S) additive logit bias (after scaling), or None.
    Returns:
        (B, T, H, D), the layout transformers' attention functions return.
    """
    import torch

    B, H, T, D = query.shape
    groups = H // key.shape[1]
    k = key.repeat_interleave(groups, dim=1).float()  # (B, H, S, D)
    v = value.repeat_interleave(groups, dim=1).float()
    if alt is not None:
        alt_q, alt_k, use_alt = alt[:3]
        split = alt[3] if len(alt) > 3 else None
        alt_k = alt_k.repeat_interleave(groups, dim=1).float()
    out = torch.empty(B, H, T, D, dtype=torch.float32, device=query.device)
    for start in range(0, T, chunk):
        sl = slice(start, min(start + chunk, T))
        qp = q_pos[sl]
        q = query[:, :, sl].float()
        # Keys are in increasing position order; those after the chunk's last query are causally invisible.
        n = int(torch.searchsorted(k_pos, qp.max(), right=True))
        kp = k_pos[:n]
        if alt is None:
            scores = torch.matmul(q, k[:, :, :n].transpose(-1, -2))  # (B, H, c, n)
        else:
            a, b = split(qp, kp) if split is not None else (0, n)
            a, b = max(0, min(a, n)), max(0, min(b, n))
            b = max(a, b)
            aq = alt_q[:, :, sl].float()
            scores = torch.empty(B, H, q.shape[2], n, dtype=torch.float32, device=query.device)
            if a > 0:  # keys every query here sees through the alternative positions
                scores[..., :a] = torch.matmul(aq, alt_k[:, :, :a].transpose(-1, -2))
            if b < n:  # keys no query here sees through them
                scores[..., b:] = torch.matmul(q, k[:, :, b:n].transpose(-1, -2))
            if b > a:  # the band where it depends on the pair
                plain = torch.matmul(q, k[:, :, a:b].transpose(-1, -2))
                other = torch.matmul(aq, alt_k[:, :, a:b].transpose(-1, -2))
                scores[..., a:b] = torch.where(use_alt(qp, kp[a:b])[None, None], other, plain)
        scores.mul_(scaling)
        if bias is not None:
            scores.add_(bias(qp, kp)[None])
        scores.masked_fill_(~allowed(qp, kp)[None, None], float("-inf"))
        out[:, :, sl] = torch.matmul(torch.softmax(scores, dim=-1), v[:, :, :n])
    return out.to(query.dtype).transpose(1, 2).contiguous()


def causal(qp, kp):
    return kp[None, :] <= qp[:, None]


def query_positions(query, kwargs) -> "torch.Tensor":
    """Absolute positions of the queries: transformers passes position_ids (1, T) down to attention functions."""
    pos = kwargs.get("position_ids")
    if pos is None:
        raise RuntimeError("position_ids did not reach the attention function; this transformers version is not "
                           "supported by longctx's attention-level extensions")
    return pos.reshape(-1)[-query.shape[2]:].to(query.device)


def register(model, name: str, fn: Callable) -> dict:
    """Register `fn` under `name` in transformers' attention interface and switch `model` to it."""
    from transformers import AttentionInterface

    AttentionInterface.register(name, fn)
    before = model.config._attn_implementation
    model.set_attn_implementation(name)
    return {"attn_implementation_before": before, "attn_implementation": name}


def rotary_inv_freq(model):
    """The (D/2,) inverse frequencies of a transformers RoPE model's rotary module."""
    for m in model.modules():
        if hasattr(m, "inv_freq") and hasattr(m, "rope_type"):
            return m.inv_freq.detach().float().clone()
    raise ValueError(f"{type(model).__name__} has no rotary embedding module")
