"""Rotary position math that the attention kernels need.

A rotary embedding is described by three things (read from the model by harness.profile, never assumed):
  inv_freq  θ_i, (dim/2,), the angle per position of pair i;
  dim       how many leading dimensions of a head rotate (partial rotary: Phi, GPT-NeoX, StableLM); the rest pass;
  layout    which dimensions pair up: "half" (i with i + dim/2: Llama, Mistral, Qwen, Gemma) or "interleaved"
            (2i with 2i + 1: GPT-J, Cohere).

Rotations compose: a vector already rotated at position p moves to position p' by a further rotation of
(p' − p)·θ. That is how the spec's alternative positions (SelfExtend's groups, a sink's in-cache position) are
produced from the q and k the model has already rotated, with no access to the unrotated projections.
"""
from __future__ import annotations

import math

import torch

LAYOUTS = ("half", "interleaved")


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate x (…, T, D) by per-position angles (T, D/2), half-split layout over all D; returns x's dtype."""
    emb = torch.cat((angles, angles), dim=-1)  # (T, D)
    return x * emb.cos().to(x.dtype) + rotate_half(x) * emb.sin().to(x.dtype)


def rotate_pairs(x: torch.Tensor, angles: torch.Tensor, layout: str = "half", dim: int | None = None) -> torch.Tensor:
    """Rotate the first `dim` dimensions of x (…, D) by angles broadcastable to (…, dim/2) in `layout`; the
    remaining D − dim dimensions pass unchanged. Returns x's dtype."""
    D = x.shape[-1]
    dim = D if dim is None else dim
    if layout not in LAYOUTS:
        raise ValueError(f"unknown rotary layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if dim % 2 or dim > D:
        raise ValueError(f"rotary dim {dim} must be even and at most the head dim {D}")
    rot, rest = x[..., :dim], x[..., dim:]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    if layout == "half":
        a, b = rot[..., : dim // 2], rot[..., dim // 2:]
        out = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
    else:
        a, b = rot[..., 0::2], rot[..., 1::2]
        out = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
    return torch.cat((out, rest), dim=-1) if dim < D else out


def shift(x: torch.Tensor, delta: torch.Tensor, inv_freq: torch.Tensor, layout: str = "half",
          dim: int | None = None) -> torch.Tensor:
    """Move x (…, T, D), rotated at positions p, to positions p + delta (T,) under frequencies inv_freq (dim/2,)
    (dim = 2·len(inv_freq) leading dimensions rotate, paired as `layout`). The angles are computed in float64 (a
    shift of 1e6 positions keeps its fractional turns), the rotation in float32 whatever x's dtype (angles of 1e5
    positions lose every digit in bf16)."""
    inv = inv_freq.to(device=x.device, dtype=torch.float64)
    angles = (delta.to(device=x.device, dtype=torch.float64)[:, None] * inv[None, :])
    angles = torch.remainder(angles, 2 * math.pi).to(torch.float32)
    return rotate_pairs(x.float(), angles, layout, dim if dim is not None else 2 * inv.numel())


def model_angles(pos: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """The angles a transformers rotary embedding uses at `pos`: the float32 product p·θ (its inv_freq @ positions
    in float32), so an exact inverse of the model's own rotation can be taken."""
    return pos.to(torch.float32)[:, None] * inv_freq.to(device=pos.device, dtype=torch.float32)[None, :]


def rerotate(x: torch.Tensor, pos: torch.Tensor, new_pos: torch.Tensor, inv_freq: torch.Tensor,
             layout: str = "half") -> torch.Tensor:
    """x (…, T, D) as the model rotated it at `pos`, moved to `new_pos` with an error that does not grow with
    position: the model's own float32 rotation is undone with its own float32 angles (c² + s² = 1 to rounding), and
    the rotation to new_pos is computed from float64 angles reduced modulo 2π. (Shifting by new_pos − pos instead
    keeps the model's angle error, fl32(p·θ) − p·θ, which reaches 0.06 rad at p = 1e6, θ = 1.)"""
    dim = 2 * inv_freq.numel()
    back = rotate_pairs(x.float(), -model_angles(pos.to(x.device), inv_freq), layout, dim)
    inv = inv_freq.to(device=x.device, dtype=torch.float64)
    angles = torch.remainder(new_pos.to(device=x.device, dtype=torch.float64)[:, None] * inv[None, :], 2 * math.pi)
    return rotate_pairs(back, angles.to(torch.float32), layout, dim)
