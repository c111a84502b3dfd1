"""The CPU path of the attention spec: it costs what the spec costs.

Per block of queries, the keys split at a few position thresholds into segments on which the spec is uniform —
every pair visible (or none), every pair scored the ordinary way (or the alternative way) — and a few narrow
segments where it depends on the pair (the causal diagonal, the window's edge, SelfExtend's switch-over band).
Uniform segments go to torch's fused CPU flash attention unmasked (`_scaled_dot_product_flash_attention_for_cpu`,
which also returns the log-sum-exp); segments whose mask is a triangle (the diagonal; the window's edge after
reversing both axes) go to the same kernel with `is_causal`; anything else is computed densely in fp32. The parts
are merged by log-sum-exp. Skipped segments cost nothing, so sinks + window is O(N·(S + W)).

A softcap (tanh of every score) and a distance ceiling's band are computed densely in fp32, block by block: exact,
at the cost of scores the fused kernel would not store.

Two arithmetic tricks keep everything on the fused kernel:
- grouped-query heads are folded into the query axis, (B, H_kv, G·c, D), so KV heads are never repeated;
- ALiBi's bias −m_h·(p_i − p_j) equals m_h·(p_j − c0) up to a per-query constant (which softmax ignores and the
  log-sum-exp is corrected for), and that is a dot product: q gains a column m_h/scale, k a column p_j − c0.
  c0 is the block's middle query position, so the column stays small (fp32 precision of the scores).
"""
from __future__ import annotations

import contextlib

import torch

from kernels.spec import AttentionSpec, Lowered, alibi_bias, cap, lower, use_alt, visible

BLOCK = 1024  # queries per block: large enough that the fused kernel runs at its matmul rate
ALIBI_BLOCK = 256  # with ALiBi the bias column grows with the block; 256 keeps score errors near 1e-6

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def attention_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: AttentionSpec, q_pos: torch.Tensor,
                  k_pos: torch.Tensor, scale: float | None = None, block: int | None = None) -> torch.Tensor:
    """Same contract as `kernels.reference.attention_ref`: q (B, H, T, D), k, v (B, H_kv, S, D) → (B, H, T, D).
    float32 inputs (the CPU fused kernel's fp32 path; this CPU has no native bf16)."""
    low = lower(spec, q, k, q_pos, k_pos, scale)
    if low.q is not None:  # the spec's temperature, or q rotated anew (kernels.spec.lower)
        q = low.q
    if low.k is not None:
        k = low.k
    block = block or (ALIBI_BLOCK if low.slopes is not None else BLOCK)
    B, H, T, D = q.shape
    aug = _Augmented(q, k, v, low) if low.slopes is not None else None
    out = torch.empty(B, H, T, D, dtype=q.dtype, device=q.device)
    with flush_denormals():
        for start in range(0, T, block):
            sl = slice(start, min(start + block, T))
            parts = [p for p in _block_parts(q, k, v, low, q_pos, k_pos, sl, aug) if p is not None]
            if low.sink_logits is not None:  # the learned sink: one more part, a zero value at log-weight z_h
                c = sl.stop - sl.start
                parts.append((torch.zeros(B, H, c, D, device=q.device),
                              low.sink_logits[None, :, None].expand(B, H, c).contiguous()))
            out[:, :, sl] = _merge(parts, (B, H, sl.stop - sl.start, D), q.device).to(q.dtype)
    return out


@contextlib.contextmanager
def flush_denormals():
    """ALiBi drives the scores of far keys to −hundreds, and exp() of those lands in fp32's denormal range, which
    x86 cores compute ~100× slower: measured 1.96 s → 1.28 s for one SmolLM2-shaped layer at 16k. Flushing them to
    zero changes no result above 1e-38. torch has no getter for the flag: it is restored to torch's default (off)."""
    changed = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if changed:
            torch.set_flush_denormal(False)


class _Augmented:
    """q, k, v (and the alternative q, k) with ALiBi's bias column, allocated once per call. The key column holds
    p_j − c0 for the current block's centre c0; `centre()` rewrites it (n floats) before each block."""

    def __init__(self, q, k, v, low: Lowered):
        B, H, T, D = q.shape
        col_q = (low.slopes / low.scale)[None, :, None, None].expand(B, H, T, 1)
        self.q = torch.cat([q.float(), col_q], dim=-1)
        self.q_alt = None if low.q_alt is None else torch.cat([low.q_alt, col_q], dim=-1)
        zero = torch.zeros(*k.shape[:-1], 1, device=k.device)
        self.k = torch.cat([k.float(), zero], dim=-1)
        self.k_alt = None if low.k_alt is None else torch.cat([low.k_alt.float(), zero], dim=-1)
        self.v = torch.cat([v.float(), zero], dim=-1)

    def centre(self, k_pos, n: int, c0: int) -> None:
        col = (k_pos[:n] - c0).to(torch.float32)
        for t in (self.k, self.k_alt):
            if t is not None:
                t[:, :, :n, -1] = col


# ---------------------------------------------------------------------------------------------------- planning
def _segments(low: Lowered, qp: torch.Tensor, kp: torch.Tensor) -> list[tuple[int, int]]:
    """Cut the keys at every position where some pair predicate can change for this block of queries."""
    qa, qb = int(qp[0]), int(qp[-1])
    cuts = {0, len(kp)}

    def at(p, right=True):  # index of the first key with position > p (right) or ≥ p (left)
        return int(torch.searchsorted(kp, torch.tensor(p, device=kp.device), right=right))

    cuts |= {at(qa), at(qb)}  # causal: keys ≤ qa seen by all, > qb by none
    if low.window is not None:
        cuts |= {at(qa - low.window), at(qb - low.window), at(low.sink_tokens, right=False)}
    if low.max_distance is not None:
        cuts |= {at(qa - low.max_distance), at(qb - low.max_distance)}
    if low.q_alt is not None:
        cuts.add(at(low.alt_below, right=False))
        if low.alt_from is not None:
            cuts |= {at(qa - low.alt_from), at(qb - low.alt_from)}
        if low.chunk is not None:  # the chunks of keys one and two before each query's own
            s = low.chunk
            cuts |= {at(c * s, right=False) for c in range(max(0, qa // s - 1), qb // s + 1)}
    edges = sorted(c for c in cuts if 0 <= c <= len(kp))
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def _status(low: Lowered, qp: torch.Tensor, kp: torch.Tensor) -> tuple[str, str]:
    """(visibility, source) of a segment of keys kp for queries qp: each 'all', 'none' or 'mixed'. A query's
    alternative pairs are a prefix of its keys (kernels.spec), so the segment's two ends decide its source."""
    qa, qb, p = int(qp[0]), int(qp[-1]), int(kp[0])
    if p > qb:
        return "none", "none"
    vis = "all" if p <= qa else "mixed"
    if low.window is not None and p >= low.sink_tokens:
        if p <= qa - low.window:
            return "none", "none"
        if p <= qb - low.window:
            vis = "mixed"
    if low.max_distance is not None:
        if p <= qa - low.max_distance:
            return "none", "none"
        if p <= qb - low.max_distance:
            vis = "limit"  # a distance ceiling cuts this segment: computed densely
    src = "none"
    beyond_window = low.window is not None and p >= low.sink_tokens and low.alt_below <= p and low.chunk is None \
        and low.alt_from is not None and low.alt_from >= low.window
    if low.q_alt is not None and not beyond_window:  # (pairs a distance rule past the window moves are unseen here)
        ends = use_alt(low, qp, kp[[0, -1]])
        src = "all" if bool(ends[:, 1].all()) else ("none" if not bool(ends[:, 0].any()) else "mixed")
    return vis, src


def _block_parts(q, k, v, low: Lowered, q_pos, k_pos, sl, aug: "_Augmented | None"):
    qp = q_pos[sl]
    qa, qb = int(qp[0]), int(qp[-1])
    c0 = int(qp[(len(qp) - 1) // 2])
    if aug is not None:
        aug.centre(k_pos, int(torch.searchsorted(k_pos, qb, right=True)), c0)
    fq, fk, fv = (q, k, v) if aug is None else (aug.q, aug.k, aug.v)
    fq_alt, fk_alt = (low.q_alt, low.k_alt) if aug is None else (aug.q_alt, aug.k_alt)
    contiguous_q = qb - qa + 1 == len(qp)
    runs: list[list] = []  # coalesced [a, b, vis, src]
    for a, b in _segments(low, qp, k_pos):
        vis, src = _status(low, qp, k_pos[a:b])
        if vis == "none":
            continue
        if runs and runs[-1][1] == a and runs[-1][2] == vis == "all" and runs[-1][3] == src:
            runs[-1][1] = b
        else:
            runs.append([a, b, vis, src])
    for a, b, vis, src in runs:
        kp = k_pos[a:b]
        if low.softcap is not None or vis == "limit":  # tanh of every score / a second edge: exact fp32 scores
            yield _dense(q[:, :, sl], k[:, :, a:b], v[:, :, a:b], low, qp, kp, sl, a, b)
            continue
        alt = src == "all"
        qs = (fq_alt if alt else fq)[:, :, sl]
        ks = (fk_alt if alt else fk)[:, :, a:b]
        vs = fv[:, :, a:b]
        if vis == "all" and src != "mixed":
            yield _fused(qs, ks, vs, low, qp, kp, None, c0)
            continue
        contiguous = qb - qa + 1 == len(qp) and int(kp[-1]) - int(kp[0]) + 1 == len(kp)
        if vis == "all" and src == "mixed" and contiguous and low.alt_from is not None and low.alt_below == 0 \
                and low.chunk is None:
            # SelfExtend's switch-over band: alternative iff p_j ≤ p_i − N, i.e. t ≤ r + δ; ordinary otherwise.
            delta = qa - low.alt_from - int(kp[0])
            yield _fused(fq_alt[:, :, sl], fk_alt[:, :, a:b], vs, low, qp, kp, delta, c0)
            yield _reversed(fq[:, :, sl], fk[:, :, a:b], vs, low, qp, kp, delta + 1, c0)
            continue
        kp0 = int(kp[0])
        contiguous_k = int(kp[-1]) - kp0 + 1 == len(kp)
        causal_mixed = qa < kp0 <= qb
        window_mixed = low.window is not None and kp0 >= low.sink_tokens and qa - low.window < kp0 <= qb - low.window
        if src != "mixed" and contiguous_q and contiguous_k and causal_mixed != window_mixed:
            if causal_mixed:  # the causal diagonal: key t visible to row r iff t ≤ r + δ
                yield _fused(qs, ks, vs, low, qp, kp, qa - kp0, c0)
            else:  # the window's edge: visible iff p_i − p_j < W, i.e. t ≥ r + δ
                yield _reversed(qs, ks, vs, low, qp, kp, qa - low.window + 1 - kp0, c0)
            continue
        yield _dense(q[:, :, sl], k[:, :, a:b], v[:, :, a:b], low, qp, kp, sl, a, b)


# ----------------------------------------------------------------------------------------------- computing parts
def _fold(x: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """(B, H, c, D) → (B, H_kv, G·c, D): query head h = kv·G + g reads KV head kv (transformers' repeat_kv order)."""
    B, H, c, D = x.shape
    return x.reshape(B, kv_heads, (H // kv_heads) * c, D)


def _fused(qs, ks, vs, low: Lowered, qp, kp, delta: int | None, c0: int):
    """Fused flash attention of a query block on a key run. delta None: every pair visible; else key t is visible to
    query row r iff t ≤ r + delta (a causal triangle, shifted). With ALiBi, qs/ks/vs carry the bias column centred
    on c0 (see `_Augmented`), and the log-sum-exp is corrected by the per-query constant −m_h·(p_i − c0)."""
    B, H, c, Dx = qs.shape
    Hkv, n = ks.shape[1], ks.shape[2]
    G = H // Hkv
    if delta is not None and delta < 0:  # rows r < −δ see no key here
        first = -delta
        if first >= c:
            return None
        return _pad_rows(_fused(qs[:, :, first:], ks, vs, low, qp[first:], kp, 0, c0), first, c)
    if delta is not None and delta > 0:  # keys [0, δ) are visible to every row, the rest form the triangle
        head = _fused(qs, ks[:, :, :delta], vs[:, :, :delta], low, qp, kp[:delta], None, c0)
        tail = None if delta >= n else _fused(qs, ks[:, :, delta:], vs[:, :, delta:], low, qp, kp[delta:], 0, c0)
        return _merge_pair(head, tail)
    if G > 1 and delta is not None:  # a triangle cannot be folded (rows would repeat): repeat the few keys
        o, lse = _flash(qs, ks.repeat_interleave(G, dim=1), vs.repeat_interleave(G, dim=1), is_causal=True,
                        scale=low.scale)
    else:
        o, lse = _flash(_fold(qs, Hkv), ks, vs, is_causal=delta is not None, scale=low.scale)
        o, lse = o.reshape(B, H, c, Dx), lse.reshape(B, H, c)
    if low.slopes is not None:
        o = o[..., :-1]
        lse = lse - low.slopes[None, :, None] * (qp - c0).to(torch.float32)[None, None, :]
    return o, lse


def _reversed(qs, ks, vs, low, qp, kp, delta: int, c0: int):
    """Key t visible to row r iff t ≥ r + δ: reversing both axes turns it into t' ≤ r' + (n − c − δ)."""
    c, n = qs.shape[2], ks.shape[2]
    part = _fused(qs.flip(2), ks.flip(2), vs.flip(2), low, qp.flip(0), kp.flip(0), n - c - delta, c0)
    if part is None:
        return None
    o, lse = part
    return o.flip(2), lse.flip(2)


def _dense(q, k, v, low: Lowered, qp, kp, sl, a: int, b: int):
    """Exact fp32 scores for a narrow segment where visibility or the score's source depends on the pair."""
    B, H, c, D = q.shape
    Hkv = k.shape[1]
    G = H // Hkv

    def scores(qs, ks):  # (B, H, c, n) without repeating KV heads
        return (qs.float().reshape(B, Hkv, G, c, D) @ ks.float()[:, :, None].transpose(-1, -2)).reshape(B, H, c, -1)

    s = scores(q, k)
    if low.q_alt is not None:
        mask = use_alt(low, qp, kp)
        if bool(mask.any()):
            s = torch.where(mask[None, None], scores(low.q_alt[:, :, sl], low.k_alt[:, :, a:b]), s)
    s = cap(s * low.scale, low.softcap)
    if low.slopes is not None:
        s = s + alibi_bias(low.slopes, qp, kp)[None]
    s = s.masked_fill(~visible(low, qp, kp)[None, None], float("-inf"))
    lse = torch.logsumexp(s, dim=-1)  # (B, H, c)
    p = torch.exp(s - lse[..., None]).nan_to_num_(0.0)
    o = (p.reshape(B, Hkv, G, c, -1) @ v.float()[:, :, None]).reshape(B, H, c, D)
    return o, lse


# ------------------------------------------------------------------------------------------------------ merging
def _pad_rows(part, first: int, c: int):
    if part is None:
        return None
    o, lse = part
    B, H, _, D = o.shape
    o_full = torch.zeros(B, H, c, D, dtype=o.dtype, device=o.device)
    lse_full = torch.full((B, H, c), float("-inf"), dtype=lse.dtype, device=lse.device)
    o_full[:, :, first:] = o
    lse_full[:, :, first:] = lse
    return o_full, lse_full


def _merge_pair(x, y):
    if x is None or y is None:
        return x if y is None else y
    return _merge([x, y], x[0].shape, x[0].device), torch.logaddexp(x[1], y[1])


def _merge(parts, shape, device) -> torch.Tensor:
    """Σ_p exp(lse_p − lse) · o_p with lse = log Σ_p exp(lse_p); rows that saw no key are zero."""
    if not parts:
        return torch.zeros(shape, dtype=torch.float32, device=device)
    if len(parts) == 1:
        o, lse = parts[0]
        return torch.where(torch.isneginf(lse)[..., None], 0.0, o.float())
    lses = torch.stack([lse for _, lse in parts])  # (P, B, H, c)
    total = torch.logsumexp(lses, dim=0)
    w = torch.exp(lses - total).nan_to_num_(0.0)  # (P, B, H, c)
    out = torch.zeros(shape, dtype=torch.float32, device=device)
    for (o, _), wp in zip(parts, w):
        out.addcmul_(o.float().nan_to_num(0.0), wp[..., None])
    return out
