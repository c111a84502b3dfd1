"""Token-exact prompt construction, needle placement and determinism, with SmolLM2's real tokenizer."""
import hashlib

import pytest

from evals.base import FILL_TOLERANCE, TaskConfig, count_tokens
from evals.needle import NeedleInHaystackTask
from evals.passkey import PasskeyTask
from harness.errors import UserError


def _digest(samples) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.context_length}|{s.depth}|{s.sample_id}|{s.target}|{s.tokens}|{s.prompt}".encode())
    return h.hexdigest()


@pytest.mark.parametrize("haystack", ["noise", "essay"])
@pytest.mark.parametrize("task_cls", [PasskeyTask, NeedleInHaystackTask])
def test_prompt_plus_budget_fits_and_is_within_one_percent(smollm2_tokenizer, task_cls, haystack):
    cfg = TaskConfig(lengths=(300, 1000, 4096, 16384), depths=(0.0, 0.37, 1.0), haystack=haystack)
    for s in task_cls(cfg).samples(smollm2_tokenizer):
        budget = s.context_length - s.max_new_tokens
        assert s.tokens == count_tokens(smollm2_tokenizer, s.prompt)
        assert (1 - FILL_TOLERANCE) * budget <= s.tokens <= budget, (s.context_length, s.depth, s.tokens)


@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_needle_sits_at_a_sentence_boundary_near_its_depth(smollm2_tokenizer, depth):
    task = PasskeyTask(TaskConfig(lengths=(4096,), depths=(depth,), haystack="essay"))
    s = task.sample(smollm2_tokenizer, 4096, depth, 0)
    needle = f"The pass key is {s.target}."
    at = s.prompt.index(needle)
    before = s.prompt[:at]
    assert before == task.preamble or before.endswith((". ", "! ", "? ", ".' ", '." ')), repr(before[-20:])
    ids = smollm2_tokenizer(s.prompt)["input_ids"]
    assert smollm2_tokenizer.decode(ids[s.needle_token_offset:]).lstrip().startswith("The pass key is")
    haystack_tokens = s.tokens - count_tokens(smollm2_tokenizer, task.preamble)
    rel = (s.needle_token_offset - count_tokens(smollm2_tokenizer, task.preamble)) / haystack_tokens
    assert abs(rel - depth) < 0.03, rel


def test_same_seed_gives_byte_identical_samples(smollm2_tokenizer):
    cfg = TaskConfig(lengths=(1024, 2048), depths=(0.1, 0.9), samples=2, seed=7, haystack="essay")
    assert _digest(PasskeyTask(cfg).samples(smollm2_tokenizer)) == _digest(PasskeyTask(cfg).samples(smollm2_tokenizer))
    other = TaskConfig(lengths=(1024, 2048), depths=(0.1, 0.9), samples=2, seed=8, haystack="essay")
    assert _digest(PasskeyTask(cfg).samples(smollm2_tokenizer)) != _digest(PasskeyTask(other).samples(smollm2_tokenizer))


def test_growing_the_grid_keeps_existing_samples(smollm2_tokenizer):
    small = PasskeyTask(TaskConfig(lengths=(1024,), depths=(0.5,), samples=1))
    large = PasskeyTask(TaskConfig(lengths=(1024, 2048), depths=(0.1, 0.5), samples=3))
    assert small.sample(smollm2_tokenizer, 1024, 0.5, 0) == large.sample(smollm2_tokenizer, 1024, 0.5, 0)


def test_samples_in_a_cell_differ(smollm2_tokenizer):
    task = PasskeyTask(TaskConfig(lengths=(1024,), samples=3, haystack="essay"))
    samples = list(task.samples(smollm2_tokenizer))
    assert len({s.target for s in samples}) == 3 and len({s.prompt for s in samples}) == 3


def test_length_too_short_for_the_fixed_parts_is_a_user_error(smollm2_tokenizer):
    task = PasskeyTask(TaskConfig(lengths=(40,)))
    with pytest.raises(UserError, match="too short"):
        list(task.samples(smollm2_tokenizer))


def test_essay_haystack_from_a_user_file(smollm2_tokenizer, tmp_path):
    text = " ".join(f"Sentence number {w} says something plain." for w in ["one", "two", "three"] * 10)
    f = tmp_path / "mine.txt"
    f.write_text(text.replace("number ", "").replace("one", "alpha"))
    task = PasskeyTask(TaskConfig(lengths=(512,), haystack="essay", haystack_file=str(f)))
    s = next(task.samples(smollm2_tokenizer))
    assert "says something plain" in s.prompt


def test_missing_haystack_file_is_a_user_error(smollm2_tokenizer, tmp_path):
    task = PasskeyTask(TaskConfig(lengths=(512,), haystack="essay", haystack_file=str(tmp_path / "nope.txt")))
    with pytest.raises(UserError, match="does not exist"):
        next(task.samples(smollm2_tokenizer))
