"""Perplexity vs length: bucketing, sliding windows, and the command on a tiny model and on SmolLM2."""
import subprocess
import sys

import pytest
import torch

from evals.perplexity import PerplexityConfig, bucket_nll, document_ids, sliding_nll
from harness.records import read_records


def test_buckets_cover_every_scored_position_once():
    nll = torch.arange(1, 100, dtype=torch.float32)  # loss of positions 1..99
    rows = bucket_nll(nll, [10, 50, 100])
    assert [(a, b, n) for a, b, _, n in rows] == [(0, 10, 9), (10, 50, 40), (50, 100, 50)]
    assert rows[0][2] == pytest.approx(sum(range(1, 10)) / 9)  # positions 1..9
    assert rows[2][2] == pytest.approx(sum(range(50, 100)) / 50)


def test_sliding_window_scores_each_token_once_and_equals_one_pass_when_it_covers_the_text():
    calls = []

    def score(ids):
        calls.append(ids.shape[1])
        return ids[0, 1:].float()  # the "loss" of a token is its id: counts which tokens were scored

    ids = torch.arange(100)[None]
    mean, count = sliding_nll(score, ids, window=32, stride=16)
    assert count == 99 and mean == pytest.approx(sum(range(1, 100)) / 99)
    assert max(calls) == 32
    mean_full, count_full = sliding_nll(score, ids, window=100, stride=16)
    assert (mean_full, count_full) == (mean, count)


def test_documents_are_seeded_and_exact_length(smollm2_tokenizer):
    cfg = PerplexityConfig(lengths=(1000, 3000), documents=2)
    a, b = document_ids(smollm2_tokenizer, cfg, 0), document_ids(smollm2_tokenizer, cfg, 1)
    assert len(a) == len(b) == 3000 and a != b
    assert a == document_ids(smollm2_tokenizer, cfg, 0)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True)


def test_perplexity_command_writes_bucket_records_and_resumes(tiny_llama_path, tmp_path):
    out = tmp_path / "ppl"
    res = _cli("perplexity", "--model", tiny_llama_path, "--lengths", "128,256,512", "--documents", "2",
               "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    recs = read_records(out)
    assert sorted((r.sample_id, r.position_start, r.context_length) for r in recs) == [
        (d, a, b) for d in (0, 1) for a, b in ((0, 128), (128, 256), (256, 512))]
    assert all(r.forward_length == 512 and r.ppl > 1 and r.task == "perplexity" and r.mode == "one-pass"
               and r.scored_tokens == r.context_length - r.position_start - (r.position_start == 0) for r in recs)
    assert not (out / "perplexity.jsonl").exists()  # one results file for every task
    res = _cli("perplexity", "--model", tiny_llama_path, "--lengths", "128,256,512", "--documents", "2",
               "--out", str(out), "--no-progress")
    assert "nothing to do" in res.stderr and len(read_records(out)) == 6


@pytest.mark.slow
def test_smollm2_perplexity_default_text(tmp_path):
    """The issue's command: `longctx perplexity --model smollm2 --lengths 2k,4k` with no file given."""
    res = _cli("perplexity", "--model", "smollm2", "--lengths", "2k,4k", "--out", str(tmp_path / "p"),
               "--no-progress")
    assert res.returncode == 0, res.stderr
    recs = read_records(tmp_path / "p")
    print([(r.context_length, r.ppl) for r in recs])
    assert len(recs) == 2 and all(5 < r.ppl < 200 for r in recs)  # English text inside the window
