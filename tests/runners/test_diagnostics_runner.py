"""The answer's teacher-forced likelihood and the per-head diagnostics tap, on a tiny random Llama (issue 34).

Known answers: the log-probability against one forward over prompt + answer (and, under eviction, against the
runner's own token scoring); the tap against transformers' eager attention weights (`output_attentions`); a head
whose queries are zero attends uniformly to what it sees, so its numbers are counts."""
import json
import math
import subprocess
import sys

import pytest
import torch

from extensions import EXTENSIONS
from harness.runners.base import GenerationRequest
from harness.runners.hf import HFRunner
from harness.runners.kernel import KernelRunner

PROMPT = (" ".join(["The lake is calm."] * 60) + " The pass key is 48213. Remember it. "
          + " ".join(["The road is long."] * 60) + " What is the pass key? The pass key is")
ANSWER = " 48213"
NEEDLE = (100, 110)


def _runner(cls, path, name="none", params=None, diagnostics=None, **kw):
    from transformers import AutoConfig

    ext = EXTENSIONS.get(name)()
    r = cls(dtype="float32", device="cpu", **kw)
    r.diagnostics = diagnostics
    r.load(path, ext, ext.resolve(ext.parse(dict(params or {})), AutoConfig.from_pretrained(path)))
    return r


def _generate(r, max_new_tokens=8, answer=ANSWER, needle=NEEDLE):
    (g,) = r.generate([GenerationRequest(PROMPT, max_new_tokens, answer=answer, needle=needle)])
    return g


def test_answer_logprob_is_the_full_forwards(tiny_llama_path):
    r = _runner(HFRunner, tiny_llama_path)
    g = _generate(r)
    ids = r.tokenizer(PROMPT + ANSWER, return_tensors="pt")["input_ids"]
    T = len(r.tokenizer(PROMPT)["input_ids"])
    with torch.inference_mode():
        logp = r.model(input_ids=ids).logits[0].float().log_softmax(-1)
    expected = sum(float(logp[t - 1, ids[0, t]]) for t in range(T, ids.shape[1]))
    assert g.answer_tokens == ids.shape[1] - T == 6  # a space and five digits in SmolLM2's tokenizer
    assert g.answer_logprob == pytest.approx(expected, abs=1e-4)
    assert g.answer_logprob < 0


# The prompt (624 tokens) is past the tiny model's 512: the scalings act, sinks evict, SelfExtend groups.
METHODS = [("none", {}), ("dynamic-ntk", {"factor": 2}), ("yarn", {"factor": 2}),
           ("sinks", {"sink_tokens": 4, "window": 128}), ("selfextend", {"group": 4, "window": 64}),
           ("rerope", {"window": 128})]


@pytest.mark.parametrize("cls", [HFRunner, KernelRunner], ids=["hf", "kernel"])
@pytest.mark.parametrize("name,params", METHODS, ids=[m for m, _ in METHODS])
def test_answer_logprob_does_not_depend_on_what_was_generated(tiny_llama_path, cls, name, params):
    """Measured after greedy decoding (cache cut back, or a snapshot for evicting / re-rotating policies, the
    method's per-request state reset): the same number as when nothing was generated before it."""
    r = _runner(cls, tiny_llama_path, name, params)
    after_eight, alone = _generate(r, 8), _generate(r, 1)
    assert after_eight.new_tokens > 1
    assert after_eight.answer_logprob == pytest.approx(alone.answer_logprob, abs=1e-5)


def test_answer_logprob_under_eviction_is_the_token_scoring(tiny_llama_path):
    """Sinks 4+128 evict most of the prompt; the kernel runner's token scoring (one pass, the spec showing each
    query what the streaming cache would hold) is an independent path to the same numbers."""
    r = _runner(KernelRunner, tiny_llama_path, "sinks", {"sink_tokens": 4, "window": 128})
    g = _generate(r)
    ids = r.tokenizer(PROMPT + ANSWER, return_tensors="pt")["input_ids"]
    T = len(r.tokenizer(PROMPT)["input_ids"])
    nll = r.token_nll(ids)
    assert g.answer_logprob == pytest.approx(-float(nll[T - 1:].sum()), abs=1e-3)


def _eager_rows(path, ids):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    with torch.inference_mode():
        out = model(input_ids=ids, output_attentions=True)
    return [a[0, :, -1, :].float() for a in out.attentions], out.logits[0, -1]  # per layer (H, S)


def test_tap_reads_transformers_own_attention_and_changes_nothing(tiny_llama_path):
    plain = _generate(_runner(HFRunner, tiny_llama_path))
    r = _runner(HFRunner, tiny_llama_path, diagnostics="first")
    g = _generate(r)
    assert g.text == plain.text and g.answer_logprob == plain.answer_logprob  # the tap only reads
    ids = r.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    T = ids.shape[1]
    rows, last_logits = _eager_rows(tiny_llama_path, ids)
    written = int(last_logits.argmax())
    s, e = NEEDLE
    pos = torch.arange(T)
    for layer, p in enumerate(rows):
        assert torch.allclose(g.diagnostics["needle_mass"][layer], p[:, s:e].sum(-1), atol=1e-3)
        assert torch.allclose(g.diagnostics["sink_mass"][layer], p[:, :4].sum(-1), atol=1e-3)
        assert torch.allclose(g.diagnostics["recent_mass"][layer], p[:, pos > T - 1 - 64].sum(-1), atol=1e-3)
        ent = -(p * p.clamp_min(1e-30).log()).sum(-1)
        assert torch.allclose(g.diagnostics["entropy"][layer], ent, atol=1e-3)
        top = p.argmax(-1)
        hit = ((top >= s) & (top < e) & (ids[0, top] == written)).float()
        assert torch.equal(g.diagnostics["retrieval"][layer], hit)
    assert g.diagnostics["rows"] == [T - 1] and g.diagnostics["layers"] == [0, 1]


def _blind_first_layer(r):
    """Zero layer 0's queries: every head of it then weighs the keys it sees equally."""
    with torch.no_grad():
        r.model.model.layers[0].self_attn.q_proj.weight.zero_()


@pytest.mark.parametrize("cls", [HFRunner, KernelRunner], ids=["hf", "kernel"])
def test_a_uniform_head_has_counting_numbers(tiny_llama_path, cls):
    r = _runner(cls, tiny_llama_path, diagnostics="first")
    _blind_first_layer(r)
    T = len(r.tokenizer(PROMPT)["input_ids"])
    d = _generate(r).diagnostics
    s, e = NEEDLE
    assert torch.allclose(d["needle_mass"][0], torch.full((4,), (e - s) / T), atol=1e-5)
    assert torch.allclose(d["sink_mass"][0], torch.full((4,), 4 / T), atol=1e-5)
    assert torch.allclose(d["recent_mass"][0], torch.full((4,), 64 / T), atol=1e-5)
    assert torch.allclose(d["entropy"][0], torch.full((4,), math.log(T)), atol=1e-4)


@pytest.mark.parametrize("cls", [HFRunner, KernelRunner], ids=["hf", "kernel"])
def test_a_uniform_head_under_sinks_sees_sinks_and_window_only(tiny_llama_path, cls):
    """Sinks 4+128: the row writing the answer sees 4 sinks and its window of 128 — the needle, 500 tokens back,
    gets nothing, and the sinks get 4 of 132 shares."""
    r = _runner(cls, tiny_llama_path, "sinks", {"sink_tokens": 4, "window": 128}, diagnostics="first")
    _blind_first_layer(r)
    d = _generate(r).diagnostics
    assert torch.equal(d["needle_mass"][0], torch.zeros(4))
    assert torch.allclose(d["sink_mass"][0], torch.full((4,), 4 / 132), atol=1e-5)
    assert torch.allclose(d["entropy"][0], torch.full((4,), math.log(132)), atol=1e-4)


def test_answer_rows_average_over_the_answer(tiny_llama_path):
    r = _runner(KernelRunner, tiny_llama_path, "selfextend", {"group": 4, "window": 64}, diagnostics="answer")
    g = _generate(r, 5)
    T = len(r.tokenizer(PROMPT)["input_ids"])
    assert g.diagnostics["rows"] == list(range(T - 1, T - 1 + g.new_tokens))
    first = _generate(_runner(KernelRunner, tiny_llama_path, "selfextend", {"group": 4, "window": 64},
                              diagnostics="first"), 5)
    assert not torch.allclose(g.diagnostics["entropy"], first.diagnostics["entropy"])  # more rows, other mean


def test_needle_span_covers_the_needle_up_to_its_value(smollm2_tokenizer):
    from evals.base import TaskConfig, needle_span
    from evals.registry import make_task

    task = make_task("passkey", TaskConfig(lengths=(1024,), depths=(0.5,)))
    s = task.sample(smollm2_tokenizer, 1024, 0.5, 0)
    start, end = needle_span(smollm2_tokenizer, s)
    ids = smollm2_tokenizer(s.prompt)["input_ids"]
    text = smollm2_tokenizer.decode(ids[start:end])
    assert start == s.needle_token_offset and text.rstrip().endswith(s.target) and len(text) < 80


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, **kw)


def test_passkey_with_diagnostics_writes_a_line_per_record(tmp_path, tiny_llama_path):
    from harness.records import read_diagnostics, read_records
    from harness.runners.diagnostics import decode

    out = tmp_path / "run"
    res = _cli("passkey", "-m", tiny_llama_path, "-l", "512", "-d", "0.2,0.8", "-r", "kernel", "-e", "sinks",
               "-E", "sink_tokens=4", "-E", "window=128", "--diagnostics", "first", "--no-progress", "-o", str(out))
    assert res.returncode == 0, res.stderr
    records, diags = read_records(out), read_diagnostics(out)
    assert len(records) == 2 and set(diags) == {r.key for r in records}
    for r in records:
        assert r.answer_logprob is not None and r.answer_logprob < 0 and r.answer_tokens == 6
        d = diags[r.key]
        assert d["mode"] == "first" and (d["layers"], d["heads"]) == (2, 4) and d["needle"][0] == r.needle_token_offset
        ent = decode(d["entropy"], 2, 4)
        assert bool(((ent > 0) & (ent <= math.log(133) + 1e-2)).all())  # sinks 4 + window 128 at most
    assert len((out / "diagnostics.jsonl").read_text()) < 2 * 4096


@pytest.mark.parametrize("args,needle", [
    (["passkey", "-r", "vllm", "--diagnostics", "first"], "cannot give per-head diagnostics"),
    (["passkey", "-r", "mamba", "--diagnostics", "first"], "cannot give per-head diagnostics"),
])
def test_diagnostics_refused_where_a_runner_cannot_read_attention(tmp_path, tiny_llama_path, args, needle):
    out = tmp_path / "run"
    res = _cli(*args, "-m", tiny_llama_path, "-l", "512", "--no-progress", "-o", str(out))
    assert res.returncode == 2 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not out.exists()


def test_diagnostics_refused_for_token_scoring_in_an_experiment_file(tmp_path, tiny_llama_path):
    f = tmp_path / "e.yaml"
    f.write_text(json.dumps({"out": str(tmp_path / "sweep"), "models": [tiny_llama_path],
                             "tasks": [{"name": "perplexity"}], "lengths": [256], "diagnostics": "first"}))
    res = _cli("run", str(f), "--no-progress")
    assert res.returncode == 2 and "scores tokens" in res.stderr, res.stderr
    assert not (tmp_path / "sweep").exists()


# --- ablation -------------------------------------------------------------------------------------------------------

ABLATED = {0: [1], 1: [0, 3]}


def _zero_o_proj_columns(r, ablate):
    """The same heads removed another way: the output projection ignores their slice of the attention output."""
    D = r.model.config.hidden_size // r.model.config.num_attention_heads
    with torch.no_grad():
        for layer, heads in ablate.items():
            w = r.model.model.layers[layer].self_attn.o_proj.weight
            for h in heads:
                w[:, h * D:(h + 1) * D] = 0


@pytest.mark.parametrize("cls,name,params", [(HFRunner, "none", {}), (KernelRunner, "none", {}),
                                             (KernelRunner, "selfextend", {"group": 4, "window": 64}),
                                             (HFRunner, "sinks", {"sink_tokens": 4, "window": 128})],
                         ids=["hf", "kernel", "kernel-selfextend", "hf-sinks"])
def test_ablating_heads_is_zeroing_their_output_projection(tiny_llama_path, cls, name, params):
    ablated = cls(dtype="float32", device="cpu")
    ablated.ablate = ABLATED
    ext = EXTENSIONS.get(name)()
    from transformers import AutoConfig

    cfg = ext.resolve(ext.parse(dict(params)), AutoConfig.from_pretrained(tiny_llama_path))
    info = ablated.load(tiny_llama_path, ext, cfg)
    assert info.extension_record["ablated_heads"] == "0.1,1.0,1.3"
    reference = _runner(cls, tiny_llama_path, name, params)
    _zero_o_proj_columns(reference, ABLATED)
    untouched = _generate(_runner(cls, tiny_llama_path, name, params))
    a, b = _generate(ablated), _generate(reference)
    assert a.text == b.text and a.answer_logprob == pytest.approx(b.answer_logprob, abs=1e-4)
    assert a.answer_logprob != pytest.approx(untouched.answer_logprob, abs=1e-3)  # the heads mattered


def _diagnostics_run(path, retrieval_by_sample, needle_by_sample):
    from harness.records import DIAGNOSTICS
    from harness.runners.diagnostics import encode

    path.mkdir()
    with (path / DIAGNOSTICS).open("w") as f:
        for i, (ret, nm) in enumerate(zip(retrieval_by_sample, needle_by_sample)):
            f.write(json.dumps({"key": ["passkey", 512, 0.5, i], "layers": 2, "heads": 4, "mode": "first",
                                "retrieval": encode(torch.tensor(ret)), "needle_mass": encode(torch.tensor(nm)),
                                "sink_mass": encode(torch.zeros(2, 4)), "recent_mass": encode(torch.zeros(2, 4)),
                                "entropy": encode(torch.zeros(2, 4))}) + "\n")


def test_top_heads_rank_by_mean_retrieval_then_needle_mass(tmp_path):
    from harness.runners.diagnostics import chosen_heads

    z = [[0.0] * 4, [0.0] * 4]
    ret = [[[1, 0, 0, 0], [0, 1, 0, 0]], [[1, 0, 0, 0], [0, 0, 0, 0]]]  # 0.0: 2/2, 1.1: 1/2
    nm = [z, [[0, 0, 0.5, 0], [0, 0, 0, 0.2]]]  # among the rest, 0.2 has the most needle mass
    _diagnostics_run(tmp_path / "d", ret, nm)
    assert chosen_heads("top:3", str(tmp_path / "d"), 2, 4) == [(0, 0), (0, 2), (1, 1)]
    with pytest.raises(ValueError, match="this model has 3 × 4"):
        chosen_heads("top:1", str(tmp_path / "d"), 3, 4)


def test_random_heads_are_seeded_distinct_and_differ_by_seed():
    from harness.runners.diagnostics import chosen_heads

    a, b = chosen_heads("random:10", None, 30, 9), chosen_heads("random:10:0", None, 30, 9)
    c = chosen_heads("random:10:1", None, 30, 9)
    assert a == b and a != c and len(set(a)) == 10 and all(0 <= la < 30 and 0 <= h < 9 for la, h in a)


@pytest.mark.parametrize("args,needle", [
    (["--ablate-heads", "top:2"], "add --heads-from"),
    (["--ablate-heads", "2.0"], "outside this model's 2 layers"),
    (["--ablate-heads", "1.x"], "is not LAYER.HEAD"),
    (["--ablate-heads", "random:0"], "at least 1"),
    (["--heads-from", "somewhere"], "--ablate-heads top:K only"),
    (["--ablate-heads", "0.1", "-r", "vllm"], "cannot give per-head diagnostics or ablate heads"),
])
def test_ablation_mistakes_are_one_line(tmp_path, tiny_llama_path, args, needle):
    out = tmp_path / "run"
    res = _cli("passkey", "-m", tiny_llama_path, "-l", "512", *args, "--no-progress", "-o", str(out))
    assert res.returncode == 2 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not out.exists()


def test_an_ablated_run_is_its_own_configuration(tmp_path, tiny_llama_path):
    from harness.records import read_records
    from reports.aggregate import by_config

    for out, extra in (("plain", []), ("ablated", ["--ablate-heads", "random:2:5"])):
        res = _cli("passkey", "-m", tiny_llama_path, "-l", "512", *extra, "--no-progress", "-o", str(tmp_path / out))
        assert res.returncode == 0, res.stderr
    records = read_records(tmp_path / "plain") + read_records(tmp_path / "ablated")
    groups = by_config(records)
    assert len(groups) == 2
    (r,) = read_records(tmp_path / "ablated")
    assert r.ablation == "random:2:5" and r.ablated_heads.count(".") == 2 and "−heads random:2:5" in r.method_label
    res = _cli("passkey", "-m", tiny_llama_path, "-l", "512", "--ablate-heads", "random:2:6", "--no-progress",
               "-o", str(tmp_path / "ablated"))
    assert res.returncode == 2, res.stderr  # other heads: another identity, not a resume


@pytest.mark.parametrize("family", ["gemma2", "gpt-oss"])
def test_the_tap_on_eager_attention_reads_softcap_and_sink_logits(tmp_path, smollm2_tokenizer, family):
    """Models whose attention transformers runs eagerly with a logit softcap (Gemma-2) or learned sink logits
    (gpt-oss): the tap's rows equal the model's own eager attention weights, so those features are in the numbers."""
    from harness import zoo

    fam = next(f for f in zoo.FAMILIES if f.name == family)
    path = zoo.save(fam, smollm2_tokenizer, tmp_path / family)
    plain = _generate(_runner(HFRunner, path))
    r = _runner(HFRunner, path, diagnostics="first")
    g = _generate(r)
    assert g.text == plain.text
    ids = r.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    rows, _ = _eager_rows(path, ids)
    s, e = NEEDLE
    assert len(rows) == len(g.diagnostics["layers"])
    for layer, p in enumerate(rows):
        assert torch.allclose(g.diagnostics["needle_mass"][layer], p[:, s:e].sum(-1), atol=1e-3), layer
        ent = -(p * p.clamp_min(1e-30).log()).sum(-1)
        assert torch.allclose(g.diagnostics["entropy"][layer], ent, atol=1e-3), layer
