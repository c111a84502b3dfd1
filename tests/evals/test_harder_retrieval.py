"""RULERv2-style variants of niah-multikey: an absent needle ("none"), the k-th of several values of one key, and
copy-then-compute; their prompts hold what the question says, and their scorers tell the failure kinds apart."""
from __future__ import annotations

import re

import pytest

from evals.base import TaskConfig
from evals.registry import make_task
from evals.ruler import ORDINALS, MultiKeyNeedle
from evals.scoring import first_number, first_word, score_absent
from harness.errors import UserError


def _samples(tok, name, n=12, length=1024):
    task = make_task(name, TaskConfig(lengths=(length,), depths=(0.2, 0.7), samples=n // 2))
    return task, [task.formatted(tok, *c) for c in task.cells()]


def test_absent_needle_samples_hold_no_needle_for_the_asked_key(smollm2_tokenizer):
    task, samples = _samples(smollm2_tokenizer, "niah-multikey-absent", n=40)
    absent = [s for s in samples if s.meta["absent"]]
    assert 10 <= len(absent) <= 30  # absent_rate 0.5, drawn per sample
    for s in samples:
        key = s.meta["key"]
        assert f"If the text gives no secret number for the {key}, answer none. What is" in s.prompt  # every sample
        said = s.prompt.count(f"The secret number for the {key} is")
        assert all(f"for the {k} is {v}." in s.prompt for k, v in zip(s.meta["distractor_keys"],
                                                                       s.meta["distractor_values"]))
        if s.meta["absent"]:
            assert s.target == "none" and s.needle_token_offset is None and said == 1  # only the answer prefix
        else:
            assert said == 2 and s.needle_token_offset is not None and s.target in s.prompt
    assert task.name == "niah-multikey-absent"


@pytest.mark.parametrize("extract", [first_number, first_word])
def test_absent_scoring_wants_none_and_no_invented_value(extract):
    """Numbers: any number beside "none" is invented; words: a value word of the context beside it is borrowed."""
    value = "5554820" if extract is first_number else "pelican"
    kw = {"context_values": [value, "walnut"], "shaped": extract is first_number}
    assert score_absent(" none.", "none", extract, **kw).correct
    assert score_absent(" None, there is no such number.", "none", extract, **kw).correct
    hedged = score_absent(f" none, or maybe {value}", "none", extract, **kw)
    assert hedged.lenient and not hedged.correct and hedged.value == 0.0
    assert score_absent(f" {value}.", "none", extract, **kw).value == 0.0
    assert score_absent(" None.", value, extract, **kw).value == 0.0
    assert score_absent(f" {value}.", value, extract, **kw).correct
    late = score_absent(f" none. Well, {value}", value, extract, **kw)
    assert late.lenient and not late.correct
    if extract is first_number:
        assert not score_absent(" none, maybe 1234567", "none", extract, **kw).correct  # invented, not borrowed


def test_ordinal_asks_the_kth_value_in_reading_order(smollm2_tokenizer):
    task, samples = _samples(smollm2_tokenizer, "niah-multikey-ordinal", n=12)
    asked = set()
    for s in samples:
        key, k = s.meta["key"], s.meta["ordinal"]
        found = re.findall(rf"One of the secret numbers for the {key} is (\d+)\.", s.prompt)
        assert found == s.meta["copies_in_order"] and len(found) == 3  # reading order, all three present
        assert s.target == found[k - 1] and f"What is the {ORDINALS[k - 1]} of them" in s.prompt
        ids = smollm2_tokenizer(s.prompt)["input_ids"]
        assert s.target in smollm2_tokenizer.decode(ids[s.needle_token_offset:s.needle_token_offset + 20])
        asked.add(k)
        listing = ", ".join(x for x in found if x != s.target) + ", " + s.target
        sc = task.score(s, " " + listing)
        assert sc.lenient and not sc.correct and sc.value == 0.0 and sc.metric == "first-answer"
        assert task.score(s, f" {s.target}.").value == 1.0
    assert asked == {1, 2, 3}


def test_copy_then_compute_tells_retrieval_from_arithmetic(smollm2_tokenizer):
    task, samples = _samples(smollm2_tokenizer, "niah-multikey-compute", n=4)
    for s in samples:
        v, plus = s.meta["references"]
        assert int(plus) == int(v) + 1 and s.target == f"{v}, {plus}" and f"for the {s.meta['key']} is {v}." in s.prompt
        both = task.score(s, f" {v}, and plus one it is {plus}.")
        assert both.correct and both.value == 1.0
        assert task.score(s, f" {v}, and plus one it is {int(v) + 2}.").value == 0.5  # found, miscounted
        assert task.score(s, " 1234567, plus one 1234568.").value == 0.0
        swapped = task.score(s, f" {plus}, {v}")
        assert swapped.value == 1.0 and not swapped.correct
    assert task.max_new_tokens == 32


def test_variants_refuse_what_they_cannot_mean():
    cfg = TaskConfig(lengths=(1024,))
    for kw, msg in [({"absent_rate": 1.5}, "absent_rate"), ({"copies": 11}, "copies"),
                    ({"copies": 2, "compute": True}, "one of"), ({"compute": True, "value_kind": "words"}, "numbers")]:
        with pytest.raises(UserError, match=msg):
            MultiKeyNeedle(cfg, **kw)


def test_the_plain_task_is_unchanged_by_the_variants(smollm2_tokenizer):
    """The plain task writes no variant's words (its exact prompts are pinned by hash in test_retrieval_tasks)."""
    _, samples = _samples(smollm2_tokenizer, "niah-multikey", n=4)
    for s in samples:
        assert "answer none" not in s.prompt and "absent" not in s.meta
        assert s.prompt.endswith(f"What is the secret number for the {s.meta['key']}? The secret number for the "
                                 f"{s.meta['key']} is")
