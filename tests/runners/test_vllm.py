"""The vLLM runner against real vLLM (the CPU build here): parity with the HF runner on a tiny model, SmolLM2 at
2k, and refusal of the methods vLLM cannot express. vLLM starts worker processes, so every run goes through the
CLI in a subprocess (the entry point is import-safe)."""
import json
import subprocess
import sys

import pytest

pytest.importorskip("vllm")


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=900)


def _records(path):
    return [json.loads(line) for line in (path / "results.jsonl").read_text().splitlines()]


LONG_FACTOR = ",".join(f"{1 + 3 * i / 31:.3f}" for i in range(32))  # 32 pairs of head_dim 64, from 1 to 4


@pytest.mark.parametrize("extension,params", [
    ("none", []), ("yarn", ["-E", "factor=2"]),
    # the RoPE types production models ship, through transformers' and vLLM's own implementations (issue 33)
    ("llama3", ["-E", "factor=4", "-E", "original_max_position_embeddings=256"]),
    ("ntk-by-parts", ["-E", "factor=2"]), ("proportional", ["-E", "partial_rotary_factor=0.5"]),
    ("longrope", ["-E", "factor=4", "-E", "original_max_position_embeddings=256", "-E", f"long_factor={LONG_FACTOR}"])])
def test_vllm_and_hf_give_the_same_greedy_answers_on_a_tiny_model(tiny_llama64_path, tmp_path, extension, params):
    preds = {}
    for runner in ("hf", "vllm"):
        out = tmp_path / runner
        res = _cli("passkey", "--model", tiny_llama64_path, "--lengths", "400,900", "--depths", "0.3,0.7",
                   "--runner", runner, "--extension", extension, *params, "--no-progress", "--out", str(out))
        assert res.returncode == 0, res.stderr[-3000:]
        preds[runner] = {(r["context_length"], r["depth"]): (r["tokens"], r["prediction"]) for r in _records(out)}
    print(preds)
    assert preds["hf"] == preds["vllm"]


def test_vllm_records_its_long_context_settings(tiny_llama64_path, tmp_path):
    out = tmp_path / "long"
    res = _cli("passkey", "--model", tiny_llama64_path, "--lengths", "900", "--runner", "vllm", "--no-progress",
               "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    load = json.loads((out / "run.json").read_text())["invocations"][-1]["load"]
    rec = load["extension_record"]
    # 900 > the tiny model's 512: the position table is sized for the run instead of reading past its end.
    assert rec["positions_beyond_native"] is True and rec["hf_overrides"] == {"max_position_embeddings": 900}
    assert rec["allow_long_max_model_len"] is False
    assert rec["max_model_len"] == 900 and load["dtype"] == "float32"


def test_yarn_past_its_reach_is_refused_before_loading(tiny_llama64_path, tmp_path):
    res = _cli("passkey", "--model", tiny_llama64_path, "--lengths", "2k", "--runner", "vllm", "--extension",
               "yarn", "-E", "factor=2", "--out", str(tmp_path / "y"))
    assert res.returncode == 2 and "covers at most original x factor = 1024" in res.stderr


@pytest.mark.slow
def test_smollm2_passkey_at_2k_through_vllm(tmp_path):
    out = tmp_path / "D"
    res = _cli("passkey", "--model", "smollm2", "--lengths", "2k", "--samples", "2", "--runner", "vllm",
               "--no-progress", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    records = _records(out)
    print([(r["tokens"], r["target"], r["prediction"], r["cached_tokens"]) for r in records])
    assert len(records) == 2 and all(r["correct"] for r in records)
    load = json.loads((out / "run.json").read_text())["invocations"][-1]["load"]
    assert load["extension_record"]["allow_long_max_model_len"] is False


@pytest.mark.parametrize("extension", ["sinks", "selfextend", "alibi"])
def test_methods_vllm_cannot_express_are_refused_before_loading(extension, tmp_path):
    res = _cli("passkey", "--runner", "vllm", "--extension", extension, "--out", str(tmp_path / "x"))
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"cannot host extension '{extension}'" in lines[0] and "hf" in lines[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("options,message", [
    ({"tensor_parallel_size": 0}, "positive integer"),
    ({"tensor_parallel_size": 2, "device": "cuda"}, "needs 2 GPUs"),
])
def test_tensor_parallel_size_is_checked_before_loading(options, message):
    import torch

    from harness.errors import UserError
    from harness.runners import check_hostable, runner_options

    assert runner_options("vllm")["tensor_parallel_size"] == 1
    if options.get("device") == "cuda" and torch.cuda.device_count() >= 2:
        pytest.skip("this machine has two GPUs")
    with pytest.raises(UserError, match=message):
        check_hostable("vllm", "none", options)
