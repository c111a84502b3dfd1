"""`longctx bench`: the FLOP count against torch's own counter and the issue's figure, and the quick bench end to end
(structure only: timings are for docs/BENCHMARKS.md, never for asserts)."""
import json
import subprocess
import sys

import pytest
import torch

from harness.bench import markdown, summarize
from harness.memory import FlopCount


def test_flop_count_matches_torch_flop_counter(tiny_llama_path):
    """Linear layers + LM head (last position) + attention, against torch.utils.flop_counter on a real forward.
    Eager attention (torch's counter does not see CPU SDPA) multiplies the full T × T score matrix, 4·d·h·L·T² FLOPs,
    where ours counts the causal pairs T(T+1)/2 a kernel that skips the masked half computes."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(tiny_llama_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32, attn_implementation="eager")
    shape = FlopCount.of(cfg)
    T = 96
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(input_ids=torch.randint(0, 1000, (1, T)), logits_to_keep=1)
    full_attention = shape.pair_flops * T * T
    causal_attention = shape.pair_flops * T * (T + 1) / 2
    assert counter.get_total_flops() == pytest.approx(shape.prefill_flops(T) - causal_attention + full_attention,
                                                      rel=1e-9)
    # a reused prefix removes its tokens' linear work and its queries' attention pairs
    assert shape.prefill_flops(T, cached=T - 1) == pytest.approx(
        2 * shape.linear_params + 2 * shape.head_params + shape.pair_flops * T)


def test_smollm2_floor_at_16k_is_the_issues_figure(smollm2_path):
    """SmolLM2-135M: 30 blocks of 3,538,944 linear weights; ~12.8 TFLOP at 16k, ≈ 106 s at 121 GFLOP/s."""
    from transformers import AutoConfig

    shape = FlopCount.of(AutoConfig.from_pretrained(smollm2_path))
    assert shape.linear_params == 30 * (576 * 576 * 2 + 576 * 192 * 2 + 576 * 1536 * 3)
    assert shape.prefill_flops(16384) / 121e9 == pytest.approx(105.4, abs=0.5)


def _doc(samples_by_config):
    configs = [{"config": name, "load_s": 1.0, "skipped": None, "weights_bytes": 100, "samples": [
        dict(config=name, length=n, depth=d, tokens=n - 12, latency_s=lat, prefill_s=pre, cached_tokens=c,
             peak_bytes=300, cache_bytes=50, new_tokens=6, prediction=f"{d}", correct=True, floor_s=fl,
             prefill_floor_s=fl) for n, d, lat, pre, c, fl in rows]} for name, rows in samples_by_config.items()]
    return {"configs": configs, "machine": {"cpu": "x", "cpu_count": 2}, "torch_threads": 2,
            "gemm": {"gflops": 100.0, "shapes": {"square 2048": 100.0}}, "model": "m",
            "shape": {"params": 10}, "weights_bytes": 100, "git_sha": "abc", "depths": [0.1, 0.9]}


def test_summary_ratios_come_from_the_records():
    doc = _doc({"naive": [(1024, 0.9, 4.0, None, 0, 1.0), (1024, 0.1, 4.0, None, 0, 1.0)],
                "hf": [(1024, 0.9, 2.0, 1.5, 0, 1.0), (1024, 0.1, 2.0, 1.5, 0, 1.0)],
                "hf+reuse": [(1024, 0.9, 2.0, 1.5, 0, 1.0), (1024, 0.1, 1.0, 0.5, 100, 0.5)]})
    s = summarize(doc)
    g = s["grids"]["1024"]
    assert g["hf+reuse"]["speedup_vs_naive"] == pytest.approx(8.0 / 3.0)
    assert g["hf+reuse"]["reuse_saving"] == {"measured": pytest.approx(0.75), "flops": pytest.approx(0.75),
                                             "same_answers": True}
    reuse = next(r for r in s["rows"] if r["config"] == "hf+reuse")  # floors count only the tokens computed
    assert reuse["prefill_s"] == 1.0 and reuse["floor_fraction"] == pytest.approx(0.75)
    assert reuse["reused"] == pytest.approx(100 / (2 * 1012))
    naive = next(r for r in s["rows"] if r["config"] == "naive")
    assert naive["prefill_measured"] == "request" and naive["prefill_s"] == 4.0
    doc["summary"] = s
    md = markdown(doc)
    assert "| hf+reuse | 1k | 0.75 |" in md and "| 1k | hf+reuse | 3.0 | 2.67× | 2.00× | 0.75 | 0.75 | yes |" in md


@pytest.mark.slow
def test_quick_bench_runs_every_configuration(tmp_path):
    out = tmp_path / "bench"
    res = subprocess.run([sys.executable, "-m", "harness.cli", "bench", "--quick", "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads((out / "bench.json").read_text())
    names = [c["config"] for c in doc["configs"]]
    assert names == ["naive", "hf", "kernel+reuse", "kernel"]
    by = {c["config"]: c["samples"] for c in doc["configs"]}
    assert [len(by[k]) for k in names] == [3, 3, 3, 1]
    assert [s["depth"] for s in by["kernel+reuse"]] == [0.9, 0.5, 0.1]  # deepest first
    assert by["kernel+reuse"][0]["cached_tokens"] == 0
    assert all(s["cached_tokens"] > 0 for s in by["kernel+reuse"][1:])
    # every configuration answers the same prompts the same way
    answers = {k: {s["depth"]: s["prediction"] for s in v} for k, v in by.items()}
    assert answers["naive"] == answers["hf"] == answers["kernel+reuse"]
    assert answers["kernel"][0.5] == answers["hf"][0.5]
    assert doc["gemm"]["gflops"] > 0 and doc["complete"]
    assert doc["summary"]["grids"]["2048"]["kernel+reuse"]["reuse_saving"]["same_answers"]
    assert all(s["peak_bytes"] > doc["weights_bytes"] for v in by.values() for s in v)
    md = (out / "bench.md").read_text()
    assert md == res.stdout.split("wrote ")[0] and "floor fraction" in md and "Depth grid" in md


def test_bench_mistakes_are_one_line(tmp_path):
    for args, needle in ((["--configs", "hf,naiv"], "naive"), (["--configs", "mamba"], "--mamba"),
                         (["--lengths", "4q"], "length"), (["--model", "no-such-model"], "no-such-model")):
        res = subprocess.run([sys.executable, "-m", "harness.cli", "bench", "--quick", "--out", str(tmp_path / "b"),
                              *args], capture_output=True, text=True)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and needle in res.stderr, res.stderr
    assert not (tmp_path / "b").exists()


def test_report_draws_a_bench_as_a_cost_panel(tmp_path):
    from harness.errors import UserError
    from reports.html import write_report

    doc = _doc({"naive": [(1024, 0.9, 4.0, None, 0, 1.0), (1024, 0.1, 4.0, None, 0, 1.0)],
                "hf": [(1024, 0.9, 2.0, 1.5, 0, 1.0), (1024, 0.1, 2.0, 1.5, 0, 1.0)],
                "hf+reuse": [(1024, 0.9, 2.0, 1.5, 0, 1.0), (1024, 0.1, 1.0, 0.5, 100, 0.5)]})
    doc["summary"] = summarize(doc)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bench.json").write_text(json.dumps(doc))
    html = write_report([str(tmp_path / "b")], str(tmp_path / "r.html")).read_text()
    assert "Cost against the floor" in html and 'alt="bench-0"' in html
    assert "<td>hf+reuse</td>" in html and "2.67× faster" in html and "0.75 measured vs 0.75 by FLOPs" in html
    (tmp_path / "b" / "bench.json").write_text('{"summary": {}}')
    with pytest.raises(UserError, match="not a longctx bench.json"):
        write_report([str(tmp_path / "b")], str(tmp_path / "r.html"))
