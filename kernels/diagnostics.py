"""Per-head attention diagnostics for a few query rows, computed from the attention spec (issue 34's core).

The question after "where does a method stop finding the needle" is "why": did attention never reach the needle at
that length, or reach it and fail to copy it? For the query rows given (typically the one that writes an answer
token), each head's attention row is computed exactly as the spec scores it (fp32, every key; `attention_probs`),
and reduced to a handful of numbers per head:

  needle_mass   Σ p_j over the needle's keys                     (did attention reach it?)
  retrieval     1 where the head's argmax key is a needle token equal to the token being written, else 0
                (Wu et al. 2024, "Retrieval Head Mechanistically Explains Long-Context Factuality": averaged over
                the answer's tokens this is their retrieval score)
  sink_mass     Σ p_j over the first `sink` keys                 (attention sinks, Xiao et al. 2024)
  recent_mass   Σ p_j over keys fewer than `recent` positions back
  entropy       −Σ p_j log p_j                                  (how spread the row is, in nats)

This module imports nothing outside `kernels/`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.spec import AttentionSpec, alibi_bias, cap, lower, use_alt, visible

FIELDS = ("needle_mass", "retrieval", "sink_mass", "recent_mass", "entropy")


def attention_probs(q: torch.Tensor, k: torch.Tensor, spec: AttentionSpec, q_pos: torch.Tensor,
                    k_pos: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """The spec's attention weights for a few queries: q (B, H, T, D), k (B, H_kv, S, D) → (B, H, T, S) float32.

    Dense over every key (T is small: the rows being diagnosed). Learned sink logits take their share of the
    softmax (the weights then sum to less than 1); a query that sees no key gets a row of zeros."""
    low = lower(spec, q, k, q_pos, k_pos, scale)
    qq = (q if low.q is None else low.q).float()
    kk = (k if low.k is None else low.k).float()
    B, H, T, D = qq.shape
    groups = H // kk.shape[1]
    kk = kk.repeat_interleave(groups, dim=1)
    s = qq @ kk.transpose(-1, -2)  # (B, H, T, S)
    if low.q_alt is not None:
        ka = low.k_alt.float().repeat_interleave(groups, dim=1)
        s = torch.where(use_alt(low, q_pos, k_pos)[None, None], low.q_alt.float() @ ka.transpose(-1, -2), s)
    s = cap(s * low.scale, low.softcap)
    if low.slopes is not None:
        s = s + alibi_bias(low.slopes, q_pos, k_pos)[None]
    s = s.masked_fill(~visible(low, q_pos, k_pos)[None, None], float("-inf"))
    if low.sink_logits is not None:
        s = torch.cat([s, low.sink_logits[None, :, None, None].expand(B, H, T, 1)], dim=-1)
    p = torch.softmax(s, dim=-1).nan_to_num_(0.0)
    return p[..., :-1] if low.sink_logits is not None else p


@dataclass(frozen=True)
class HeadStats:
    """Per head, one query row each: tensors (B, H, T) float32 (retrieval 0/1)."""

    needle_mass: torch.Tensor
    retrieval: torch.Tensor
    sink_mass: torch.Tensor
    recent_mass: torch.Tensor
    entropy: torch.Tensor


def head_stats(probs: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor, needle: tuple[int, int] | None,
               key_tokens: torch.Tensor | None = None, written: torch.Tensor | None = None, sink: int = 4,
               recent: int = 64) -> HeadStats:
    """Reduce attention rows to the per-head numbers above.

    Args:
        probs: (B, H, T, S) from `attention_probs`.
        q_pos, k_pos: (T,), (S,) positions of the rows and keys.
        needle: [start, end) positions of the needle's tokens, or None (needle mass 0, retrieval 0).
        key_tokens: (S,) token id at each key; written: (T,) the token each row writes (retrieval needs both).
        sink, recent: the first `sink` positions are sinks; keys fewer than `recent` positions back are recent.
    """
    B, H, T, S = probs.shape
    in_needle = torch.zeros(S, dtype=torch.bool, device=probs.device)
    if needle is not None:
        in_needle = (k_pos >= needle[0]) & (k_pos < needle[1])
    needle_mass = (probs * in_needle).sum(-1)
    sink_mass = (probs * (k_pos < sink)).sum(-1)
    near = (q_pos[:, None] - k_pos[None, :]) < recent  # (T, S)
    recent_mass = (probs * near[None, None]).sum(-1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-30))).sum(-1)
    retrieval = torch.zeros(B, H, T, device=probs.device)
    if needle is not None and key_tokens is not None and written is not None:
        top = probs.argmax(-1)  # (B, H, T)
        hit = in_needle[top] & (key_tokens[top] == written.to(key_tokens.device)[None, None, :])
        retrieval = (hit & (probs.amax(-1) > 0)).float()
    return HeadStats(needle_mass, retrieval, sink_mass, recent_mass, entropy)
