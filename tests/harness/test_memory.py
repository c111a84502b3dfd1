"""Peak-memory measurement (the kernel's high-water mark) and prediction (harness.memory.predict_peak): the exact
terms checked against real tiny models, the refusal message, and the records' new field."""
from __future__ import annotations

import time

import pytest

from extensions import EXTENSIONS
from harness.errors import UserError
from harness.measure import PeakMemory, current_rss, reset_high_water_mark
from harness.memory import parse_size, predict_peak

MB = 2**20


def _ext(name: str, params: dict | None = None, hf_config=None):
    ext = EXTENSIONS.get(name)()
    config = ext.parse(dict(params or {}))
    return ext, (ext.resolve(config, hf_config) if hf_config is not None else config)


@pytest.mark.skipif(not reset_high_water_mark(), reason="/proc/self/clear_refs is not writable here")
def test_peak_memory_sees_a_200_mb_allocation_made_and_freed_inside_the_block():
    import torch

    before = current_rss()
    with PeakMemory("cpu") as pm:
        x = torch.ones(50 * MB)  # 200 MiB of fp32, every page written
        del x
    after = current_rss()
    print(f"before {before / MB:.0f} MiB, peak {pm.peak / MB:.0f} MiB, after {after / MB:.0f} MiB")
    assert pm.exact and pm.kind == "rss"
    assert pm.peak - before >= 195 * MB  # the allocation was seen although it was gone by the end of the block
    assert after - before < 100 * MB  # ... and really gone (not a figure left over from still-held memory)


def test_peak_memory_starts_from_the_current_resident_set_not_the_process_history():
    """A large allocation made and freed before the block does not count in it (the high-water mark is reset)."""
    import torch

    x = torch.ones(50 * MB)
    del x
    with PeakMemory("cpu") as pm:
        pass
    assert pm.peak < current_rss() + 100 * MB


def test_peak_memory_falls_back_to_polling_where_clear_refs_cannot_be_written(monkeypatch):
    import torch

    import harness.measure as measure

    monkeypatch.setattr(measure, "reset_high_water_mark", lambda: False)
    before = current_rss()
    with PeakMemory("cpu", interval_s=0.002) as pm:
        x = torch.ones(50 * MB)
        time.sleep(0.1)  # polling only sees what lives longer than its interval
        del x
    assert not pm.exact and pm.peak - before >= 195 * MB


@pytest.mark.parametrize("fixture", ["tiny_llama_path", "tiny_bloom_path", "tiny_mamba2_path"])
def test_predicted_weight_bytes_equal_the_loaded_models_parameter_bytes(request, fixture):
    """Counted on the meta device from the config alone; tied embeddings count once, as in model.parameters()."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = request.getfixturevalue(fixture)
    cfg = AutoConfig.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    loaded = sum(p.numel() * p.element_size() for p in model.parameters())
    runner = "mamba" if cfg.model_type == "mamba2" else "hf"
    for dtype, size in (("float32", 4), ("bfloat16", 2)):
        ext, conf = _ext("none")
        estimate = predict_peak(cfg, runner, ext, conf, 100, runner_options={"device": "cpu", "dtype": dtype})
        assert estimate.weights * 4 // size == loaded, (estimate.weights, loaded, dtype)


@pytest.mark.parametrize("runner_name,extension,params", [
    ("hf", "none", {}),
    ("kernel", "selfextend", {"group": 4, "window": 16}),
    ("hf", "sinks", {"sink_tokens": 4, "window": 32, "chunk": 16}),  # the cache is capped at sinks + window − 1
])
def test_predicted_kv_bytes_equal_the_runner_cache_after_a_real_generate(tiny_llama_path, runner_name, extension,
                                                                         params):
    from transformers import AutoConfig

    from harness.runners import RUNNERS
    from harness.runners.base import GenerationRequest

    cfg = AutoConfig.from_pretrained(tiny_llama_path)
    ext, conf = _ext(extension, params, cfg)
    runner = RUNNERS.get(runner_name)(device="cpu", dtype="float32")
    runner.load(tiny_llama_path, ext, conf)
    (gen,) = runner.generate([GenerationRequest("The lake is calm. " * 20 + "What is the pass key?", 7)])
    estimate = predict_peak(cfg, runner_name, ext, conf, gen.prompt_tokens, gen.new_tokens, {"device": "cpu"})
    print(gen.prompt_tokens, gen.new_tokens, gen.cache_bytes, estimate.describe())
    assert gen.cache_bytes > 0 and estimate.cache == gen.cache_bytes


def test_predicted_recurrent_state_equals_the_mamba2_cache(tiny_mamba2_path):
    from transformers import AutoConfig

    from harness.runners.base import GenerationRequest
    from harness.runners.mamba import MambaRunner

    cfg = AutoConfig.from_pretrained(tiny_mamba2_path)
    ext, conf = _ext("none")
    runner = MambaRunner(device="cpu", dtype="float32")
    runner.load(tiny_mamba2_path, ext, conf)
    (gen,) = runner.generate([GenerationRequest("The lake is calm. " * 20, 3)])
    estimate = predict_peak(cfg, "mamba", ext, conf, gen.prompt_tokens, gen.new_tokens, {"device": "cpu"})
    assert estimate.path == "recurrent" and estimate.cache == gen.cache_bytes > 0


def test_the_attention_path_follows_the_runner_extension_and_model(tiny_llama_path, tiny_bloom_path):
    from transformers import AutoConfig

    llama, bloom = AutoConfig.from_pretrained(tiny_llama_path), AutoConfig.from_pretrained(tiny_bloom_path)
    none, selfextend = _ext("none"), _ext("selfextend", {"group": 4, "window": 16}, llama)

    def path(cfg, runner, ext, **opts):
        return predict_peak(cfg, runner, *ext, 1000, 4, {"device": "cpu", **opts}).path

    assert path(llama, "hf", none) == "sdpa" and path(llama, "kernel", none) == "sdpa"
    assert path(llama, "hf", selfextend) == "reference" and path(llama, "kernel", selfextend) == "kernels/cpu"
    assert path(llama, "kernel", selfextend, impl="reference") == "reference"
    assert path(bloom, "hf", none) == "eager" and path(bloom, "kernel", none) == "kernels/cpu"
    assert predict_peak(llama, "vllm", *none, 1000) is None  # vLLM sizes its own memory


def test_eager_attention_is_predicted_quadratic_and_the_chunked_kernel_path_not(tiny_bloom_path):
    """Bloom's eager attention materialises (heads, T, T) scores; the kernel runner's 1,024-token chunks do not."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(tiny_bloom_path)
    none = _ext("none")
    eager = [predict_peak(cfg, "hf", *none, n, 4, {"device": "cpu"}).activations for n in (4096, 8192)]
    chunked = [predict_peak(cfg, "kernel", *none, n, 4, {"device": "cpu"}).activations for n in (4096, 8192)]
    assert 3.9 < eager[1] / eager[0] < 4.1 and chunked[1] / chunked[0] < 2.1


@pytest.mark.parametrize("text,expected", [("8GiB", 8 * 2**30), ("500MB", 500 * 10**6), ("16G", 16 * 2**30),
                                           ("1.5 gib", 3 * 2**29), ("123456", 123456), ("2kb", 2000)])
def test_sizes_parse(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "0", "-2GB", "nan", "8XB", "1e9", ""])
def test_bad_sizes_are_user_errors(text):
    with pytest.raises(UserError, match="bad memory size"):
        parse_size(text)


def _prepared(tiny_llama_path, tmp_path, lengths, max_memory):
    from evals.base import TaskConfig
    from harness.experiment import Experiment, prepare

    exp = Experiment(task="passkey", task_config=TaskConfig(lengths=lengths), model=tiny_llama_path,
                     runner_options={"device": "cpu"}, out=str(tmp_path / "run"), max_memory=max_memory)
    return lambda: prepare(exp, log=lambda *_: None)


def test_a_length_above_max_memory_is_refused_naming_the_largest_length_that_fits(tiny_llama_path, tmp_path):
    lengths = (256, 512, 4096)
    p = _prepared(tiny_llama_path, tmp_path, lengths, None)()  # default: the memory available, plenty here
    at = {n: p.predicted_peak(n).total for n in lengths}
    assert at[256] < at[512] < at[4096]
    with pytest.raises(UserError) as e:
        _prepared(tiny_llama_path, tmp_path, lengths, (at[512] + at[4096]) // 2)()
    msg = str(e.value)
    print(msg)
    assert "\n" not in msg and "at 4096 tokens" in msg and "above --max-memory" in msg
    assert "the largest length of this grid that fits is 512" in msg
    with pytest.raises(UserError, match=r"no length of this grid fits \(the shortest, 256, needs"):
        _prepared(tiny_llama_path, tmp_path, (256, 512), at[256] - 1)()
    assert not (tmp_path / "run").exists()
    _prepared(tiny_llama_path, tmp_path, lengths, at[4096])()  # exactly at the budget: accepted


def test_every_generated_record_carries_its_predicted_and_measured_peak(tiny_llama_path, tmp_path):
    # A fresh process, as `longctx` runs: the peak is the process's resident set, so inside the pytest process it
    # would also count whatever earlier tests left resident (CI once measured 1.37 GB against 0.68 GB predicted).
    import json
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "harness.cli", "passkey", "--model", tiny_llama_path, "--lengths",
                          "256,384", "--max-new-tokens", "4", "--device", "cpu", "--no-progress",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    records = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for r in records:
        print(r["context_length"], r["tokens"], r["predicted_peak_bytes"], r["peak_mem_bytes"])
        assert r["predicted_peak_bytes"] and r["peak_mem_bytes"] and r["mem_kind"] == "rss"
        assert 0.5 < r["peak_mem_bytes"] / r["predicted_peak_bytes"] < 2  # the runtime term dominates a tiny model
    assert records[0]["predicted_peak_bytes"] != records[1]["predicted_peak_bytes"]


def test_perplexity_records_carry_a_prediction_too(tiny_llama_path, tmp_path):
    from evals.perplexity import PerplexityConfig
    from harness.experiment import Experiment, run
    from harness.records import read_records

    exp = Experiment(task="perplexity", task_config=PerplexityConfig(lengths=(128, 256)), model=tiny_llama_path,
                     runner_options={"device": "cpu"}, out=str(tmp_path / "ppl"))
    records = read_records(run(exp, log=lambda *_: None, progress=False))
    assert records and all(r.predicted_peak_bytes and r.peak_mem_bytes for r in records)


def test_the_attention_path_follows_what_the_model_declares():
    """A softcap makes the hf runner run the model's eager attention (SDPA drops it), and the kernel runner run
    the CPU path for plain methods too (the spec carries the model's window and softcap): memory is predicted for
    the path the runner will take, as the runner itself declares it."""
    import transformers

    from harness import zoo

    fam = zoo.family("gemma2")
    cfg = getattr(transformers, fam.config_cls)(vocab_size=512, **zoo.SPECIAL_IDS, **fam.kwargs)
    none = _ext("none")
    assert predict_peak(cfg, "hf", *none, 1000, 4, {"device": "cpu"}).path == "eager"
    assert predict_peak(cfg, "kernel", *none, 1000, 4, {"device": "cpu"}).path == "kernels/cpu"
