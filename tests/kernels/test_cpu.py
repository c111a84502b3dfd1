"""The CPU path against the fp32 oracle: every spec, odd shapes, GQA, prefill in several blocks, decode steps."""
from __future__ import annotations

import pytest
import torch

from kernels.cpu import attention_cpu
from kernels.testing import SHAPE_IDS, SHAPES, decode_error, error_vs_reference, make_spec, prefill_error, qkv_at

# fp32 both sides; the fused kernel sums in a different order (online softmax, log-sum-exp merges), so the
# outputs differ by a few ulps of the largest partial sums. 1e-5 absolute is the bound.
ATOL = 1e-5


@pytest.mark.parametrize("block", [16, 1024])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_cpu_prefill_equals_reference(spec_case, shape, block):
    run = lambda *a: attention_cpu(*a, block=block)  # noqa: E731
    assert prefill_error(run, spec_case, shape, seed=1) <= ATOL


@pytest.mark.parametrize("n_queries", [1, 5])
def test_cpu_decode_steps_equal_reference(spec_case, n_queries):
    """The last tokens against a cache (trimmed to sinks + window for windowed specs), as a runner decodes."""
    run = lambda *a: attention_cpu(*a, block=4)  # noqa: E731
    assert decode_error(run, spec_case, 151, n_queries, seed=2) <= ATOL


def test_cpu_alibi_at_long_positions_keeps_fp32_accuracy():
    """The bias column is centred per block: at position 60k a raw p_j column would cost ~3 digits."""
    _, _, _, q, k, v, _ = qkv_at(1, 4, 1, 300, seed=3)
    pos = torch.arange(60_000, 60_300)
    assert error_vs_reference(attention_cpu, make_spec("causal", 4, alibi=True), q, k, v, pos, pos, 0.25) <= ATOL
