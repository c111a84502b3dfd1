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
