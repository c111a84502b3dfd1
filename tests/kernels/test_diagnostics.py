"""Per-head diagnostics on attention we construct, so every number has a known answer."""
from __future__ import annotations

import math

import pytest
import torch

from kernels.diagnostics import attention_probs, head_stats
from kernels.reference import attention_ref
from kernels.testing import SHAPES, SHAPE_IDS, make_spec, qkv_at, rotary_of


@pytest.mark.parametrize("shape", SHAPES[:2], ids=SHAPE_IDS[:2])
def test_probs_times_values_is_the_oracle(spec_case, shape):
    """The diagnosed rows are the rows the model computes: probs @ v equals the oracle's output on every spec."""
    kind, params, alibi = spec_case
    B, H, Hkv, T = shape
    spec = make_spec(kind, H, alibi=alibi, **params)
    _, _, _, q, k, v, pos = qkv_at(B, H, Hkv, T, **rotary_of(params))
    rows = slice(T - 3, T)
    probs = attention_probs(q[:, :, rows], k, spec, pos[rows], pos, scale=0.3)
    out = probs @ v.repeat_interleave(H // Hkv, dim=1)
    ref = attention_ref(q[:, :, rows], k, v, spec, pos[rows], pos, scale=0.3)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    if spec.sink_logits is None:  # every row sees at least itself
        torch.testing.assert_close(probs.sum(-1), torch.ones(B, H, 3))


def _constructed(S=40, needle=(20, 24)):
    """Three heads over S keys, one query at position S − 1: head 0 attends only to needle token 22, head 1 only to
    the first key (a sink), head 2 uniformly. Unrotated (a causal spec moves nothing)."""
    D = 16
    k = torch.zeros(1, 3, S, D)
    q = torch.zeros(1, 3, 1, D)
    k[0, 0, 22, 0] = 1.0
    q[0, 0, 0, 0] = 100.0  # score 100·0.3 = 30 on key 22, 0 elsewhere: essentially all mass there
    k[0, 1, 0, 1] = 1.0
    q[0, 1, 0, 1] = 100.0
    return q, k, torch.arange(S - 1, S), torch.arange(S)


def test_a_head_that_attends_only_to_the_needle_scores_one():
    from kernels.spec import AttentionSpec

    q, k, q_pos, k_pos = _constructed()
    probs = attention_probs(q, k, AttentionSpec(), q_pos, k_pos, scale=0.3)
    tokens = torch.arange(100, 140)
    stats = head_stats(probs, q_pos, k_pos, needle=(20, 24), key_tokens=tokens, written=torch.tensor([122]),
                       sink=4, recent=8)
    assert stats.needle_mass[0, 0, 0] > 0.999 and stats.retrieval[0, 0, 0] == 1.0
    assert stats.entropy[0, 0, 0] < 1e-6
    # the same head writing another token is not retrieving (Wu et al.: the copied token must be the one written)
    miss = head_stats(probs, q_pos, k_pos, (20, 24), tokens, torch.tensor([121]))
    assert miss.retrieval[0, 0, 0] == 0.0
    assert stats.sink_mass[0, 1, 0] > 0.999 and stats.needle_mass[0, 1, 0] < 1e-6 and stats.retrieval[0, 1, 0] == 0
    # the uniform head: mass proportional to counts, entropy log S
    assert stats.needle_mass[0, 2, 0] == pytest.approx(4 / 40, abs=1e-6)
    assert stats.sink_mass[0, 2, 0] == pytest.approx(4 / 40, abs=1e-6)
    assert stats.recent_mass[0, 2, 0] == pytest.approx(8 / 40, abs=1e-6)
    assert stats.entropy[0, 2, 0] == pytest.approx(math.log(40), abs=1e-5)


def test_a_window_that_hides_the_needle_gives_it_no_mass():
    """Sinks 4 + window 8 at query 39: the needle at 20–23 is invisible, whatever the head wants."""
    from kernels.spec import AttentionSpec, streaming_map

    q, k, q_pos, k_pos = _constructed()
    spec = AttentionSpec(sink_tokens=4, window=8, position_map=streaming_map(4, 8), inv_freq=torch.zeros(8))
    stats = head_stats(attention_probs(q, k, spec, q_pos, k_pos, scale=0.3), q_pos, k_pos, (20, 24),
                       torch.arange(100, 140), torch.tensor([122]))
    assert float(stats.needle_mass.max()) == 0.0 and float(stats.retrieval.max()) == 0.0
    assert stats.sink_mass[0, 2, 0] == pytest.approx(4 / 12, abs=1e-6)  # uniform over the 12 visible keys
