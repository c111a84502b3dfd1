"""The fp32 oracle of the attention spec: exact, in query chunks, short enough to check by eye.

Every fast path is tested against `attention_ref`; the HF runner computes attention-level extensions with it.
Chunking keeps the score matrix at (B, H, chunk, S) — a 16k × 16k matrix is never materialised.
"""
from __future__ import annotations

import torch

from kernels.spec import AttentionSpec, Lowered, alibi_bias, cap, lower, use_alt, visible

CHUNK = 512  # queries per chunk: 9 heads × 512 × 16k keys × 4 B ≈ 300 MB of scores for SmolLM2 at 16k


def attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: AttentionSpec, q_pos: torch.Tensor,
                  k_pos: torch.Tensor, scale: float | None = None, chunk: int = CHUNK) -> torch.Tensor:
    """Attention as the spec defines it.

    Args:
        q: (B, H, T, D) rotated at q_pos (T,); k, v: (B, H_kv, S, D), k rotated at k_pos (S,) (increasing).
            H must be a multiple of H_kv (grouped-query attention: query head h reads KV head h // (H / H_kv)).
        scale: the softmax scale if the spec has none (default 1/sqrt(D)).
    Returns:
        (B, H, T, D) in q's dtype. A query that sees no key gets zeros.
    """
    low = lower(spec, q, k, q_pos, k_pos, scale)
    return ref_lowered(q if low.q is None else low.q, k if low.k is None else low.k, v, low, q_pos, k_pos,
                       chunk).to(q.dtype)


def ref_lowered(q, k, v, low: Lowered, q_pos, k_pos, chunk: int = CHUNK):
    B, H, T, D = q.shape
    groups = H // k.shape[1]
    k32 = k.repeat_interleave(groups, dim=1).float()  # (B, H, S, D)
    v32 = v.repeat_interleave(groups, dim=1).float()
    ka = None if low.k_alt is None else low.k_alt.repeat_interleave(groups, dim=1).float()
    out = torch.zeros(B, H, T, D, dtype=torch.float32, device=q.device)
    for start in range(0, T, chunk):
        sl = slice(start, min(start + chunk, T))
        qp = q_pos[sl]
        n = int(torch.searchsorted(k_pos, qp.max(), right=True))  # keys past the chunk's last query: invisible
        if n == 0:
            continue
        kp = k_pos[:n]
        scores = torch.empty(B, H, len(qp), n, dtype=torch.float32, device=q.device)
        # Columns every query of the chunk scores the alternative way [0, a), none does [b, n), the band between.
        a, b = _alt_columns(low, qp, kp)
        if a > 0:
            scores[..., :a] = low.q_alt[:, :, sl] @ ka[:, :, :a].transpose(-1, -2)
        if b < n:
            scores[..., b:] = q[:, :, sl].float() @ k32[:, :, b:n].transpose(-1, -2)
        if b > a:
            plain = q[:, :, sl].float() @ k32[:, :, a:b].transpose(-1, -2)
            other = low.q_alt[:, :, sl] @ ka[:, :, a:b].transpose(-1, -2)
            scores[..., a:b] = torch.where(use_alt(low, qp, kp[a:b])[None, None], other, plain)
        cap(scores.mul_(low.scale), low.softcap)
        if low.slopes is not None:
            scores.add_(alibi_bias(low.slopes, qp, kp)[None])
        seen = visible(low, qp, kp)  # (c, n)
        scores.masked_fill_(~seen[None, None], float("-inf"))
        if low.sink_logits is not None:  # the virtual sink key: in the denominator, with a zero value
            sink = low.sink_logits[None, :, None, None].expand(B, H, len(qp), 1)
            scores = torch.cat([scores, sink], dim=-1)
        probs = torch.softmax(scores, dim=-1).nan_to_num_(0.0)  # rows with no visible key: zeros, not NaN
        if low.sink_logits is not None:
            probs = probs[..., :-1]
        out[:, :, sl] = probs @ v32[:, :, :n]
    return out.to(q.dtype)


def _alt_columns(low: Lowered, qp, kp) -> tuple[int, int]:
    """[0, a): keys alternative for every query of the chunk; [b, n): for none. Keys are sorted by position."""
    n = len(kp)
    if low.q_alt is None:
        return 0, 0
    alt = use_alt(low, qp, kp)  # (c, n)
    every, some = alt.all(0), alt.any(0)
    a = int((~every).nonzero()[0]) if not bool(every.all()) else n
    b = int(some.nonzero()[-1]) + 1 if bool(some.any()) else 0
    return a, max(a, b)
