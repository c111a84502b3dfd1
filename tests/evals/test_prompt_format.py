"""Chat prompts: the tokenizer's own template around every task's context and question, fitted token-exactly, the
answer's opening words after the assistant header (RULER's convention) or dropped."""
import json
import subprocess
import sys

import pytest

from evals.base import ChatFormat, split_answer_prefix
from evals.registry import make_config, make_task, task_names

TASKS = sorted(set(task_names()) - {"perplexity"})


def _task(name, n=2048, **kw):
    return make_task(name, make_config(name, {"lengths": (n,), "depths": (0.5,), **kw}, known_only=True))


@pytest.mark.parametrize("name", TASKS)
def test_every_task_fits_its_chat_prompt_and_keeps_its_needle(smollm2_tokenizer, name):
    tok = smollm2_tokenizer
    base = _task(name).formatted(tok, 2048, 0.5, 0)
    chat = _task(name, prompt_format="chat").formatted(tok, 2048, 0.5, 0)
    fmt = ChatFormat.of(tok)
    ask, prefix = split_answer_prefix(base.prompt)
    assert prefix and "?" not in prefix and len(prefix) < 120  # every task ends in a question and its answer opening
    assert chat.prompt.startswith(fmt.head) and chat.prompt.endswith(fmt.tail + prefix)
    assert chat.tokens == len(tok(chat.prompt)["input_ids"])
    budget = 2048 - chat.max_new_tokens
    assert 0.98 * budget <= chat.tokens <= budget
    assert chat.target == base.target and chat.meta["prompt_format"] == "chat"
    if base.needle_token_offset is not None:  # the offset names the same text in both prompts
        ids_b, ids_c = tok(base.prompt)["input_ids"], tok(chat.prompt)["input_ids"]
        b, c = base.needle_token_offset, chat.needle_token_offset
        assert ids_c[c:c + 6] == ids_b[b:b + 6]


def test_without_the_answer_prefix_the_prompt_ends_at_the_assistant_header(smollm2_tokenizer):
    s = _task("passkey", prompt_format="chat", answer_prefix=False).formatted(smollm2_tokenizer, 2048, 0.5, 0)
    assert s.prompt.endswith(ChatFormat.of(smollm2_tokenizer).tail)
    assert s.prompt.rstrip().endswith("assistant")  # SmolLM2's template: <|im_start|>assistant\n


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True)


def test_chat_runs_end_to_end_and_is_part_of_the_identity(tmp_path, tiny_llama_path):
    base, chat = tmp_path / "base", tmp_path / "chat"
    assert _cli("passkey", "-m", tiny_llama_path, "-l", "1k", "--no-progress", "-o", str(base)).returncode == 0
    res = _cli("passkey", "-m", tiny_llama_path, "-l", "1k", "--prompt-format", "chat", "--no-progress", "-o",
               str(chat))
    assert res.returncode == 0, res.stderr
    ident = {d: json.loads((d / "run.json").read_text())["identity"]["task_config"] for d in (base, chat)}
    assert "prompt_format" not in ident[base] and ident[chat]["prompt_format"] == "chat"  # older runs still resume
    res = _cli("passkey", "-m", tiny_llama_path, "-l", "1k", "--prompt-format", "chat", "--no-progress", "-o",
               str(base))
    assert res.returncode == 2, res.stderr  # another format is another identity


def test_chat_on_a_tokenizer_without_a_template_is_one_line(tmp_path, tiny_llama_path):
    import shutil

    path = tmp_path / "m"
    shutil.copytree(tiny_llama_path, path)
    cfg = json.loads((path / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (path / "tokenizer_config.json").write_text(json.dumps(cfg))
    for f in path.glob("chat_template.*"):
        f.unlink()
    res = _cli("passkey", "-m", str(path), "-l", "1k", "--prompt-format", "chat", "--no-progress", "-o",
               str(tmp_path / "r"))
    assert res.returncode == 2 and "has no chat template" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
