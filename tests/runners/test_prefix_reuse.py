"""Prefix reuse (`-R prefix_cache=true`) with a shared haystack (`--shared-haystack`): each (length, sample)'s
haystack is prefilled once for all its depths, and every record equals the one a run without reuse writes."""
import dataclasses
import json

import pytest
import torch

from evals.base import TaskConfig
from evals.passkey import PasskeyTask
from extensions import EXTENSIONS
from harness.errors import UserError
from harness.experiment import Experiment, reuse_order, run
from harness.runners.base import GenerationRequest
from harness.runners.hf import HFRunner
from harness.runners.kernel import KernelRunner

DEPTHS = (0.1, 0.3, 0.5, 0.7, 0.9)


def _records(path):
    return [json.loads(line) for line in (path / "results.jsonl").read_text().splitlines()]


def test_shared_haystack_keeps_each_prefix_and_changes_only_the_haystack(smollm2_tokenizer):
    own = PasskeyTask(TaskConfig(lengths=(600,), depths=DEPTHS))
    shared = PasskeyTask(TaskConfig(lengths=(600,), depths=DEPTHS, shared_haystack=True))
    s = [shared.sample(smollm2_tokenizer, 600, d, 0) for d in DEPTHS]
    o = [own.sample(smollm2_tokenizer, 600, d, 0) for d in DEPTHS]
    assert [x.target for x in s] == [x.target for x in o]  # the needles are the samples' own
    head = len(PasskeyTask.preamble)
    assert len({x.prompt[head:head + 60] for x in o}) > 1 and len({x.prompt[:head + 60] for x in s}) == 1
    for shallow, deep in zip(s, s[1:]):  # everything before a needle is a prefix of every deeper sample
        cut = shallow.prompt.index("The pass key is")
        assert deep.prompt[:cut] == shallow.prompt[:cut]
        ids_shallow = smollm2_tokenizer(shallow.prompt)["input_ids"][:shallow.needle_token_offset]
        assert smollm2_tokenizer(deep.prompt)["input_ids"][:len(ids_shallow)] == ids_shallow


def test_reuse_order_serves_the_deepest_needle_first():
    cells = [(n, d, i) for n in (512, 1024) for d in (0.1, 0.9) for i in (0, 1)]
    assert reuse_order(cells) == [(512, 0.9, 0), (512, 0.1, 0), (512, 0.9, 1), (512, 0.1, 1),
                                  (1024, 0.9, 0), (1024, 0.1, 0), (1024, 0.9, 1), (1024, 0.1, 1)]


@pytest.mark.parametrize("runner_cls,extension,params", [
    (HFRunner, "none", {}),
    (KernelRunner, "selfextend", {"group": 4, "window": 64}),
    (HFRunner, "yarn", {"factor": 2.0}),
])
def test_reused_prefix_gives_the_logits_of_a_fresh_prefill(tiny_llama_path, runner_cls, extension, params):
    ext = EXTENSIONS.get(extension)()
    from transformers import AutoConfig

    cfg = ext.resolve(ext.parse(params), AutoConfig.from_pretrained(tiny_llama_path))
    runner = runner_cls(dtype="float32", device="cpu", prefix_cache=True)
    runner.load(tiny_llama_path, ext, cfg)
    task = PasskeyTask(TaskConfig(lengths=(500,), depths=(0.8, 0.3), shared_haystack=True))
    deep, shallow = (task.sample(runner.tokenizer, 500, d, 0) for d in (0.8, 0.3))
    runner.generate([GenerationRequest(deep.prompt, 4)])
    ids = runner.tokenizer(shallow.prompt, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        cache, shared = runner._reusable(ids)
        reused = runner._prefill(ids, cache, start=shared).logits[0, -1]
        fresh = runner._prefill(ids, runner._new_cache()).logits[0, -1]
    assert shallow.needle_token_offset - 2 <= shared < ids.shape[1]
    torch.testing.assert_close(reused, fresh, atol=2e-5, rtol=1e-5)


def test_reuse_writes_the_records_of_a_run_without_it(tiny_llama_path, tmp_path):
    """Same greedy strings and scores at every cell; only the reuse fields differ."""
    tc = TaskConfig(lengths=(300, 480), depths=DEPTHS, samples=2, shared_haystack=True, max_new_tokens=6)
    base = Experiment(task="passkey", task_config=tc, model=tiny_llama_path, runner="hf",
                      runner_options={"dtype": "float32"}, out=str(tmp_path / "plain"))
    reuse = dataclasses.replace(base, runner_options={"dtype": "float32", "prefix_cache": True},
                                out=str(tmp_path / "reuse"))
    quiet = lambda *_: None  # noqa: E731
    plain = {(r["context_length"], r["depth"], r["sample_id"]): r for r in _records(run(base, quiet, False))}
    reused = _records(run(reuse, quiet, False))
    assert len(reused) == len(plain) == 20
    for r in reused:
        p = plain[(r["context_length"], r["depth"], r["sample_id"])]
        assert (r["prediction"], r["correct"], r["tokens"], r["prompt_sha"]) == \
            (p["prediction"], p["correct"], p["tokens"], p["prompt_sha"])
    # deepest first per (length, sample): the others are prefilled from (about) their needle on; depths 0.1 … 0.9
    # leave 1.6 of 5 prompts' tokens to the cache
    assert reused[0]["cached_tokens"] == 0 and reused[0]["depth"] == 0.9
    rest = [r for r in reused if r["depth"] != 0.9]
    assert all(abs(r["cached_tokens"] - r["needle_token_offset"]) <= 2 for r in rest)  # a token may match by chance
    assert 0.25 < sum(r["cached_tokens"] for r in reused) / sum(r["tokens"] for r in reused) < 0.35
    assert all(p["cached_tokens"] is None for p in plain.values())


@pytest.mark.parametrize("extension", ["dynamic-ntk", "sinks"])
def test_prefix_reuse_is_refused_where_cached_keys_depend_on_the_rest(extension):
    from harness.runners import check_hostable

    with pytest.raises(UserError, match="prefix_cache cannot serve"):
        check_hostable("hf", extension, {"prefix_cache": True})
    with pytest.raises(UserError, match="prefix_cache cannot serve"):
        check_hostable("kernel", extension, {"prefix_cache": True})


def test_shared_haystack_is_refused_by_tasks_that_build_their_own_context():
    from evals.kv import KeyValueTask

    with pytest.raises(UserError, match="shared-haystack"):
        KeyValueTask(TaskConfig(lengths=(512,), shared_haystack=True))
