"""Seeded cases for testing and benchmarking attention backends: random q/k/v on odd shapes, rotated as a model
would hand them over, and a spec of every method (kept in the package so tests and scripts share one copy)."""
from __future__ import annotations

import itertools

import torch

from kernels.rotary import rotate_pairs
from kernels.spec import (AttentionSpec, QueryScale, ceiling_map, chunk_map, key_positions, leaky_map,
                          selfextend_map, shifted_map, streaming_map)

D = 16  # a power of two: the Triton kernel tiles it with tl.dot
INV_FREQ = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.float32) / D))


def make_spec(kind: str, heads: int, S: int = 0, W: int | None = None, G: int | None = None,
              N: int | None = None, alibi: bool = False, cap: float | None = None, M: int | None = None,
              layout: str = "half", rdim: int = D, sink_logits: bool = False, C: int | None = None,
              K: float | None = None, temp: tuple | None = None) -> AttentionSpec:
    """A spec of `kind`: causal / window (sinks S + window W) / selfextend (G, N) / rerope (window N) / leaky (N, K) /
    string (shift N, local W) / lminf (sinks S + window W, ceiling C) / dca (chunk N, local W). cap: a logit
    softcap; M: a distance ceiling (a model's own window under sinks); layout, rdim: re-rotation of the first rdim
    dimensions in that pairing (partial, interleaved rotary); temp: a query temperature (kind, length). A window
    with selfextend is SelfExtend on a model's sliding layer."""
    slopes = torch.tensor([2.0 ** -(8 * (h + 1) / heads) for h in range(heads)]) if alibi else None
    z = torch.linspace(-1.0, 2.0, heads) if sink_logits else None  # learned sink logits, one per head
    common = dict(alibi_slopes=slopes, softcap=cap, max_distance=M, rotary_layout=layout, sink_logits=z,
                  query_scale=QueryScale(*temp) if temp else None)
    inv = INV_FREQ[: rdim // 2]
    maps = {"selfextend": lambda: selfextend_map(G, N), "rerope": lambda: ceiling_map(N),
            "leaky": lambda: leaky_map(N, K), "string": lambda: shifted_map(N, W),
            "dca": lambda: chunk_map(N, W)}
    if kind in maps:
        window = W if kind == "selfextend" else None
        return AttentionSpec(position_map=maps[kind](), window=window, inv_freq=inv, **common)
    if kind == "lminf":
        return AttentionSpec(sink_tokens=S, window=W, position_map=ceiling_map(C), inv_freq=inv, **common)
    if kind == "window":
        return AttentionSpec(sink_tokens=S, window=W, position_map=streaming_map(S, W) if S else None, inv_freq=inv,
                             **common)
    return AttentionSpec(**common)


def _specs():
    out = []
    for alibi in (False, True):
        out.append(("causal", {}, alibi))
        for S, W in itertools.product((0, 4), (7, 64)):
            out.append(("window", {"S": S, "W": W}, alibi))
        for G, N in ((2, 5), (4, 24)):
            out.append(("selfextend", {"G": G, "N": N}, alibi))
    # What models bring (harness.profile): softcaps, a model window under sinks, SelfExtend on a sliding layer,
    # partial and interleaved rotary in the re-rotation.
    out += [("causal", {"cap": 1.5}, False), ("window", {"S": 0, "W": 24, "cap": 1.5}, False),
            ("window", {"S": 4, "W": 7, "M": 24}, False), ("window", {"S": 4, "W": 7, "M": 24}, True),
            ("selfextend", {"G": 2, "N": 5, "W": 24}, False),
            ("selfextend", {"G": 4, "N": 9, "W": 24, "cap": 2.0}, True),
            ("window", {"S": 4, "W": 7, "layout": "interleaved", "rdim": 8}, False),
            ("selfextend", {"G": 2, "N": 5, "layout": "interleaved"}, False),
            ("selfextend", {"G": 4, "N": 24, "rdim": 4}, False),
            ("causal", {"sink_logits": True}, False), ("window", {"S": 0, "W": 24, "sink_logits": True}, False),
            ("selfextend", {"G": 2, "N": 5, "sink_logits": True, "cap": 2.0}, True)]
    # The training-free position maps (issue 33), on small windows so every regime bites at 37 and 217 tokens.
    out += [("rerope", {"N": 9}, False), ("rerope", {"N": 24}, True), ("leaky", {"N": 9, "K": 4.0}, False),
            ("leaky", {"N": 16, "K": 2.5, "layout": "interleaved"}, False), ("string", {"N": 20, "W": 6}, False),
            ("string", {"N": 11, "W": 3, "cap": 2.0}, True), ("lminf", {"S": 4, "W": 24, "C": 24}, False),
            ("lminf", {"S": 2, "W": 9, "C": 9}, True), ("dca", {"N": 16, "W": 5}, False),
            ("dca", {"N": 7, "W": 3, "rdim": 8}, True), ("dca", {"N": 50, "W": 20}, False),
            ("causal", {"temp": ("logn", 16)}, False), ("causal", {"temp": ("floor", 8)}, True),
            ("selfextend", {"G": 4, "N": 9, "temp": ("logn", 32)}, False)]
    return out


SPECS = _specs()
SPEC_IDS = [f"{k}-{'-'.join(f'{a}{b}' for a, b in p.items())}{'-alibi' if al else ''}".replace("'", "")
            .replace(" ", "").replace(",", "_").replace("(", "").replace(")", "") for k, p, al in SPECS]
SHAPES = [(1, 6, 2, 217), (2, 8, 2, 37), (1, 3, 3, 1)]  # (B, H, H_kv, T): GQA 3:1, 4:1, MHA; odd lengths
SHAPE_IDS = ["b1-gqa3-t217", "b2-gqa4-t37", "b1-mha-t1"]


def qkv_at(B, H, Hkv, T, seed=0, dtype=torch.float32, layout: str = "half", rdim: int = D):
    """Unrotated q, k, v and the rotated q, k at positions 0..T−1 (as a model hands them to attention), the first
    rdim dimensions rotated in `layout`."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, D, generator=g)
    k = torch.randn(B, Hkv, T, D, generator=g)
    v = torch.randn(B, Hkv, T, D, generator=g)
    pos = torch.arange(T)
    angles = pos.float()[:, None] * INV_FREQ[None, : rdim // 2]
    return (q, k, v, rotate_pairs(q, angles, layout, rdim).to(dtype), rotate_pairs(k, angles, layout, rdim).to(dtype),
            v.to(dtype), pos)


def rotary_of(params: dict) -> dict:
    """The layout and rotated dims of a spec case (what qkv_at needs to rotate its data the same way)."""
    return {k: params[k] for k in ("layout", "rdim") if k in params}


def trimmed_cache(spec: AttentionSpec, k, v, T: int, n_queries: int):
    """What a runner holds when the last n_queries arrive: sinks and the W − 1 keys before them, plus themselves."""
    if spec.window is None or T <= spec.sink_tokens + spec.window - 1 + n_queries:
        return k, v, torch.arange(T)
    q_pos = torch.arange(T - n_queries, T)
    k_pos = key_positions(spec, q_pos, spec.sink_tokens + spec.window - 1 + n_queries)
    return k[:, :, k_pos], v[:, :, k_pos], k_pos


def prefill_error(run, spec_case, shape, seed: int) -> float:
    """A whole prompt of `shape` (B, H, H_kv, T) through `run` against the oracle, for one spec case."""
    kind, params, alibi = spec_case
    B, H, Hkv, T = shape
    _, _, _, q, k, v, pos = qkv_at(B, H, Hkv, T, seed=seed, **rotary_of(params))
    return error_vs_reference(run, make_spec(kind, H, alibi=alibi, **params), q, k, v, pos, pos)


def decode_error(run, spec_case, T: int, n_queries: int, seed: int) -> float:
    """The last n_queries of a T-token sequence against a cache (trimmed to sinks + window for windowed specs), as a
    runner decodes, through `run` against the oracle (6 query heads, 2 KV heads)."""
    kind, params, alibi = spec_case
    spec = make_spec(kind, 6, alibi=alibi, **params)
    _, _, _, q, k, v, pos = qkv_at(1, 6, 2, T, seed=seed, **rotary_of(params))
    kc, vc, k_pos = trimmed_cache(spec, k, v, T, n_queries)
    return error_vs_reference(run, spec, q[:, :, -n_queries:], kc, vc, pos[-n_queries:], k_pos)


def error_vs_reference(run, spec: AttentionSpec, q, k, v, q_pos, k_pos, scale: float = 0.3) -> float:
    """Max abs difference between `run(q, k, v, spec, q_pos, k_pos, scale)` and the fp32 oracle (printed with the
    mean, so a failing test shows how far off it was)."""
    from kernels.reference import attention_ref

    ref = attention_ref(q, k, v, spec, q_pos, k_pos, scale=scale)
    err = (run(q, k, v, spec, q_pos, k_pos, scale).cpu().float() - ref).abs()
    print(f"max abs error {err.max():.2e}, mean {err.mean():.2e}")
    return float(err.max())
