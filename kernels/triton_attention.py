"""A flash-style Triton kernel for the whole attention spec (Dao et al. 2022's tiling and online softmax).

One program computes BLOCK_M queries of one (batch, head): it walks the key tiles, skips those the spec makes empty
(past the causal edge, behind the window and not sinks), scores each tile with q·k and — where the tile can hold
alternative pairs — with q_alt·k_alt, picks per pair, adds ALiBi's bias, masks, and folds the tile into a running
max / sum / accumulator. Memory is O(T·D); nothing T × S is ever stored.

The development machines have no GPU: tests run it with TRITON_INTERPRET=1 (set before triton is imported) on
small odd shapes. On CUDA it is the kernel runner's path for patterns flash-attn does not express.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.spec import AttentionSpec, lower


@triton.jit
def _spec_attention_fwd(
    # pointers
    Q, K, V, QA, KA, QPOS, KPOS, SLOPES, SINKS, OUT,
    # strides (batch, head, position); the last dimension is contiguous
    sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sob, soh, sot,
    # sizes and runtime scalars
    T, S, H, GROUPS, scale, sinks, window, alt_below, alt_from, chunk, chunk_local, softcap, max_distance,
    # compile-time flags
    HEAD_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_WINDOW: tl.constexpr, HAS_ALT: tl.constexpr, HAS_ALT_FROM: tl.constexpr, HAS_CHUNK: tl.constexpr,
    HAS_ALIBI: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, HAS_LIMIT: tl.constexpr, HAS_SINK: tl.constexpr, IEEE: tl.constexpr,
):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    hk = h // GROUPS  # grouped-query attention: query head h reads KV head h // G
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_D)
    row_ok = offs_m < T
    q_ptrs = b * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :]
    q = tl.load(Q + q_ptrs, mask=row_ok[:, None], other=0.0)
    if HAS_ALT:
        qa = tl.load(QA + q_ptrs, mask=row_ok[:, None], other=0.0)
    qp = tl.load(QPOS + offs_m, mask=row_ok, other=-1)
    q_lo = tl.load(QPOS + pid_m * BLOCK_M)
    q_hi = tl.load(QPOS + tl.minimum(pid_m * BLOCK_M + BLOCK_M, T) - 1)
    if HAS_ALIBI:
        slope = tl.load(SLOPES + h)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    if HAS_SINK:  # the learned sink starts the running softmax: max z_h, sum e^0 = 1, nothing accumulated
        m_i = tl.zeros([BLOCK_M], tl.float32) + tl.load(SINKS + h)
        l_i = l_i + 1.0
    acc = tl.zeros([BLOCK_M, HEAD_D], tl.float32)
    for start in range(0, S, BLOCK_N):
        k_lo = tl.load(KPOS + start)
        k_hi = tl.load(KPOS + tl.minimum(start + BLOCK_N, S) - 1)
        live = k_lo <= q_hi  # keys are sorted: a tile past the last query is empty
        if HAS_WINDOW:
            live = live & ((k_hi > q_lo - window) | (k_lo < sinks))
        if HAS_LIMIT:
            live = live & (k_hi > q_lo - max_distance)
        if live:
            offs_n = start + tl.arange(0, BLOCK_N)
            col_ok = offs_n < S
            kp = tl.load(KPOS + offs_n, mask=col_ok, other=0)
            k_ptrs = b * skb + hk * skh + offs_n[:, None] * skt + offs_d[None, :]
            k = tl.load(K + k_ptrs, mask=col_ok[:, None], other=0.0)
            if IEEE:
                s = tl.dot(q, tl.trans(k), input_precision="ieee")
            else:
                s = tl.dot(q, tl.trans(k))
            dist = qp[:, None] - kp[None, :]  # (BLOCK_M, BLOCK_N) p_i − p_j
            if HAS_ALT:
                ka = tl.load(KA + k_ptrs, mask=col_ok[:, None], other=0.0)
                if IEEE:
                    s_alt = tl.dot(qa, tl.trans(ka), input_precision="ieee")
                else:
                    s_alt = tl.dot(qa, tl.trans(ka))
                use = kp[None, :] < alt_below
                if HAS_ALT_FROM:
                    use = use | (dist >= alt_from)
                if HAS_CHUNK:  # Dual Chunk Attention: two chunks back, or one back from chunk offset >= local
                    gap = (qp // chunk)[:, None] - (kp // chunk)[None, :]
                    use = use | (gap >= 2) | ((gap == 1) & ((qp % chunk) >= chunk_local)[:, None])
                s = tl.where(use, s_alt, s)
            s = s * scale
            if HAS_SOFTCAP:  # c·tanh(s/c), tanh from one exp of a non-positive argument (no overflow)
                x = s / softcap
                e = tl.exp(-2.0 * tl.abs(x))
                s = softcap * tl.where(x >= 0, 1.0, -1.0) * (1.0 - e) / (1.0 + e)
            if HAS_ALIBI:
                s = s - slope * dist.to(tl.float32)
            ok = (dist >= 0) & col_ok[None, :] & row_ok[:, None]
            if HAS_WINDOW:
                ok = ok & ((dist < window) | (kp[None, :] < sinks))
            if HAS_LIMIT:
                ok = ok & (dist < max_distance)
            s = tl.where(ok, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing visible yet
            p = tl.exp(s - m_safe[:, None])
            alpha = tl.exp(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 1)
            v_ptrs = b * svb + hk * svh + offs_n[:, None] * svt + offs_d[None, :]
            v = tl.load(V + v_ptrs, mask=col_ok[:, None], other=0.0)
            if IEEE:
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
            else:
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m_i = m_new
    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]  # a query that sees no key gets zeros
    o_ptrs = b * sob + h * soh + offs_m[:, None] * sot + offs_d[None, :]
    tl.store(OUT + o_ptrs, out.to(OUT.dtype.element_ty), mask=row_ok[:, None])


def attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: AttentionSpec, q_pos: torch.Tensor,
                     k_pos: torch.Tensor, scale: float | None = None, block_m: int = 64,
                     block_n: int = 64) -> torch.Tensor:
    """Same contract as `kernels.reference.attention_ref`: q (B, H, T, D), k, v (B, H_kv, S, D) → (B, H, T, D).

    D must be a power of two ≥ 16 (tl.dot's tile shapes). fp32 inputs are multiplied in IEEE fp32 (not TF32), so
    the 1e-5 bound against the oracle holds; bf16/fp16 inputs accumulate in fp32."""
    B, H, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    if D < 16 or D & (D - 1):
        raise ValueError(f"the Triton kernel needs a power-of-two head dim >= 16, got {D}")
    if H % Hkv:
        raise ValueError(f"{H} query heads are not a multiple of {Hkv} KV heads")
    if k_pos.numel() != S or q_pos.numel() != T:
        raise ValueError(f"positions do not match: q_pos {q_pos.numel()} for {T} queries, k_pos {k_pos.numel()} "
                         f"for {S} keys")
    low = lower(spec, q, k, q_pos, k_pos, scale)
    if low.q is not None:  # the spec's temperature, or q rotated anew (kernels.spec.lower)
        q = low.q.to(q.dtype)
    if low.k is not None:
        k = low.k.to(k.dtype)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    qa = q if low.q_alt is None else low.q_alt.to(q.dtype).contiguous()
    ka = k if low.k_alt is None else low.k_alt.to(k.dtype).contiguous()
    slopes = low.slopes if low.slopes is not None else torch.zeros(1, device=q.device)
    sinks = low.sink_logits.contiguous() if low.sink_logits is not None else torch.zeros(1, device=q.device)
    out = torch.empty_like(q)
    qpos = q_pos.to(device=q.device, dtype=torch.int64).contiguous()
    kpos = k_pos.to(device=q.device, dtype=torch.int64).contiguous()
    grid = (triton.cdiv(T, block_m), B * H)
    _spec_attention_fwd[grid](
        q, k, v, qa, ka, qpos, kpos, slopes, sinks, out,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1), out.stride(2),
        T, S, H, H // Hkv, low.scale, low.sink_tokens, low.window or 0, low.alt_below,
        low.alt_from if low.alt_from is not None else 0, low.chunk or 1, low.chunk_local,
        low.softcap or 1.0, low.max_distance or 0,
        HEAD_D=D, BLOCK_M=block_m, BLOCK_N=block_n,
        HAS_WINDOW=low.window is not None, HAS_ALT=low.q_alt is not None, HAS_ALT_FROM=low.alt_from is not None,
        HAS_CHUNK=low.chunk is not None,
        HAS_ALIBI=low.slopes is not None, HAS_SOFTCAP=low.softcap is not None,
        HAS_LIMIT=low.max_distance is not None, HAS_SINK=low.sink_logits is not None, IEEE=q.dtype == torch.float32,
    )
    return out
