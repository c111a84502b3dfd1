"""The prompt cache: a second build of a cell is read back, equal to a fresh build; anything that changes the text
(settings, cell, files read, tokenizer, generators) changes the key; a torn file is rebuilt; off means off."""
from __future__ import annotations

import dataclasses
import json

import pytest

from evals import cache
from evals.base import TaskConfig
from evals.registry import make_task


@pytest.fixture
def prompts(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGCTX_PROMPT_CACHE_DIR", str(tmp_path / "prompts"))
    return tmp_path / "prompts"


def _files(folder):
    return sorted(folder.rglob("*.json"))


def _same(a, b):
    """Equal as records are: JSON turns tuples in meta into lists."""
    return json.dumps(dataclasses.asdict(a), sort_keys=True) == json.dumps(dataclasses.asdict(b), sort_keys=True)


@pytest.mark.parametrize("name", ["passkey", "niah-multikey", "kv", "vt", "cwe", "qa"])
def test_a_second_build_is_a_hit_equal_to_a_fresh_one(name, smollm2_tokenizer, prompts, monkeypatch):
    from evals.registry import make_config

    cfg = make_config(name, {"lengths": (1024,)}, known_only=True)
    task = make_task(name, cfg)
    cell = next(iter(task.cells()))
    first = task.formatted(smollm2_tokenizer, *cell)
    assert len(_files(prompts)) == 1
    calls = []
    monkeypatch.setattr(type(task), "build_formatted", lambda *a: calls.append(a))  # a hit builds nothing
    again = make_task(name, cfg).formatted(smollm2_tokenizer, *cell)
    assert calls == [] and _same(again, first)
    monkeypatch.undo()
    monkeypatch.setenv("LONGCTX_PROMPT_CACHE", "off")
    assert _same(make_task(name, cfg).formatted(smollm2_tokenizer, *cell), first)


def test_whatever_changes_the_text_changes_the_key(smollm2_tokenizer, tmp_path, prompts):
    tok = smollm2_tokenizer
    base = make_task("passkey", TaskConfig(lengths=(1024,)))
    k = cache.key(base, tok, 1024, 0.5, 0)
    assert k == cache.key(make_task("passkey", TaskConfig(lengths=(1024, 2048), depths=(0.5, 0.1), samples=3)),
                          tok, 1024, 0.5, 0)  # the grid around the cell does not matter
    others = {cache.key(base, tok, 2048, 0.5, 0), cache.key(base, tok, 1024, 0.25, 0),
              cache.key(base, tok, 1024, 0.5, 1),
              cache.key(make_task("passkey", TaskConfig(lengths=(1024,), seed=1)), tok, 1024, 0.5, 0),
              cache.key(make_task("passkey", TaskConfig(lengths=(1024,), prompt_format="chat")), tok, 1024, 0.5, 0),
              cache.key(make_task("niah-multikey-words", TaskConfig(lengths=(1024,))), tok, 1024, 0.5, 0),
              cache.key(make_task("niah-multikey", TaskConfig(lengths=(1024,))), tok, 1024, 0.5, 0)}
    assert k not in others and len(others) == 7
    text = tmp_path / "essay.txt"
    text.write_text("One sentence here. Another one there. " * 50)
    essay = make_task("needle", TaskConfig(lengths=(1024,), haystack="essay", haystack_file=str(text)))
    before = cache.key(essay, tok, 1024, 0.5, 0)
    text.write_text("A different text altogether. " * 60)
    assert cache.key(essay, tok, 1024, 0.5, 0) != before  # the file's content, not its name


def test_another_tokenizer_is_another_key(smollm2_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    smollm2_tokenizer.save_pretrained(tmp_path / "t")
    (tmp_path / "t" / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    other = AutoTokenizer.from_pretrained(tmp_path / "t")
    twin = AutoTokenizer.from_pretrained(tmp_path / "t")
    task = make_task("passkey", TaskConfig(lengths=(1024,)))
    assert cache.key(task, other, 1024, 0.5, 0) != cache.key(task, smollm2_tokenizer, 1024, 0.5, 0)
    assert cache.key(task, other, 1024, 0.5, 0) == cache.key(task, twin, 1024, 0.5, 0)


def test_a_torn_or_foreign_file_is_rebuilt(smollm2_tokenizer, prompts):
    task = make_task("passkey", TaskConfig(lengths=(1024,)))
    fresh = task.formatted(smollm2_tokenizer, 1024, 0.5, 0)
    (path,) = _files(prompts)
    path.write_text(path.read_text()[:100])
    assert _same(task.formatted(smollm2_tokenizer, 1024, 0.5, 0), fresh)
    path.write_text(json.dumps({"something": "else"}))
    assert _same(task.formatted(smollm2_tokenizer, 1024, 0.5, 0), fresh)
    assert not list(prompts.rglob("*.tmp"))


def test_an_unwritable_cache_costs_time_not_the_run(smollm2_tokenizer, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LONGCTX_PROMPT_CACHE_DIR", str(blocker / "prompts"))
    s = make_task("passkey", TaskConfig(lengths=(1024,))).formatted(smollm2_tokenizer, 1024, 0.5, 0)
    assert s.tokens > 900
