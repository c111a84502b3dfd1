"""The Triton kernel against the fp32 oracle. Without a GPU it runs under TRITON_INTERPRET=1 (numpy on CPU), so the
shapes stay small; on CUDA the same cases run compiled, plus bf16."""
from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():  # tests/conftest.py sets it too, before anything imports triton
    os.environ.setdefault("TRITON_INTERPRET", "1")
triton = pytest.importorskip("triton")

from kernels.reference import attention_ref  # noqa: E402
from kernels.triton_attention import attention_triton  # noqa: E402

from kernels.testing import decode_error, make_spec, prefill_error, qkv_at  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ATOL = 1e-5  # fp32 in, IEEE fp32 products: only the summation order differs from the oracle


def _triton(q, k, v, spec, q_pos, k_pos, scale):
    to = lambda t: t.to(DEVICE)  # noqa: E731
    return attention_triton(to(q), to(k), to(v), spec, to(q_pos), to(k_pos), scale, block_m=16, block_n=16)


@pytest.mark.parametrize("shape", [(1, 6, 2, 53), (1, 8, 2, 37)], ids=["gqa3-t53", "gqa4-t37"])
def test_triton_prefill_equals_reference(spec_case, shape):
    assert prefill_error(_triton, spec_case, shape, seed=4) <= ATOL


@pytest.mark.parametrize("n_queries", [1, 3])
def test_triton_decode_equals_reference(spec_case, n_queries):
    assert decode_error(_triton, spec_case, 83, n_queries, seed=5) <= ATOL


def test_triton_refuses_head_dims_tl_dot_cannot_tile():
    q = torch.zeros(1, 2, 4, 24)
    with pytest.raises(ValueError, match="power-of-two head dim"):
        attention_triton(q, q, q, make_spec("causal", 2), torch.arange(4), torch.arange(4))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_triton_bf16_is_no_worse_than_twice_torch_bf16():
    """bf16: compare against the oracle with the same tolerance torch's own bf16 SDPA achieves, doubled."""
    spec = make_spec("window", 8, S=4, W=64)
    _, _, _, q, k, v, pos = qkv_at(1, 8, 2, 257, seed=6)
    ref = attention_ref(q, k, v, spec, pos, pos, scale=0.25)
    out = attention_triton(*(t.cuda().bfloat16() for t in (q, k, v)), spec, pos.cuda(), pos.cuda(), scale=0.25)
    ref_bf16 = attention_ref(*(t.bfloat16() for t in (q, k, v)), spec, pos, pos, scale=0.25).float()
    assert (out.float().cpu() - ref).abs().max() <= 2 * (ref_bf16 - ref).abs().max() + 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_on_cuda_sends_plain_causal_to_sdpa_and_other_specs_to_triton():
    """Plain causal prefill and decode are SDPA's on CUDA too (our Triton kernel is for what SDPA cannot express);
    a window, or a chunk of queries after cached keys, still goes to Triton (flash-attn takes bf16 causal first)."""
    from kernels import attention, choose

    _, _, _, q, k, v, pos = qkv_at(1, 6, 2, 97, seed=7)
    q, k, v, pos = q.cuda(), k.cuda(), v.cuda(), pos.cuda()
    causal, window = make_spec("causal", 6), make_spec("window", 6, S=4, W=32)
    assert choose(causal, q, pos, pos) == "sdpa"
    assert choose(causal, q[:, :, -1:], pos[-1:], pos) == "sdpa"
    assert choose(causal, q[:, :, -5:], pos[-5:], pos) == "triton"
    assert choose(window, q, pos, pos) == "triton"
    out, which = attention(q, k, v, causal, pos, pos)
    assert which == "sdpa"
    assert (out.cpu() - attention_ref(*(t.cpu() for t in (q, k, v)), causal, pos.cpu(), pos.cpu())).abs().max() <= 1e-5
