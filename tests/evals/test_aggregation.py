"""RULER's aggregation tasks (cwe, fwe): what the prompt holds is what the references say, fitted token-exactly."""
import collections
import re
import subprocess
import sys

import pytest

from evals.aggregation import AggregationConfig
from evals.registry import make_task
from harness.errors import UserError


def _sample(tokenizer, name, n, sample_id=0, **kw):
    return make_task(name, AggregationConfig(lengths=(n,), **kw)).sample(tokenizer, n, None, sample_id)


def _list_counts(prompt: str) -> tuple[collections.Counter, list[int]]:
    """Counts of the words in cwe's last list (after the worked example), and its item numbers."""
    body = prompt.split("\n")[-2]
    items = re.findall(r"(\d+)\. ([a-z]+)", body)
    return collections.Counter(w for _, w in items), [int(i) for i, _ in items]


@pytest.mark.parametrize("n,freqs", [(2048, (6, 1)), (8192, (30, 3))])
def test_cwe_asks_for_the_words_its_list_repeats_most(smollm2_tokenizer, n, freqs):
    s = _sample(smollm2_tokenizer, "cwe", n)
    counts, numbers = _list_counts(s.prompt)
    assert numbers == list(range(1, len(numbers) + 1))
    refs = s.meta["references"]
    assert len(refs) == 10 and all(counts[w] == freqs[0] for w in refs)
    assert set(counts.values()) == set(freqs) and sum(c == freqs[0] for c in counts.values()) == 10
    assert s.target == ", ".join(refs) and s.depth is None and s.needle_token_offset is None


@pytest.mark.parametrize("n", [1024, 4096, 16384])
def test_fwe_asks_for_ranks_two_to_four_of_its_zipf_text(smollm2_tokenizer, n):
    s = _sample(smollm2_tokenizer, "fwe", n)
    text = s.prompt.split("\n")[1]
    counts = collections.Counter(text.split())
    ranked = [w for w, _ in counts.most_common()]
    assert ranked[0] == "..." and ranked[1:4] == s.meta["references"]
    top = [c for _, c in counts.most_common(5)]
    assert top == sorted(set(top), reverse=True)  # no ties among the first five: the answer is unambiguous


@pytest.mark.parametrize("name", ["cwe", "fwe"])
@pytest.mark.parametrize("n", [1024, 3000, 4096, 8192])
def test_prompts_fill_the_budget_to_within_one_percent_and_are_seeded(smollm2_tokenizer, name, n):
    s = _sample(smollm2_tokenizer, name, n)
    budget = n - s.max_new_tokens
    assert 0.99 * budget <= s.tokens <= budget
    assert len(smollm2_tokenizer(s.prompt)["input_ids"]) == s.tokens
    assert _sample(smollm2_tokenizer, name, n).prompt == s.prompt
    assert _sample(smollm2_tokenizer, name, n, sample_id=1).prompt != s.prompt
    assert _sample(smollm2_tokenizer, name, n, seed=1).prompt != s.prompt


def test_scores_are_rulers_all_references_fraction(smollm2_tokenizer):
    task = make_task("fwe", AggregationConfig(lengths=(1024,)))
    s = task.sample(smollm2_tokenizer, 1024, None, 0)
    a, b, c = s.meta["references"]
    assert task.score(s, f" {a}, {b} and {c}.").value == 1.0
    assert task.score(s, f" {a.upper()} and {c}").value == pytest.approx(2 / 3)
    assert not task.score(s, f" {a.upper()}, {b}, {c}").correct  # strict: exact case


@pytest.mark.parametrize("args,needle", [(["-d", "0.1,0.9"], "has no depths"), (["--haystack", "essay"], "has no haystack"),
                                         (["--shared-haystack"], "has no shared_haystack")])
def test_settings_that_do_not_apply_are_refused_in_one_line(tmp_path, tiny_llama_path, args, needle):
    res = subprocess.run([sys.executable, "-m", "harness.cli", "retrieval", "-t", "cwe", "-m", tiny_llama_path,
                          "-l", "1k", *args, "--no-progress", "-o", str(tmp_path / "r")], capture_output=True, text=True)
    assert res.returncode == 2 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "r").exists()


def test_search_and_bad_settings_are_refused():
    from harness.experiment import Experiment
    from harness.search import SearchConfig, search_experiment

    exp = Experiment(task="cwe", task_config=AggregationConfig(lengths=(1024,)), model="smollm2")
    with pytest.raises(UserError, match="has no needle"):
        search_experiment(exp, SearchConfig(low=1024, high=4096))
    with pytest.raises(UserError, match="freq_cw > freq_ucw"):
        type(make_task("cwe", AggregationConfig(lengths=(1024,))))(AggregationConfig(lengths=(1024,)), freq_cw=2,
                                                                     freq_ucw=3)


def test_retrieval_command_runs_them_and_lm_eval_lists_them(tmp_path, tiny_llama_path):
    from harness.integrations.lm_eval_tasks import write_task_files
    from harness.records import read_records

    for name in ("cwe", "fwe"):
        out = tmp_path / name
        res = subprocess.run([sys.executable, "-m", "harness.cli", "retrieval", "-t", name, "-m", tiny_llama_path,
                              "-l", "1k", "-n", "2", "--no-progress", "-o", str(out)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        records = read_records(out)
        assert len(records) == 2 and all(r.depth is None and r.metric == "all-references" for r in records)
        assert all(r.answer_logprob is not None and r.answer_logprob < 0 for r in records)
    names = write_task_files(tmp_path / "lm")
    assert {"longctx_cwe", "longctx_fwe"} <= set(names)
    assert "max_gen_toks: 120" in (tmp_path / "lm" / "longctx_cwe.yaml").read_text()
