"""The attention spec: what one attention layer computes, as plain data, for every backend (reference, CPU, Triton).

For query i at position p_i and key j at position p_j (positions are tensors handed to the kernels):
  visible   p_j ≤ p_i, and, with a window W: p_i − p_j < W or p_j < S (the S sink tokens stay visible);
  score     scale · q̃_i·k̃_j − m_h·(p_i − p_j)   (the ALiBi term only when slopes m (H,) are given);
  capped    with a softcap c the scaled dot product becomes c·tanh(s/c) before the bias (Gemma 2);
  sinks     with learned sink logits z_h (GPT-OSS), each softmax also counts a virtual key scored z_h whose value
            is zero: out_i = Σ_j e^{s_ij} v_j / (e^{z_h} + Σ_j e^{s_ij});
  limit     with max_distance M, pairs with p_i − p_j ≥ M are never visible (a model's own sliding window that a
            method's sinks + window compose with: sinks stay visible only inside it);
  q̃, k̃      q and k as the model rotated them (at p_i, p_j), except for the pairs a `PositionMap` sends to its
            *alternative* regime, scored as if the query stood at map.query(p_i) and the key at map.key(p_j) —
            two rotations merged in one softmax. Every training-free attention-level method is one map:
              sinks (StreamingLLM, Xiao et al. 2024)  sink keys, the query at its in-cache position min(p_i, S+W−1);
              SelfExtend (Jin et al. 2024)            p_i − p_j ≥ N: ⌊p_i/G⌋ + N − ⌊N/G⌋ and ⌊p_j/G⌋;
              ReRoPE (Su 2023)                        p_i − p_j ≥ w: the distance w;
              Leaky ReRoPE (Su 2023)                  p_i − p_j ≥ w: the distance w + (p_i − p_j − w)/k;
              STRING (An et al. 2025)                 p_i − p_j ≥ S: the distance p_i − p_j − S + W;
              LM-Infinite (Han et al. 2024)           p_i − p_j ≥ C (the sinks, past its window): the distance C;
              Dual Chunk Attention (An et al. 2024)   keys two chunks back, or one back for queries at chunk offset
                                                      ≥ w: the query at s + w − 1, the key at p_j mod s.
  temperature  with a `QueryScale`, q_i is multiplied by t(p_i) ≥ 1 (log-n scaling, Llama 4's floor-scaled one).
Re-rotation follows the layer's own rotary embedding: `inv_freq` (dim/2,), the leading `rotary_dim` dimensions,
paired `rotary_layout` ("half" or "interleaved"; kernels.rotary). Every backend lowers the spec with `lower()` to one
form: q, k, an alternative (q_alt, k_alt) and the rule (`use_alt`) saying which pairs take it. The rotations are
computed here once, in float32; the kernels only choose between two dot products per pair. For every map the
alternative pairs of a query are a prefix of its keys (the rule only grows as p_j falls), which the CPU path's
planning relies on.

This module imports nothing from `extensions/` or `harness/`: the extensions build specs, the kernels read them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kernels.rotary import LAYOUTS, rerotate


@dataclass(frozen=True)
class PosMap:
    """A map of integer positions: p → min(cap, f((p mod m) / div) + offset), f = floor where `floor`; or `const`."""

    div: float = 1.0
    floor: bool = False
    mod: int | None = None
    offset: float = 0.0
    cap: float | None = None
    const: float | None = None

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        """float64 positions (exact for integers below 2^53)."""
        if self.const is not None:
            return torch.full(p.shape, float(self.const), dtype=torch.float64, device=p.device)
        x = p.to(torch.float64)
        if self.mod is not None:
            x = torch.remainder(x, self.mod)
        if self.div != 1:
            x = x / self.div
        if self.floor:
            x = torch.floor(x)
        x = x + self.offset
        return x if self.cap is None else x.clamp(max=self.cap)

    @property
    def identity(self) -> bool:
        return self == PosMap()


@dataclass(frozen=True)
class PositionMap:
    """Which (query, key) pairs a method scores at other positions, and at which (the module docstring).

    A pair (p_i, p_j) is alternative iff p_j < key_below, or p_i − p_j ≥ distance_from, or (chunk s, chunk_local w)
    ⌊p_i/s⌋ − ⌊p_j/s⌋ ≥ 2, or = 1 with p_i mod s ≥ w."""

    name: str
    query: PosMap = PosMap()
    key: PosMap = PosMap()
    key_below: int = 0
    distance_from: int | None = None
    chunk: int | None = None
    chunk_local: int = 0

    def __post_init__(self):
        if self.distance_from is not None and self.distance_from < 1:
            raise ValueError(f"PositionMap.distance_from must be >= 1, got {self.distance_from}")
        if self.chunk is not None and not (self.chunk >= 1 and 0 <= self.chunk_local <= self.chunk):
            raise ValueError(f"PositionMap needs chunk >= 1 and 0 <= chunk_local <= chunk, got {self.chunk}, "
                             f"{self.chunk_local}")
        if self.key_below == 0 and self.distance_from is None and self.chunk is None:
            raise ValueError(f"PositionMap {self.name!r} selects no pair (give key_below, distance_from or chunk)")

    def distance(self, p_i: int, p_j: int) -> float:
        """The relative position the pair is scored at (for pictures and tests; kernels never call it)."""
        import torch as _t

        if not bool(use_alt_rule(self.key_below, self.distance_from, self.chunk, self.chunk_local,
                                 _t.tensor([p_i]), _t.tensor([p_j]))[0, 0]):
            return float(p_i - p_j)
        return float(self.query(_t.tensor([p_i]))[0] - self.key(_t.tensor([p_j]))[0])


def streaming_map(sink_tokens: int, window: int) -> PositionMap:
    """StreamingLLM: a sink key is scored from the query's in-cache position min(p_i, S + W − 1)."""
    return PositionMap("sinks", query=PosMap(cap=sink_tokens + window - 1), key_below=sink_tokens)


def selfextend_map(group: int, neighbor_window: int) -> PositionMap:
    """SelfExtend: pairs N or more apart at ⌊p_i/G⌋ + N − ⌊N/G⌋ and ⌊p_j/G⌋."""
    return PositionMap("selfextend", query=PosMap(div=group, floor=True,
                                                  offset=neighbor_window - neighbor_window // group),
                       key=PosMap(div=group, floor=True), distance_from=neighbor_window)


def ceiling_map(window: int, ceiling: int | None = None) -> PositionMap:
    """ReRoPE (and LM-Infinite's distance ceiling): pairs at least `window` apart are scored at distance `ceiling`
    (default: window): the query at `ceiling`, the key at 0."""
    c = window if ceiling is None else ceiling
    return PositionMap("ceiling", query=PosMap(const=c), key=PosMap(const=0), distance_from=window)


def leaky_map(window: int, k: float) -> PositionMap:
    """Leaky ReRoPE: pairs at least w apart at distance w + (d − w)/k: the query at p_i/k + w(1 − 1/k), the key at
    p_j/k."""
    return PositionMap("leaky", query=PosMap(div=k, offset=window - window / k), key=PosMap(div=k),
                       distance_from=window)


def shifted_map(shift: int, local: int) -> PositionMap:
    """STRING: pairs at least S apart at distance d − S + W (the query moved back by S − W)."""
    return PositionMap("shifted", query=PosMap(offset=local - shift), distance_from=shift)


def chunk_map(chunk: int, local: int) -> PositionMap:
    """Dual Chunk Attention: keys at p_j mod s; a query two chunks on (or one on, at offset ≥ w) at s + w − 1."""
    return PositionMap("chunks", query=PosMap(const=chunk + local - 1), key=PosMap(mod=chunk), chunk=chunk,
                       chunk_local=local)


@dataclass(frozen=True)
class QueryScale:
    """A temperature that grows with the query's position: q_i ← t(p_i)·q_i.
      logn    t = max(1, log(p + 1) / log(L))  (Qwen's log-n attention; L: `length`, the trained window)
      floor   t = 1 + scale·log(⌊(p + 1)/L⌋ + 1)  (Llama 4's attention temperature tuning; L: `length`)"""

    kind: str
    length: int
    scale: float = 0.1

    def __post_init__(self):
        if self.kind not in ("logn", "floor"):
            raise ValueError(f"QueryScale.kind must be logn or floor, got {self.kind!r}")
        if not (isinstance(self.length, int) and self.length >= 2):
            raise ValueError(f"QueryScale.length must be an integer >= 2, got {self.length!r}")

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        """(T,) float32 factors for positions p."""
        x = p.to(torch.float64) + 1
        if self.kind == "logn":
            t = (torch.log(x) / math.log(self.length)).clamp(min=1.0)
        else:
            t = 1 + self.scale * torch.log(torch.floor(x / self.length) + 1)
        return t.to(torch.float32)


@dataclass(frozen=True, eq=False)
class AttentionSpec:
    sink_tokens: int = 0  # S: keys at positions < S stay visible past the window (needs a window when S > 0)
    window: int | None = None  # W: keys within W positions of the query (itself included) are visible
    alibi_slopes: torch.Tensor | None = None  # (H,) float32 m_h: logit bias −m_h·(p_i − p_j)
    position_map: PositionMap | None = None  # the alternative regime (sinks, SelfExtend, ReRoPE, DCA ...)
    inv_freq: torch.Tensor | None = None  # (D/2,) rotary frequencies, needed to re-rotate (a position map)
    scale: float | None = None  # softmax scale; None: the caller's (transformers passes the module's scaling)
    softcap: float | None = None  # c: scores become c·tanh(s/c) (attention logit softcapping)
    max_distance: int | None = None  # M: pairs with p_i − p_j ≥ M are invisible (a model's window under sinks)
    rotary_layout: str = "half"  # how the layer pairs rotary dimensions (kernels.rotary.LAYOUTS)
    sink_logits: torch.Tensor | None = None  # (H,) learned per-head sink logits: a virtual key with a zero value
    query_scale: QueryScale | None = None  # a temperature growing with the query's position

    def __post_init__(self):
        def positive_int(name, low=1):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
                raise ValueError(f"AttentionSpec.{name} must be an integer >= {low}, got {v!r}")

        positive_int("sink_tokens", 0)
        positive_int("window")
        positive_int("max_distance")
        if self.softcap is not None and not (isinstance(self.softcap, (int, float)) and math.isfinite(self.softcap)
                                             and self.softcap > 0):
            raise ValueError(f"AttentionSpec.softcap must be a positive finite number, got {self.softcap!r}")
        if self.rotary_layout not in LAYOUTS:
            raise ValueError(f"AttentionSpec.rotary_layout must be one of {', '.join(LAYOUTS)}, "
                             f"got {self.rotary_layout!r}")
        if self.sink_tokens and self.window is None:
            raise ValueError(f"sink_tokens={self.sink_tokens} needs a window (sinks are what stays visible past it)")
        if self.rerotates and self.inv_freq is None:
            raise ValueError(f"the position map {self.position_map.name!r} re-rotates q/k: the spec needs the "
                             "rotary inv_freq")
        if self.scale is not None and not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale)
                                           and self.scale > 0):
            raise ValueError(f"AttentionSpec.scale must be a positive finite number, got {self.scale!r}")
        if self.sink_logits is not None and self.sink_logits.dim() != 1:
            raise ValueError(f"sink_logits must be (H,), got shape {tuple(self.sink_logits.shape)}")
        if self.alibi_slopes is not None and self.alibi_slopes.dim() != 1:
            raise ValueError(f"alibi_slopes must be (H,), got shape {tuple(self.alibi_slopes.shape)}")

    @property
    def rerotates(self) -> bool:
        return self.position_map is not None

    @property
    def is_causal_only(self) -> bool:
        """Plain causal attention: any causal kernel (SDPA, flash-attn) computes it."""
        return (self.window is None and self.alibi_slopes is None and self.position_map is None
                and self.softcap is None and self.max_distance is None and self.sink_logits is None
                and self.query_scale is None)

    def describe(self) -> str:
        parts = []
        if self.window is not None:
            parts.append(f"sinks {self.sink_tokens} + window {self.window}" if self.sink_tokens
                         else f"window {self.window}")
        m = self.position_map
        if m is not None and not (m.name == "sinks" and self.sink_tokens):
            parts.append(m.name + (f" from distance {m.distance_from}" if m.distance_from is not None else "")
                         + (f" chunk {m.chunk} local {m.chunk_local}" if m.chunk is not None else ""))
        if self.query_scale is not None:
            parts.append(f"{self.query_scale.kind} temperature past {self.query_scale.length}")
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
    chunk: int | None  # and pairs two chunks apart, or one apart with the query at chunk offset ≥ chunk_local
    chunk_local: int
    sink_tokens: int
    window: int | None
    slopes: torch.Tensor | None  # (H,) float32 on the queries' device
    scale: float
    softcap: float | None = None
    max_distance: int | None = None
    sink_logits: torch.Tensor | None = None  # (H,) float32 on the queries' device
    q: torch.Tensor | None = None  # the queries to use instead of the caller's (temperature, re-rotation)
    k: torch.Tensor | None = None  # the keys to use instead of the caller's (re-rotated at float64 angles)


def lower(spec: AttentionSpec, q: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor,
          scale: float | None = None) -> Lowered:
    """Resolve the spec for one call: q (B, H, T, D) and k (B, H_kv, S, D) rotated at q_pos (T,), k_pos (S,)."""
    scale = spec.scale if spec.scale is not None else (scale if scale is not None else q.shape[-1] ** -0.5)
    slopes = None if spec.alibi_slopes is None else spec.alibi_slopes.to(device=q.device, dtype=torch.float32)
    if spec.query_scale is not None:
        t = spec.query_scale(q_pos).to(q.device)
        q = q.float() * t[:, None]
    q_alt = k_alt = k_new = None
    q_new = q if spec.query_scale is not None else None
    m = spec.position_map
    if m is not None:
        # Both regimes from the unrotated vectors, at float64 angles: the error stays flat in stream position
        # (kernels.rotary.rerotate). The ordinary regime is rotated anew at the true positions for that reason.
        def at(x, pos, where):
            return rerotate(x, pos, where(pos), spec.inv_freq, spec.rotary_layout)

        q_new, k_new = at(q, q_pos, PosMap()), at(k, k_pos, PosMap())
        q_alt = at(q, q_pos, m.query)
        k_alt = k_new if m.key.identity else at(k, k_pos, m.key)
    return Lowered(q_alt, k_alt, m.key_below if m else 0, m.distance_from if m else None, m.chunk if m else None,
                   m.chunk_local if m else 0, spec.sink_tokens, spec.window, slopes, float(scale),
                   None if spec.softcap is None else float(spec.softcap), spec.max_distance,
                   None if spec.sink_logits is None else spec.sink_logits.to(device=q.device, dtype=torch.float32),
                   q_new, k_new)


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
    return use_alt_rule(low.alt_below, low.alt_from, low.chunk, low.chunk_local, qp, kp)


def use_alt_rule(below: int, dist_from: int | None, chunk: int | None, local: int, qp: torch.Tensor,
                 kp: torch.Tensor) -> torch.Tensor:
    alt = (kp[None, :] < below).expand(len(qp), -1)
    if dist_from is not None:
        alt = alt | ((qp[:, None] - kp[None, :]) >= dist_from)
    if chunk is not None:
        gap = torch.div(qp, chunk, rounding_mode="floor")[:, None] - torch.div(kp, chunk, rounding_mode="floor")[None]
        alt = alt | (gap >= 2) | ((gap == 1) & (torch.remainder(qp, chunk) >= local)[:, None])
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
