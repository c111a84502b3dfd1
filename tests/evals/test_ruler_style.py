"""--style ruler: RULER's own NIAH wording (needle, question, answer prefix) and noise haystack, pinned to the format
of RULER's niah template, for the tasks both have; every other task refuses it in one line."""
from __future__ import annotations

import re

import pytest

from evals.base import TaskConfig
from evals.registry import make_task
from harness.errors import UserError

NEEDLE = r"One of the special magic {kind} for ([a-z]+-[a-z]+) is: ([0-9a-f-]+|[a-z]+)\."


def _sample(tok, name, **kw):
    task = make_task(name, TaskConfig(lengths=(1024,), depths=(0.1,), style="ruler", max_new_tokens=160, **kw))
    task.check(tok)
    return task.formatted(tok, 1024, 0.1, 0)  # needles at 0.1, 0.35, 0.6, 0.85: the haystack opens the text


def test_multikey_in_rulers_words(smollm2_tokenizer):
    s = _sample(smollm2_tokenizer, "niah-multikey")
    assert s.prompt.startswith("Some special magic numbers are hidden within the following text. Make sure to "
                               "memorize it. I will quiz you about the numbers afterwards.\nThe grass is green. The "
                               "sky is blue. The sun is yellow. Here we go. There and back again. The grass is green.")
    needles = re.findall(NEEDLE.format(kind="numbers"), s.prompt)
    assert len(needles) == 4 and all(re.fullmatch(r"\d{7}", v) for _, v in needles)
    key = s.meta["keys"][0]
    assert s.prompt.endswith(f"\nWhat are all the special magic numbers for {key} mentioned in the provided text? "
                             f"The special magic numbers for {key} mentioned in the provided text are")
    assert dict(needles)[key] == s.target
    assert "The lake is calm" not in s.prompt  # RULER's noise, not longctx's


def test_multiquery_and_multivalue_in_rulers_words(smollm2_tokenizer):
    q = _sample(smollm2_tokenizer, "niah-multiquery")
    a, b, c, d = q.meta["keys"]
    assert f"for {a}, {b}, {c}, and {d} mentioned in the provided text?" in q.prompt
    found = dict(re.findall(NEEDLE.format(kind="numbers"), q.prompt))
    assert q.meta["references"] == [found[k] for k in (a, b, c, d)]
    v = _sample(smollm2_tokenizer, "niah-multivalue-words")
    values = re.findall(NEEDLE.format(kind="words"), v.prompt)
    assert len(values) == 4 and len({k for k, _ in values}) == 1
    assert v.meta["references"] == [w for _, w in values]  # reading order
    assert v.prompt.endswith("mentioned in the provided text are")


def test_the_chat_format_wraps_rulers_question(smollm2_tokenizer):
    s = _sample(smollm2_tokenizer, "niah-multikey", prompt_format="chat")
    assert "mentioned in the provided text?<|im_end|>" in s.prompt
    assert s.prompt.endswith("assistant\nThe special magic numbers for "
                             f"{s.meta['keys'][0]} mentioned in the provided text are")


@pytest.mark.parametrize("name", ["passkey", "needle", "kv", "vt", "niah-multikey-absent"])
def test_a_task_without_rulers_wording_refuses_the_style(smollm2_tokenizer, name):
    task = make_task(name, TaskConfig(lengths=(1024,), style="ruler"))
    with pytest.raises(UserError, match="--style ruler is not available for this task"):
        task.check(smollm2_tokenizer)


def test_the_default_style_keeps_older_run_identities():
    from harness.experiment import OPT_IN

    assert OPT_IN["style"] == "longctx"
    with pytest.raises(UserError, match="--style 'rular'"):
        TaskConfig(lengths=(1024,), style="rular")
