"""RULER-style retrieval tasks (niah-multikey/-multivalue/-multiquery, kv, phonebook, vt) with SmolLM2's tokenizer:
token-exact prompts, determinism, answers where the sample says they are, distinct distractors, scorer known answers.
"""
import hashlib
import json
import math
import re

import pytest

from evals.base import Needle, TaskConfig, build_needles_prompt, build_prompt, count_tokens
from evals.haystack import sentence_stream
from evals.needle import NeedleInHaystackTask
from evals.passkey import PasskeyTask
from evals.registry import TASKS
from evals.ruler import WORDS, MultiKeyNeedle, MultiQueryNeedle, MultiValueNeedle
from evals.vt import VariableTracking
from harness.errors import UserError

# The generation budget each task's docstring asks for (its default preset).
NEEDS = {"niah-multikey": 12, "niah-multivalue": 48, "niah-multiquery": 48, "kv": 48, "phonebook": 16, "vt": 32}
METRICS = {"niah-multikey": "any-reference", "kv": "any-reference", "phonebook": "any-reference",
           "niah-multivalue": "all-references", "niah-multiquery": "all-references", "vt": "all-references"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

_cache: dict = {}


def grid(tokenizer, name: str) -> list:
    """The samples of one task over lengths 512/2048/8192 × depths 0/0.5/1 (generated once per test session)."""
    if name not in _cache:
        cfg = TaskConfig(lengths=(512, 2048, 8192), depths=(0.0, 0.5, 1.0), max_new_tokens=NEEDS[name])
        _cache[name] = list(TASKS.get(name)(cfg).samples(tokenizer))
    return _cache[name]


def _digest(samples) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.context_length}|{s.depth}|{s.sample_id}|{s.target}|{s.tokens}|{s.prompt}".encode())
    return h.hexdigest()


def needle_texts(s) -> list[str]:
    """The text each reference's needle starts with, rebuilt from the sample's metadata (aligned with references)."""
    refs, m = s.meta["references"], s.meta
    if s.task == "niah-multikey":
        return [f"The secret number for the {m['key']} is {s.target}."]
    if s.task == "niah-multivalue":
        return [f"One of the secret numbers for the {m['key']} is {v}." for v in refs]
    if s.task == "niah-multiquery":
        return [f"The secret number for the {k} is {v}." for k, v in zip(m["keys"], refs)]
    if s.task == "vt":
        return [f"VAR {refs[0]} = {m['value']}."] + [f"VAR {b} = VAR {a}." for a, b in zip(refs, refs[1:])]
    if s.task == "kv":
        return [f'"{m["key"]}": "{s.target}"']
    return [f"{m['name']}: {s.target}"]  # phonebook


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_registered_name_builds_with_a_default_config(name):
    task = TASKS.get(name)(TaskConfig(lengths=(512,)))
    assert task.name == name
    assert [c for c in task.cells()] == [(512, 0.5, 0)]


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_prompt_plus_budget_fits_and_is_within_one_percent(smollm2_tokenizer, name):
    samples = grid(smollm2_tokenizer, name)
    assert len(samples) == 9
    for s in samples:
        budget = s.context_length - s.max_new_tokens
        assert s.tokens == count_tokens(smollm2_tokenizer, s.prompt)
        assert math.ceil(0.99 * budget) <= s.tokens <= budget, (s.context_length, s.depth, s.tokens)


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_same_seed_gives_byte_identical_samples_and_another_seed_does_not(smollm2_tokenizer, name):
    def make(seed):
        cfg = TaskConfig(lengths=(512, 1024), depths=(0.0, 1.0), samples=2, seed=seed, max_new_tokens=NEEDS[name])
        return _digest(TASKS.get(name)(cfg).samples(smollm2_tokenizer))

    assert make(3) == make(3)
    assert make(3) != make(4)


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_each_answer_sits_at_its_recorded_token_offset(smollm2_tokenizer, name):
    for s in grid(smollm2_tokenizer, name):
        texts = needle_texts(s)
        offsets = s.meta.get("needle_token_offsets", [s.needle_token_offset])[:len(texts)]
        assert s.needle_token_offset in offsets
        spans = smollm2_tokenizer(s.prompt, return_offsets_mapping=True)["offset_mapping"]
        for text, offset in zip(texts, offsets):
            assert s.prompt.count(text) == 1
            start, end = spans[offset]  # the recorded token holds the text's first character
            assert start <= s.prompt.index(text) < end, (s.context_length, s.depth, text)


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_recorded_needle_sits_near_its_depth(smollm2_tokenizer, name):
    for s in grid(smollm2_tokenizer, name):
        if s.context_length < 2048:
            continue  # at 512 tokens a single 70-token entry or a five-line chain is a tenth of the haystack
        # The haystack runs from after the one-line instruction to the question (the prompt's last line).
        start = count_tokens(smollm2_tokenizer, s.prompt[:s.prompt.index("\n") + 1])
        end = count_tokens(smollm2_tokenizer, s.prompt[:s.prompt.rindex("\n")])
        rel = (s.needle_token_offset - start) / (end - start)
        assert abs(rel - s.depth) < 0.05, (s.context_length, s.depth, rel)


@pytest.mark.parametrize("name", ["niah-multikey", "niah-multivalue", "niah-multiquery", "vt"])
def test_needles_are_spread_over_the_haystack(smollm2_tokenizer, name):
    # Four needles: the requested depth and three more 1/4 apart, wrapping; a chain of five: from the requested
    # depth onwards, 1/5 of the remaining haystack apart.
    for s in grid(smollm2_tokenizer, name):
        if s.context_length < 2048:
            continue
        d = s.depth
        want = [d + (1 - d) * j / 5 for j in range(5)] if name == "vt" else [d] + [(d + j / 4) % 1 for j in (1, 2, 3)]
        start = count_tokens(smollm2_tokenizer, s.prompt[:s.prompt.index("\n") + 1])
        end = count_tokens(smollm2_tokenizer, s.prompt[:s.prompt.rindex("\n")])
        got = [(o - start) / (end - start) for o in s.meta["needle_token_offsets"]]
        assert sorted(got) == pytest.approx(sorted(want), abs=0.05), (s.context_length, d)


@pytest.mark.parametrize("name", ["kv", "phonebook"])
def test_asked_entry_is_at_the_index_nearest_the_depth(smollm2_tokenizer, name):
    for s in grid(smollm2_tokenizer, name):
        others = s.meta["entries"] - 1
        assert s.meta["target_index"] == math.floor(s.depth * others + 0.5)


def test_multikey_distractors_have_other_keys_and_values(smollm2_tokenizer):
    for s in grid(smollm2_tokenizer, "niah-multikey"):
        keys = [s.meta["key"]] + s.meta["distractor_keys"]
        values = [s.target] + s.meta["distractor_values"]
        assert len(keys) == len(set(keys)) == 4 and len(set(values)) == 4
        for k, v in zip(keys, values):  # every needle present once, binding its own key to its own value
            assert s.prompt.count(f"The secret number for the {k} is {v}.") == 1
        assert s.prompt.count(s.target) == 1
        assert s.prompt.endswith(f"What is the secret number for the {s.meta['key']}? "
                                 f"The secret number for the {s.meta['key']} is")


@pytest.mark.parametrize("name", ["niah-multivalue", "niah-multiquery"])
def test_every_value_is_present_once_and_listed_in_the_target(smollm2_tokenizer, name):
    for s in grid(smollm2_tokenizer, name):
        refs = s.meta["references"]
        assert len(refs) == len(set(refs)) == 4
        assert s.target == ", ".join(refs)
        assert all(s.prompt.count(v) == 1 for v in refs)
        if name == "niah-multiquery":
            question = s.prompt[s.prompt.rindex("\n"):]
            assert all(f"the {k}" in question for k in s.meta["keys"]) and len(set(s.meta["keys"])) == 4


def test_multivalue_lists_values_in_reading_order(smollm2_tokenizer):
    for s in grid(smollm2_tokenizer, "niah-multivalue"):
        positions = [s.prompt.index(v) for v in s.meta["references"]]
        assert positions == sorted(positions)


def test_kv_haystack_is_a_json_object_of_unique_uuid_pairs(smollm2_tokenizer):
    for s in grid(smollm2_tokenizer, "kv"):
        start = s.prompt.index("{")
        end = s.prompt.rindex("}\nWhat is the value")
        pairs = json.loads(s.prompt[start:end + 1], object_pairs_hook=list)
        keys = [k for k, _ in pairs]
        assert len(pairs) == s.meta["entries"] and len(set(keys)) == len(keys)
        assert pairs[s.meta["target_index"]] == (s.meta["key"], s.target)
        assert all(UUID.match(k) and UUID.match(v) for k, v in pairs)
        assert s.prompt.count(s.target) == 1 and s.prompt.count(s.meta["key"]) == 3  # object, question, prefix


def test_phonebook_names_and_numbers_are_unique(smollm2_tokenizer):
    for s in grid(smollm2_tokenizer, "phonebook"):
        lines = s.prompt.split("\n")[1:-1]
        assert len(lines) == s.meta["entries"]
        names = [ln.split(": ")[0] for ln in lines]
        numbers = [ln.split(": ")[1] for ln in lines]
        assert len(set(names)) == len(names) and len(set(numbers)) == len(numbers)
        assert lines[s.meta["target_index"]] == f"{s.meta['name']}: {s.target}"
        assert all(re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", n) for n in names)
        assert all(re.fullmatch(r"\d{3}-\d{3}-\d{4}", n) for n in numbers)


def test_vt_chain_is_in_order_and_distractor_chains_use_other_names(smollm2_tokenizer):
    for s in grid(smollm2_tokenizer, "vt"):
        texts = needle_texts(s)
        positions = [s.prompt.index(t) for t in texts]
        assert positions == sorted(positions) and len(texts) == 5
    task = VariableTracking(TaskConfig(lengths=(2048,), max_new_tokens=32), num_chains=2)
    s = task.sample(smollm2_tokenizer, 2048, 0.3, 0)
    assert task.name == "vt-2chains"
    assert set(s.meta["distractor_names"]).isdisjoint(s.meta["references"]) and len(s.meta["distractor_names"]) == 5
    assert s.meta["distractor_values"][0] != s.meta["value"]
    assert f"VAR {s.meta['distractor_names'][0]} = {s.meta['distractor_values'][0]}." in s.prompt


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_scorer_known_answers(smollm2_tokenizer, name):
    s = grid(smollm2_tokenizer, name)[0]
    refs = s.meta["references"]
    right = TASKS.get(name)(TaskConfig(lengths=(512,))).score(s, " " + s.target + ".")
    assert (right.score, right.correct, right.lenient, right.metric) == (1.0, True, True, METRICS[name])
    empty = TASKS.get(name)(TaskConfig(lengths=(512,))).score(s, "")
    assert (empty.score, empty.correct, empty.lenient) == (0.0, False, False)
    if len(refs) > 1:  # partial credit: one reference of several
        part = TASKS.get(name)(TaskConfig(lengths=(512,))).score(s, f" {refs[-1]} and nothing else")
        assert part.score == pytest.approx(1 / len(refs)) and not part.correct and not part.lenient
    else:  # a distractor's value (or another number) earns nothing
        wrong = s.meta.get("distractor_values", ["000-000-0000"])[0]
        miss = TASKS.get(name)(TaskConfig(lengths=(512,))).score(s, f" {wrong}.")
        assert (miss.score, miss.correct) == (0.0, False)


def test_single_answer_strict_needs_the_first_answer_to_be_the_target(smollm2_tokenizer):
    s = grid(smollm2_tokenizer, "kv")[0]
    task = TASKS.get("kv")(TaskConfig(lengths=(512,)))
    other = "00000000-0000-4000-8000-000000000000"
    sc = task.score(s, f' "{other}", or maybe "{s.target}"')
    assert (sc.score, sc.correct, sc.lenient, sc.extracted) == (1.0, False, True, other)


@pytest.mark.parametrize("name", ["niah-multivalue", "niah-multiquery", "kv", "phonebook", "vt"])
def test_too_small_generation_budget_is_a_user_error(smollm2_tokenizer, name):
    task = TASKS.get(name)(TaskConfig(lengths=(1024,), max_new_tokens=12))
    with pytest.raises(UserError, match="--max-new-tokens"):
        task.sample(smollm2_tokenizer, 1024, 0.5, 0)


@pytest.mark.parametrize("cls", [MultiKeyNeedle, MultiValueNeedle, MultiQueryNeedle, VariableTracking])
def test_presets_name_their_samples_and_shape_their_values(smollm2_tokenizer, cls):
    for preset in cls.PRESETS:
        task = cls.from_preset(preset, TaskConfig(lengths=(1024,), max_new_tokens=160))
        assert task.name == preset
        s = task.sample(smollm2_tokenizer, 1024, 0.5, 0)
        assert s.task == preset
        kind = task.params.get("value_kind")
        for v in s.meta["references"] if kind else []:
            if v == "none" and task.params.get("absent_rate"):  # the asked key is absent from this sample
                continue
            assert {"numbers": re.fullmatch(r"\d{7}", v), "words": v in WORDS, "uuids": UUID.match(v)}[kind], v
    with pytest.raises(UserError, match="available"):
        cls.from_preset("no-such-preset", TaskConfig(lengths=(1024,)))


def test_parameters_outside_the_presets_get_a_name_of_their_own():
    task = MultiKeyNeedle(TaskConfig(lengths=(512,)), num_keys=6, value_kind="words")
    assert task.name == "niah-multikey:num_keys=6,value_kind=words"
    with pytest.raises(UserError, match="value kind"):
        MultiKeyNeedle(TaskConfig(lengths=(512,)), value_kind="emoji")


def test_length_too_short_for_the_fixed_parts_is_a_user_error(smollm2_tokenizer):
    for name in ("kv", "phonebook", "niah-multiquery"):
        task = TASKS.get(name)(TaskConfig(lengths=(50,), max_new_tokens=NEEDS[name]))
        with pytest.raises(UserError, match="too short"):
            task.sample(smollm2_tokenizer, 50, 0.5, 0)


# --- the multi-needle builder ----------------------------------------------------------------------------------

def test_single_needle_prompts_are_unchanged_by_the_multi_needle_builder(smollm2_tokenizer):
    # Hashes of prompts built by build_prompt before it became a wrapper of build_needles_prompt.
    s = PasskeyTask(TaskConfig(lengths=(1024,), seed=5)).sample(smollm2_tokenizer, 1024, 0.5, 1)
    assert (s.prompt_sha, s.tokens, s.needle_token_offset) == (
        "5f8e4ddc904008c394f4eb365608dbcddba93bc93669309a3a15bb450883bbd1", 1012, 496)
    s = NeedleInHaystackTask(TaskConfig(lengths=(2048,), seed=5)).sample(smollm2_tokenizer, 2048, 0.25, 1)
    assert (s.prompt_sha, s.tokens, s.needle_token_offset) == (
        "d855b2d5528eb99dc19c19e22996060be4102c910095727d40b238ec55450721", 2035, 513)


def test_needles_go_in_depth_order_and_ties_keep_the_given_order(smollm2_tokenizer):
    import random

    needles = [("Needle C.", 0.9), ("Needle A.", 0.1), ("Needle B1.", 0.5), ("Needle B2.", 0.5)]
    built = build_needles_prompt(smollm2_tokenizer, "Read.\n", needles, "\nWhich? It is",
                                 sentence_stream("noise", random.Random(0)), budget=1000)
    at = [built.prompt.index(t) for t, _ in needles]
    assert at[1] < at[2] < at[3] < at[0]
    assert built.prompt[at[2]:at[3]] == "Needle B1. "  # same boundary: adjacent, in the order given
    ids = smollm2_tokenizer(built.prompt)["input_ids"]
    for (text, _), offset in zip(needles, built.needle_token_offsets):
        assert smollm2_tokenizer.decode(ids[offset:]).lstrip().startswith(text)
    one = build_prompt(smollm2_tokenizer, "Read.\n", Needle("Needle A.", "\nWhich? It is", "A"),
                       sentence_stream("noise", random.Random(0)), budget=1000, depth=0.1)
    assert one.needle_token_offsets == (one.needle_token_offset,)


def test_phonebook_redraws_a_number_somebody_already_has():
    from evals.phonebook import PhonebookTask

    class ScriptedRng:  # randint answers from a script: area code, exchange, line, ...
        def __init__(self, values):
            self.values = iter(values)

        def randint(self, a, b):
            return next(self.values)

    rng = ScriptedRng([200, 200, 0, 300, 300, 1, 300, 300, 1, 400, 400, 2])
    lines = PhonebookTask._lines(rng, ["Ann Lee", "Bob Kim"], {"200-200-0000"})
    assert [next(lines), next(lines)] == ["Ann Lee: 300-300-0001", "Bob Kim: 400-400-0002"]
    with pytest.raises(UserError, match="only 3 people"):  # the book is exhausted: say so, do not repeat names
        next(lines)


@pytest.mark.parametrize("name", sorted(set(TASKS.names()) - {"perplexity"}))
def test_a_task_that_builds_its_own_context_refuses_a_haystack(name, tmp_path):
    """kv and phonebook are their own haystack: --haystack essay / --haystack-file is a one-line refusal, not a
    silently ignored option; every other task accepts both."""
    text = tmp_path / "t.txt"
    text.write_text("One sentence. Another one.")
    if "haystack" not in TASKS.get(name).config_cls.__dataclass_fields__:
        return  # its config has no haystack (cwe, fwe): a command offering one is refused (tests/evals/test_aggregation)
    ignores = name in ("kv", "phonebook")
    for cfg in (TaskConfig(lengths=(512,), haystack="essay"),
                TaskConfig(lengths=(512,), haystack="essay", haystack_file=str(text))):
        if ignores:
            with pytest.raises(UserError, match=f"task '{name}' builds its own context"):
                TASKS.get(name)(cfg)
        else:
            assert TASKS.get(name)(cfg).config is cfg


def test_presets_come_from_the_registered_classes():
    from evals.registry import make_task, presets, task_names

    assert presets()["niah-multikey-words"] == "niah-multikey"
    assert set(TASKS.names()) < set(task_names())
    task = make_task("niah-multikey-words", TaskConfig(lengths=(512,)))
    assert type(task).name == "niah-multikey" and task.name == "niah-multikey-words"


@pytest.mark.parametrize("name", sorted(set(__import__("evals.registry", fromlist=["x"]).task_names())
                                        - {"perplexity"}))
def test_every_task_and_preset_runs_at_2k_with_its_default_budget(smollm2_tokenizer, name):
    """No --max-new-tokens: each task's own budget holds its answers (niah-multivalue used to refuse 12)."""
    from evals.registry import make_task

    from evals.registry import make_config

    task = make_task(name, make_config(name, {"lengths": (2048,), "depths": (0.5,)}, known_only=True))
    task.check(smollm2_tokenizer)  # builds the first prompt; raises if the budget cannot hold the answer
    s = task.sample(smollm2_tokenizer, 2048, 0.5, 0)
    assert s.max_new_tokens == task.max_new_tokens and s.tokens + s.max_new_tokens <= 2048
