"""Rotary position math that the attention kernels need (half-split layout, as transformers' Llama).

Rotations compose: a vector already rotated at position p moves to position p' by a further rotation of
(p' − p)·θ. That is how the spec's alternative positions (SelfExtend's groups, a sink's in-cache position) are
produced from the q and k the model has already rotated, with no access to the unrotated projections.
"""
from __future__ import annotations

import torch


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate x (…, T, D) by per-position angles (T, D/2); returns x's dtype."""
    emb = torch.cat((angles, angles), dim=-1)  # (T, D)
    return x * emb.cos().to(x.dtype) + rotate_half(x) * emb.sin().to(x.dtype)


def shift(x: torch.Tensor, delta: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Move x (…, T, D), rotated at positions p, to positions p + delta (T,) under frequencies inv_freq (D/2,).
    Computed in float32 whatever x's dtype (angles of 1e5 positions lose every digit in bf16)."""
    angles = delta.to(torch.float32)[:, None] * inv_freq.to(device=x.device, dtype=torch.float32)[None, :]
    return rotate(x.float(), angles)
