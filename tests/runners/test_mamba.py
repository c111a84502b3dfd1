"""The Mamba runner on tiny random Mamba-2 and Mamba-1 models: chunked prefill equals the unchunked forward,
memory does not depend on the chunk count, and experiment commands pick the runner for Mamba checkpoints."""
import json
import subprocess
import sys

import pytest
import torch

from extensions.none import NoExtension
from harness.errors import UserError
from harness.runners.base import GenerationRequest
from harness.runners.mamba import MambaRunner


def _runner(path, **kw):
    r = MambaRunner(device="cpu", dtype="float32", **kw)
    r.load(path, NoExtension(), NoExtension().parse({}))
    return r


@pytest.mark.parametrize("chunk", [1, 7, 64, 100, 1000])
def test_mamba2_chunked_prefill_equals_the_unchunked_forward(tiny_mamba2_path, chunk):
    r = _runner(tiny_mamba2_path, chunk=chunk)
    torch.manual_seed(0)
    ids = torch.randint(10, 1000, (1, 300))
    with torch.inference_mode():
        ref = torch.nn.functional.cross_entropy(r.model(ids).logits[0, :-1], ids[0, 1:], reduction="none")
    torch.testing.assert_close(r.token_nll(ids), ref, atol=1e-4, rtol=1e-4)


def test_mamba2_generation_equals_transformers_generate(tiny_mamba2_path):
    r = _runner(tiny_mamba2_path, chunk=50)
    prompt = "The lake is calm. " * 40
    (g,) = r.generate([GenerationRequest(prompt, max_new_tokens=6)])
    ids = r.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        ref = r.model.generate(ids, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert g.text == r.tokenizer.decode(ref[0, ids.shape[1]:][:g.new_tokens], skip_special_tokens=True)
    assert g.cache_bytes > 0 and g.prompt_tokens == ids.shape[1]


def test_recurrent_state_size_does_not_grow_with_length(tiny_mamba2_path):
    r = _runner(tiny_mamba2_path, chunk=64)
    sizes = {n: r.generate([GenerationRequest("The road is long. " * n, 2)])[0].cache_bytes for n in (10, 100, 400)}
    assert len(set(sizes.values())) == 1, sizes


def test_mamba1_token_by_token_equals_unchunked_and_chunked_is_refused(tiny_mamba_path):
    torch.manual_seed(0)
    ids = torch.randint(10, 1000, (1, 120))
    full = _runner(tiny_mamba_path).token_nll(ids)  # auto = one unchunked forward for Mamba-1
    token = _runner(tiny_mamba_path, prefill="token").token_nll(ids)
    torch.testing.assert_close(token, full, atol=1e-4, rtol=1e-4)
    with pytest.raises(UserError, match="not exact for Mamba-1"):
        _runner(tiny_mamba_path, prefill="chunked")


def test_passkey_command_uses_the_mamba_runner_for_mamba_checkpoints(tiny_mamba2_path, tmp_path):
    out = tmp_path / "m"
    res = subprocess.run([sys.executable, "-m", "harness.cli", "passkey", "--model", tiny_mamba2_path, "--lengths",
                          "1k", "--no-progress", "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    (rec,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert rec["runner"] == "mamba" and rec["cache_bytes"] > 0 and rec["model_max_position"] is None


def test_the_mamba_runner_refuses_attention_models(tiny_llama_path):
    with pytest.raises(UserError, match="needs a Mamba or Mamba-2 checkpoint"):
        _runner(tiny_llama_path)


@pytest.mark.parametrize("fixture,opts", [("tiny_mamba2_path", {"chunk": 50}), ("tiny_mamba_path", {"prefill": "token"})],
                         ids=["mamba2", "mamba1"])
def test_the_answer_logprob_is_the_full_forwards_after_any_decoding(request, fixture, opts):
    """log p(answer | prompt) from a copy of the state after the prefill: one forward over prompt + answer gives the
    same number, and eight greedy tokens before it change nothing."""
    r = _runner(request.getfixturevalue(fixture), **opts)
    prompt, answer = "The lake is calm. " * 12 + "The pass key is", " 48213"
    ids = r.tokenizer(prompt + answer, return_tensors="pt")["input_ids"]
    T = len(r.tokenizer(prompt)["input_ids"])
    with torch.inference_mode():
        logp = r.model(ids).logits[0].float().log_softmax(-1)
    expected = sum(float(logp[t - 1, ids[0, t]]) for t in range(T, ids.shape[1]))
    long_, short = (r.generate([GenerationRequest(prompt, m, answer=answer)])[0] for m in (8, 1))
    assert long_.new_tokens > 1 and long_.answer_tokens == ids.shape[1] - T
    assert long_.answer_logprob == pytest.approx(expected, abs=1e-3)
    assert long_.answer_logprob == pytest.approx(short.answer_logprob, abs=1e-5)
