"""The attention spec: what one attention layer computes, as plain data, for every backend (reference, CPU, Triton).

For query i at position p_i and key j at position p_j (positions are tensors handed to the kernels):
  visible   p_j ≤ p_i, and, with a window W: p_i − p_j < W or p_j < S (the S sink tokens stay visible);
  score     scale · q̃_i·k̃_j − m_h·(p_i − p_j)   (the ALiBi term only when slopes m (H,) are given);
  capped    with a softcap c the scaled dot product becomes c·tanh(s/c) before the bias (Gemma 2);
  sinks     with learned sink logits z_h (GPT-OSS), each softmax also counts a virtual key scored z_h whose value
            is zero: out_i = Σ_j e^{s_ij} v_j / (e^{z_h} + Σ_j e^{s_ij});
  limit     with max_distance M, pairs with p_i − p_j ≥ M are never visible (a model's own sliding window that a
            method's sinks + window compose with: sinks stay visible only inside it);
  q̃, k̃      q and k as the model rotated them (at p_i, p_j), except in the *alternative* regime:
              sinks (S > 0, with a window): a sink key is scored from the query's in-cache position
                min(p_i, S + W − 1) (StreamingLLM, Xiao et al. 2024), the key staying at p_j;
              SelfExtend (group G, neighbour window N): pairs with p_i − p_j ≥ N use the grouped positions
                ⌊p_i/G⌋ + N − ⌊N/G⌋ and ⌊p_j/G⌋ (Jin et al. 2024) — two rotations merged in one softmax.
Re-rotation follows the layer's own rotary embedding: `inv_freq` (dim/2,), the leading `rotary_dim` dimensions,
paired `rotary_layout` ("half" or "interleaved"; kernels.rotary). Every backend lowers the spec with `lower()` to one
form: q, k, an alternative (q_alt, k_alt) and the rule
"alternative iff p_j < alt_below or p_i − p_j ≥ alt_from". The rotations are computed here once, in float32; the
kernels only choose between two dot products per pair.

This module imports nothing from `extensions/` or `harness/`: the extensions build specs, the kernels read them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kernels.rotary import LAYOUTS, shift


@dataclass(frozen=True, eq=False)
class AttentionSpec:
    sink_tokens: int = 0  # S: keys at positions < S stay visible past the window (needs a window when S > 0)
    window: int | None = None  # W: keys within W positions of the query (itself included) are visible
    alibi_slopes: torch.Tensor | None = None  # (H,) float32 m_h: logit bias −m_h·(p_i − p_j)
    group: int | None = None  # SelfExtend's G
    neighbor_window: int | None = None  # SelfExtend's N: pairs closer than N keep their true positions
    inv_freq: torch.Tensor | None = None  # (D/2,) rotary frequencies, needed to re-rotate (sinks, SelfExtend)
    scale: float | None = None  # softmax scale; None: the caller's (transformers passes the module's scaling)
    softcap: float | None = None  # c: scores become c·tanh(s/c) (attention logit softcapping)
    max_distance: int | None = None  # M: pairs with p_i − p_j ≥ M are invisible (a model's window under sinks)
    rotary_layout: str = "half"  # how the layer pairs rotary dimensions (kernels.rotary.LAYOUTS)
    sink_logits: torch.Tensor | None = None  # (H,) learned per-head sink logits: a virtual key with a zero value

    def __post_init__(self):
        def positive_int(name, low=1):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
                raise ValueError(f"AttentionSpec.{name} must be an integer >= {low}, got {v!r}")

        positive_int("sink_tokens", 0)
        positive_int("window")
        positive_int("group")
        positive_int("neighbor_window")
        positive_int("max_distance")
        if self.softcap is not None and not (isinstance(self.softcap, (int, float)) and math.isfinite(self.softcap)
                                             and self.softcap > 0):
            raise ValueError(f"AttentionSpec.softcap must be a positive finite number, got {self.softcap!r}")
        if self.rotary_layout not in LAYOUTS:
            raise ValueError(f"AttentionSpec.rotary_layout must be one of {', '.join(LAYOUTS)}, "
                             f"got {self.rotary_layout!r}")
        if self.sink_tokens and self.window is None:
            raise ValueError(f"sink_tokens={self.sink_tokens} needs a window (sinks are what stays visible past it)")
        if (self.group is None) != (self.neighbor_window is None):
            raise ValueError("SelfExtend needs both group and neighbor_window")
        if self.group is not None and self.sink_tokens:
            raise ValueError("SelfExtend and sinks cannot be combined in one spec")
        if self.rerotates and self.inv_freq is None:
            raise ValueError("sinks and SelfExtend re-rotate q/k: the spec needs the rotary inv_freq")
        if self.scale is not None and not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale)
                                           and self.scale > 0):
            raise ValueError(f"AttentionSpec.scale must be a positive finite number, got {self.scale!r}")
        if self.sink_logits is not None and self.sink_logits.dim() != 1:
            raise ValueError(f"sink_logits must be (H,), got shape {tuple(self.sink_logits.shape)}")
        if self.alibi_slopes is not None and self.alibi_slopes.dim() != 1:
            raise ValueError(f"alibi_slopes must be (H,), got shape {tuple(self.alibi_slopes.shape)}")

    @property
    def rerotates(self) -> bool:
        return (self.sink_tokens > 0 and self.window is not None) or self.group is not None

    @property
    def is_causal_only(self) -> bool:
        """Plain causal attention: any causal kernel (SDPA, flash-attn) computes it."""
        return (self.window is None and self.alibi_slopes is None and self.group is None and self.softcap is None
                and self.max_distance is None and self.sink_logits is None)

    def describe(self) -> str:
        parts = []
        if self.window is not None:
            parts.append(f"sinks {self.sink_tokens} + window {self.window}" if self.sink_tokens
                         else f"window {self.window}")
        if self.group is not None:
            parts.append(f"selfextend G{self.group} N{self.neighbor_window}")
        if self.alibi_slopes is not None:
            parts.append(f"alibi ({len(self.alibi_slopes)} slopes)")
        if self.max_distance is not None:
            parts.append(f"within {self.max_distance}")
        if self.softcap is not None:
            parts.append(f"softcap {self.softcap:g}")
        if self.sink_logits is not None:
            parts.append("learned sink logits")
        return ", ".join(parts) or "causal"


@dataclass(frozen=True, eq=False)
class Lowered:
    """The spec in the form every backend computes (tensors in float32 where they were re-rotated)."""

    q_alt: torch.Tensor | None  # (B, H, T, D) queries for the alternative regime, or None: there is none
    k_alt: torch.Tensor | None  # (B, H_kv, S, D) keys for it (the ordinary keys where only q moves)
    alt_below: int  # pairs with p_j < alt_below use the alternative
    alt_from: int | None  # pairs with p_i − p_j ≥ alt_from use the alternative
    sink_tokens: int
    window: int | None
    slopes: torch.Tensor | None  # (H,) float32 on the queries' device
    scale: float
    softcap: float | None = None
    max_distance: int | None = None
    sink_logits: torch.Tensor | None = None  # (H,) float32 on the queries' device


def lower(spec: AttentionSpec, q: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor,
          scale: float | None = None) -> Lowered:
    """Resolve the spec for one call: q (B, H, T, D) and k (B, H_kv, S, D) rotated at q_pos (T,), k_pos (S,)."""
    scale = spec.scale if spec.scale is not None else (scale if scale is not None else q.shape[-1] ** -0.5)
    slopes = None if spec.alibi_slopes is None else spec.alibi_slopes.to(device=q.device, dtype=torch.float32)
    q_alt = k_alt = None
    alt_below, alt_from = 0, None

    def rot(x, delta):
        return shift(x, delta, spec.inv_freq, spec.rotary_layout)
    if spec.window is not None and spec.sink_tokens > 0:
        S, W = spec.sink_tokens, spec.window
        q_alt = rot(q, q_pos.clamp(max=S + W - 1) - q_pos)  # the query at its in-cache position
        k_alt = k
        alt_below = S
    elif spec.group is not None:
        G, N = spec.group, spec.neighbor_window
        q_alt = rot(q, grouped_query_position(q_pos, G, N) - q_pos)
        k_alt = rot(k, k_pos // G - k_pos)
        alt_from = N
    return Lowered(q_alt, k_alt, alt_below, alt_from, spec.sink_tokens, spec.window, slopes, float(scale),
                   None if spec.softcap is None else float(spec.softcap), spec.max_distance,
                   None if spec.sink_logits is None else spec.sink_logits.to(device=q.device, dtype=torch.float32))


def grouped_query_position(q_pos, group: int, neighbor_window: int):
    """SelfExtend's position of a query beyond the neighbour window: ⌊p/G⌋ + N − ⌊N/G⌋ (keys take ⌊p/G⌋)."""
    return q_pos // group + (neighbor_window - neighbor_window // group)


def visible(low: Lowered, qp: torch.Tensor, kp: torch.Tensor) -> torch.Tensor:
    """(T, S) bool: which keys each query sees."""
    ok = kp[None, :] <= qp[:, None]
    if low.window is not None:
        ok &= ((qp[:, None] - kp[None, :]) < low.window) | (kp[None, :] < low.sink_tokens)
    if low.max_distance is not None:
        ok &= (qp[:, None] - kp[None, :]) < low.max_distance
    return ok


def cap(scores: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """Attention logit softcapping, c·tanh(s/c), in place where it applies; scores already scaled."""
    if softcap is not None:
        scores.div_(softcap).tanh_().mul_(softcap)
    return scores


def use_alt(low: Lowered, qp: torch.Tensor, kp: torch.Tensor) -> torch.Tensor:
    """(T, S) bool: which pairs take the alternative score."""
    alt = (kp[None, :] < low.alt_below).expand(len(qp), -1)
    if low.alt_from is not None:
        alt = alt | ((qp[:, None] - kp[None, :]) >= low.alt_from)
    return alt


def alibi_bias(slopes: torch.Tensor, qp: torch.Tensor, kp: torch.Tensor) -> torch.Tensor:
    """(H, T, S) bias −m_h·(p_i − p_j)."""
    return -slopes[:, None, None] * (qp[:, None] - kp[None, :]).to(torch.float32)[None]


def key_positions(spec: AttentionSpec, q_pos: torch.Tensor, n_keys: int) -> torch.Tensor:
    """Positions of the n_keys cached keys that queries at q_pos (T,) read.

    A full cache holds positions 0..n−1. A sink+window cache trimmed by the runner holds the S sinks and then a
    contiguous run ending at the last query (StreamingLLM's layout)."""
    end = int(q_pos[-1]) + 1
    if n_keys >= end:
        return torch.arange(n_keys, device=q_pos.device)
    if spec.window is None:
        raise ValueError(f"{n_keys} cached keys for a query at position {end - 1}: only a windowed spec "
                         "reads a trimmed cache")
    S = min(spec.sink_tokens, n_keys)
    return torch.cat([torch.arange(S, device=q_pos.device), torch.arange(end - (n_keys - S), end,
                                                                         device=q_pos.device)])
