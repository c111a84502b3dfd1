"""--thinking-budget: the budget is thinking + answer inside each length, the scored answer is what follows the
thinking block, and a block never closed is recorded as truncated and counted by the report."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil

import pytest

from evals.base import FILL_TOLERANCE, TaskConfig, split_thinking
from evals.registry import make_task
from harness.errors import UserError


def test_split_thinking_reads_the_answer_after_the_block():
    assert split_thinking("Q? A:", " <think>maybe 12345</think> The key is 67890.") == (" The key is 67890.", False)
    assert split_thinking("Q? A:", "<thinking>a</thinking>x</thinking> 5") == (" 5", False)  # the last close
    assert split_thinking("Q? A:", " <think>the key could be 12345, or") == ("", True)  # never closed
    assert split_thinking("...<|im_start|>assistant\n<think>\n", "the key could be 12345") == ("", True)  # opened by
    assert split_thinking("Q? A:", " 12345.") == (" 12345.", None)  # no thinking block: all answer      the template
    assert split_thinking("<think>x</think> earlier turn. Q? A:", " 12345.") == (" 12345.", None)


def test_a_thinking_budget_is_taken_from_the_prompt_and_added_to_the_generation(smollm2_tokenizer):
    tok = smollm2_tokenizer
    plain = make_task("passkey", TaskConfig(lengths=(1024,)))
    think = make_task("passkey", TaskConfig(lengths=(1024,), thinking_tokens=200))
    a, b = plain.formatted(tok, 1024, 0.5, 0), think.formatted(tok, 1024, 0.5, 0)
    assert b.max_new_tokens == a.max_new_tokens + 200 and b.meta["thinking_tokens"] == 200
    for s in (a, b):
        budget = 1024 - s.max_new_tokens
        assert math.ceil((1 - FILL_TOLERANCE) * budget) <= s.tokens <= budget
    assert b.tokens < a.tokens - 190 and b.target == a.target
    chat = make_task("qa", __import__("evals.qa", fromlist=["x"]).QAConfig(lengths=(1024,), thinking_tokens=100,
                                                                             prompt_format="chat"))
    c = chat.formatted(tok, 1024, 0.5, 0)
    assert c.tokens + c.max_new_tokens <= 1024 and c.max_new_tokens == 132


@pytest.mark.parametrize("bad", [-1, 1024])
def test_an_impossible_thinking_budget_is_one_line(bad):
    with pytest.raises(UserError, match="thinking-budget"):
        TaskConfig(lengths=(1024,), thinking_tokens=bad)


def test_the_loop_scores_the_answer_not_the_thinking_and_records_truncation(tiny_llama_path, tmp_path):
    """A key written only inside a thinking block that never closes is no answer (a fake runner scripts the
    outputs: the loop, records and report are under test here)."""
    from harness.experiment import Experiment, run
    from harness.records import read_records
    from harness.runners.fake import ScriptedRunner
    from reports.aggregate import accuracy_by_length

    class Thinker(ScriptedRunner):  # the first request of the batch (depth 0.25) never closes its thinking
        def generate(self, requests):
            out = []
            for r, g in zip(requests, super().generate(requests)):
                key = re.search(r" is (\d{5,7})\.", r.prompt).group(1)
                text = f"<think>It says {key}, so" if r.request_id == "0" else f"<think>It says {key}</think> {key}."
                out.append(dataclasses.replace(g, text=text))
            return out

    exp = Experiment(task="passkey", task_config=TaskConfig(lengths=(512,), depths=(0.25, 0.75), thinking_tokens=64),
                     model=tiny_llama_path, runner="fake", out=str(tmp_path / "t"))
    run(exp, log=lambda *_: None, progress=False, runner=Thinker())
    recs = sorted(read_records(tmp_path / "t"), key=lambda r: r.depth)
    assert [r.truncated for r in recs] == [True, False]
    assert [r.correct for r in recs] == [False, True]  # the key in the unclosed thinking does not count
    assert all(r.max_new_tokens == 12 + 64 for r in recs)
    row = accuracy_by_length(recs)[0]
    assert row["truncated"] == 1
    ident = json.loads((tmp_path / "t" / "run.json").read_text())
    assert ident["identity"]["task_config"]["thinking_tokens"] == 64


def test_a_real_model_that_opens_a_block_and_never_closes_it_is_truncated(tiny_llama_path, tmp_path):
    """The random tiny Llama behind a chat template that opens <think>: it never writes the closing tag within the
    budget, so every record says truncated and scores 0 (hf runner, real generation)."""
    from harness.experiment import Experiment, run
    from harness.records import read_records

    model = tmp_path / "thinker"
    shutil.copytree(tiny_llama_path, model)
    cfg_path = model / "tokenizer_config.json"  # the template: in chat_template.jinja (transformers 5) or here
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    (model / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")
    exp = Experiment(task="passkey", task_config=TaskConfig(lengths=(512,), thinking_tokens=16, prompt_format="chat",
                                                            answer_prefix=False),
                     model=str(model), runner="hf", out=str(tmp_path / "r"))
    run(exp, log=lambda *_: None, progress=False)
    (rec,) = read_records(tmp_path / "r")
    assert rec.prediction and (tmp_path / "r" / "run.json").exists()
    assert rec.error is None and rec.truncated is True and rec.score == 0.0 and rec.max_new_tokens == 28
    assert rec.new_tokens == 28 and "</think>" not in rec.prediction
