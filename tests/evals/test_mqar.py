"""mqar (multi-query associative recall) with SmolLM2's tokenizer: one contiguous block of pairs in the haystack,
token-exact prompts, the block following the depth, determinism, the ordered scorer's known answers, presets."""
import math
import re

import pytest

from evals.base import TaskConfig, answer_tokens, count_tokens
from evals.mqar import KEYS, MultiQueryRecall
from evals.registry import TASKS, make_task
from evals.scoring import score_references_in_order, three_digit_numbers
from harness.errors import UserError

LENGTHS, DEPTHS = (1024, 4096), (0.1, 0.5, 0.9)
_cache: dict = {}


def grid(tokenizer) -> list:
    """The default task's samples over 1k/4k × depths 0.1/0.5/0.9 (generated once per test session)."""
    if "grid" not in _cache:
        task = MultiQueryRecall(TaskConfig(lengths=LENGTHS, depths=DEPTHS))
        _cache["grid"] = list(task.samples(tokenizer))
    return _cache["grid"]


def block_of(s) -> str:
    return "".join(f"{k} {v}\n" for k, v in zip(s.meta["keys"], s.meta["values"]))


def test_prompt_holds_every_pair_once_in_one_contiguous_block(smollm2_tokenizer):
    for s in grid(smollm2_tokenizer):
        keys, values = s.meta["keys"], s.meta["values"]
        assert len(keys) == len(set(keys)) == 8 and len(set(values)) == 8
        assert all(k in KEYS for k in keys) and all(re.fullmatch(r"\d{3}", v) for v in values)
        assert s.prompt.count("\n" + block_of(s)) == 1  # the block starts on its own line
        assert re.findall(r"^[a-z]+ \d{3}$", s.prompt, flags=re.M) == [f"{k} {v}" for k, v in zip(keys, values)]


def test_queries_are_distinct_keys_of_the_block_and_the_target_lists_their_values(smollm2_tokenizer):
    for s in grid(smollm2_tokenizer):
        keys, values, queries = s.meta["keys"], s.meta["values"], s.meta["queries"]
        assert len(queries) == len(set(queries)) == 4 and set(queries) <= set(keys)
        want = [values[keys.index(k)] for k in queries]
        assert s.meta["references"] == want and s.target == ", ".join(want)
        assert s.prompt.endswith(f"\nWhat are the numbers of {queries[0]}, {queries[1]}, {queries[2]} and "
                                 f"{queries[3]}, in that order? The numbers are")


def test_queries_are_asked_in_random_order_not_the_blocks(smollm2_tokenizer):
    orders = [[s.meta["keys"].index(k) for k in s.meta["queries"]] for s in grid(smollm2_tokenizer)]
    assert any(o != sorted(o) for o in orders)


def test_prompt_plus_budget_fits_and_is_within_one_percent(smollm2_tokenizer):
    for s in grid(smollm2_tokenizer):
        budget = s.context_length - s.max_new_tokens
        assert s.tokens == count_tokens(smollm2_tokenizer, s.prompt)
        assert math.ceil(0.99 * budget) <= s.tokens <= budget, (s.context_length, s.depth, s.tokens)


def test_block_follows_the_depth_and_its_offset_is_recorded(smollm2_tokenizer):
    for n in LENGTHS:
        samples = [s for s in grid(smollm2_tokenizer) if s.context_length == n]
        offsets = [s.needle_token_offset for s in samples]
        assert [s.depth for s in samples] == list(DEPTHS) and offsets == sorted(set(offsets))
        for s in samples:
            start, end = smollm2_tokenizer(s.prompt, return_offsets_mapping=True)["offset_mapping"][
                s.needle_token_offset]  # the recorded token holds the block's leading newline
            assert start <= s.prompt.index("\n" + block_of(s)) < end
            if n == 4096:  # the haystack runs from after the instruction to the question
                first = count_tokens(smollm2_tokenizer, s.prompt[:s.prompt.index("\n") + 1])
                last = count_tokens(smollm2_tokenizer, s.prompt[:s.prompt.rindex("\n")])
                assert abs((s.needle_token_offset - first) / (last - first) - s.depth) < 0.05


def test_same_coordinates_give_the_same_sample_and_another_sample_id_other_pairs(smollm2_tokenizer):
    s = grid(smollm2_tokenizer)[0]
    again = MultiQueryRecall(TaskConfig(lengths=(1024,))).sample(smollm2_tokenizer, 1024, 0.1, 0)
    assert (again.prompt_sha, again.target, again.meta) == (s.prompt_sha, s.target, s.meta)
    other = MultiQueryRecall(TaskConfig(lengths=(1024,))).sample(smollm2_tokenizer, 1024, 0.1, 1)
    assert other.meta["keys"] != s.meta["keys"] and other.meta["values"] != s.meta["values"]


def test_scorer_known_answers(smollm2_tokenizer):
    s = grid(smollm2_tokenizer)[0]
    task, refs = MultiQueryRecall(TaskConfig(lengths=(1024,))), s.meta["references"]
    right = task.score(s, " " + s.target + ".")
    assert (right.score, right.correct, right.lenient, right.metric) == (1.0, True, True, "all-references")
    swapped = task.score(s, " " + ", ".join([refs[1], refs[0]] + refs[2:]) + ".")
    assert (swapped.score, swapped.correct, swapped.lenient) == (1.0, False, True)
    wrong = next(f"{v:03d}" for v in range(1000) if f"{v:03d}" not in s.meta["values"])
    one_off = task.score(s, " " + ", ".join(refs[:3] + [wrong]) + ".")
    assert (one_off.score, one_off.correct, one_off.lenient) == (0.75, False, False)
    none = task.score(s, " I do not remember them.")
    assert (none.score, none.correct, none.lenient, none.extracted) == (0.0, False, False, None)


def test_strict_reading_takes_the_first_standalone_three_digit_numbers_in_order():
    assert three_digit_numbers(" 042, 1907, 381 and 7.") == ["042", "381"]
    sc = score_references_in_order("Step 1: 042, 907, 381, 555. Also 123.", ["042", "907", "381", "555"],
                                   extract_all=three_digit_numbers)
    assert (sc.correct, sc.extracted, sc.score) == (True, "042, 907, 381, 555", 1.0)
    sc = score_references_in_order(" 1042, 907", ["042", "907"], extract_all=three_digit_numbers)
    assert (sc.correct, sc.extracted, sc.score, sc.lenient) == (False, "907", 1.0, True)  # lenient: substrings


def test_generation_budget_holds_the_measured_answer(smollm2_tokenizer):
    s = grid(smollm2_tokenizer)[0]
    assert answer_tokens(smollm2_tokenizer, s.target) == 20  # 5 tokens per value: " 042," ... " 381."
    assert s.max_new_tokens == MultiQueryRecall(TaskConfig(lengths=(1024,))).budget() == 24
    task = MultiQueryRecall(TaskConfig(lengths=(1024,), max_new_tokens=12))
    with pytest.raises(UserError, match="raise --max-new-tokens to 20"):
        task.sample(smollm2_tokenizer, 1024, 0.5, 0)


@pytest.mark.parametrize("preset,pairs", [("mqar", 8), ("mqar-4", 4), ("mqar-16", 16), ("mqar-64", 64)])
def test_presets_store_their_number_of_pairs_and_ask_four(smollm2_tokenizer, preset, pairs):
    task = make_task(preset, TaskConfig(lengths=(1024,)))
    s = task.sample(smollm2_tokenizer, 1024, 0.5, 0)
    assert task.name == s.task == preset and type(task) is MultiQueryRecall
    assert len(s.meta["keys"]) == len(set(s.meta["keys"])) == pairs and len(s.meta["references"]) == 4
    assert len(re.findall(r"^[a-z]+ \d{3}$", s.prompt, flags=re.M)) == pairs


def test_parameters_outside_the_presets_get_a_name_of_their_own(smollm2_tokenizer):
    assert MultiQueryRecall(TaskConfig(lengths=(512,)), num_pairs=32).name == "mqar:num_pairs=32"
    task = MultiQueryRecall(TaskConfig(lengths=(512,)), num_pairs=3, num_queries=1)
    s = task.sample(smollm2_tokenizer, 512, 0.5, 0)
    assert task.name == "mqar:num_pairs=3,num_queries=1" and task.budget() == 9
    assert s.prompt.endswith(f"\nWhat is the number of {s.meta['queries'][0]}? The number is")


@pytest.mark.parametrize("params,needle", [
    ({"num_pairs": 4, "num_queries": 5}, "num_queries must be in [1, num_pairs = 4], got 5"),
    ({"num_queries": 0}, "num_queries must be in [1, num_pairs = 8], got 0"),
    ({"num_pairs": 0}, "num_pairs must be in [1, 100]"),
    ({"num_pairs": 101}, "num_pairs must be in [1, 100]"),
])
def test_bad_parameters_are_one_line_user_errors(params, needle):
    with pytest.raises(UserError) as e:
        MultiQueryRecall(TaskConfig(lengths=(512,)), **params)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_registered_with_an_lm_eval_task_file_of_its_budget(tmp_path):
    from harness.integrations.lm_eval_tasks import write_task_files

    assert TASKS.get("mqar") is MultiQueryRecall
    assert "longctx_mqar" in write_task_files(tmp_path)
    assert "max_gen_toks: 24" in (tmp_path / "longctx_mqar.yaml").read_text()
    # the presets get theirs: keyed answers take 9 tokens a key (word and number) + 4, and utils.py serves them
    assert "longctx_mqar_16_keyed" in write_task_files(tmp_path)
    text = (tmp_path / "longctx_mqar_16_keyed.yaml").read_text()
    assert "max_gen_toks: 40" in text and "utils.mqar_16_keyed" in text


@pytest.mark.parametrize("preset,pairs", [("mqar-keyed", 8), ("mqar-4-keyed", 4), ("mqar-16-keyed", 16),
                                          ("mqar-64-keyed", 64)])
def test_keyed_presets_ask_for_each_key_with_its_value_in_order(smollm2_tokenizer, preset, pairs):
    """The -keyed presets: the same block, the question asks for "word number" pairs, the references are those
    pairs in the order asked, and only those pairs in that order are correct."""
    task = make_task(preset, TaskConfig(lengths=(1024,)))
    s = task.sample(smollm2_tokenizer, 1024, 0.5, 0)
    assert task.name == s.task == preset and len(s.meta["keys"]) == pairs
    by_key = dict(zip(s.meta["keys"], s.meta["values"]))
    q = s.meta["queries"]
    assert s.meta["references"] == [f"{k} {by_key[k]}" for k in q] and s.target == ", ".join(s.meta["references"])
    assert s.prompt.endswith("? Answer with each word and its number, in that order:")
    assert task.score(s, " " + s.target + ".").correct
    swapped = ", ".join(s.meta["references"][1::-1] + s.meta["references"][2:])
    sc = task.score(s, " " + swapped + ".")
    assert not sc.correct and sc.lenient and sc.score == 1.0  # every pair there, in the wrong order
    bare = task.score(s, " " + ", ".join(by_key[k] for k in q) + ".")  # the values without their keys
    assert not bare.correct and bare.score == 0.0


def test_keyed_budget_holds_the_longest_keys_and_one_key_asks_for_one_pair(smollm2_tokenizer):
    longest = sorted(KEYS, key=lambda k: -len(smollm2_tokenizer(" " + k, add_special_tokens=False)["input_ids"]))
    task = MultiQueryRecall(TaskConfig(lengths=(512,)), answer="keyed")
    assert answer_tokens(smollm2_tokenizer, ", ".join(f"{k} 999" for k in longest[:4])) <= task.budget() == 40
    one = MultiQueryRecall(TaskConfig(lengths=(512,)), num_pairs=3, num_queries=1, answer="keyed")
    s = one.sample(smollm2_tokenizer, 512, 0.5, 0)
    assert one.name == "mqar:num_pairs=3,num_queries=1,answer=keyed"
    assert s.prompt.endswith(f"\nWhat is the number of {s.meta['queries'][0]}? Answer with the word and its number:")
    with pytest.raises(UserError, match="answer must be one of values, keyed"):
        MultiQueryRecall(TaskConfig(lengths=(512,)), answer="pairs")


def test_keyed_pairs_are_word_and_three_digits():
    from evals.mqar import keyed_pairs

    assert keyed_pairs("goblet 721, igloo 56, lake 566. x 1234 y 123") == ["goblet 721", "lake 566", "y 123"]
