"""The HF runner on real models: a tiny random Llama (golden check against transformers' generate) and SmolLM2."""
import json
import subprocess
import sys

import pytest

from extensions.none import NoExtension
from harness.runners.base import GenerationRequest
from harness.runners.hf import HFRunner


def test_greedy_loop_equals_transformers_generate(tiny_llama_path):
    import torch

    ext = NoExtension()
    runner = HFRunner(dtype="float32", device="cpu")
    info = runner.load(tiny_llama_path, ext, ext.parse({}))
    assert info.dtype == "float32" and info.model_max_position == 512
    prompt = "The lake is calm. The road is long. The pass key is 12345. What is the pass key?"
    (gen,) = runner.generate([GenerationRequest(prompt, max_new_tokens=9)])
    ids = runner.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        ref = runner.model.generate(ids, max_new_tokens=9, do_sample=False, min_new_tokens=9)
    expected = runner.tokenizer.decode(ref[0, ids.shape[1]:][:gen.new_tokens], skip_special_tokens=True)
    assert gen.text == expected
    assert gen.prompt_tokens == ids.shape[1]
    assert gen.peak_mem_bytes and gen.mem_kind == "rss" and 0 < gen.prefill_s <= gen.latency_s


def test_cpu_default_dtype_is_float32():
    from harness.runners.hf import default_dtype

    assert default_dtype("cpu") == "float32" and default_dtype("cuda") == "bfloat16"


@pytest.mark.slow
def test_smollm2_finds_the_passkey_at_2k(tmp_path):
    """The issue's acceptance command, on the real embedded model."""
    out = tmp_path / "D"
    res = subprocess.run([sys.executable, "-m", "harness.cli", "passkey", "--model", "smollm2", "--lengths", "2k",
                          "--samples", "2", "--no-progress", "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    print([(r["tokens"], r["target"], r["prediction"]) for r in records])
    assert len(records) == 2
    assert all(r["correct"] for r in records)
    assert all(2048 * 0.99 <= r["tokens"] + 12 <= 2048 for r in records)


def test_token_nll_equals_full_logits_cross_entropy(tiny_llama_path):
    """Chunked projection gives exactly the loss computed from the full logits."""
    import torch
    import torch.nn.functional as F

    ext = NoExtension()
    runner = HFRunner(dtype="float32", device="cpu")
    runner.load(tiny_llama_path, ext, ext.parse({}))
    torch.manual_seed(0)
    ids = torch.randint(10, 1000, (1, 300))
    nll = runner.token_nll(ids, chunk=64)
    with torch.inference_mode():
        ref = F.cross_entropy(runner.model(ids).logits[0, :-1].float(), ids[0, 1:], reduction="none")
    assert nll.shape == (299,)
    torch.testing.assert_close(nll, ref, atol=1e-5, rtol=1e-5)


def test_token_nll_with_sinks_equals_dense_before_eviction(tiny_llama_path):
    import torch

    from extensions import EXTENSIONS

    ids = torch.randint(10, 1000, (1, 60))
    dense = HFRunner(dtype="float32", device="cpu")
    dense.load(tiny_llama_path, NoExtension(), NoExtension().parse({}))
    sinks = EXTENSIONS.get("sinks")()
    stream = HFRunner(dtype="float32", device="cpu")
    stream.load(tiny_llama_path, sinks, sinks.parse({"sink_tokens": 4, "window": 100, "chunk": 16}))
    torch.testing.assert_close(stream.token_nll(ids), dense.token_nll(ids), atol=1e-4, rtol=1e-4)
