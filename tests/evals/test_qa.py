"""`qa`: the synthetic set and a user's SQuAD / HotpotQA file, fitted token-exactly, the gold document at its depth,
scored with RULER's string_match_part; a bad file is one line."""
from __future__ import annotations

import json
import math
import re

import pytest

from evals.base import FILL_TOLERANCE, needle_span
from evals.qa import QAConfig, QATask, read_qa_file
from harness.errors import UserError

SQUAD_ROWS = [  # flat rows as on the Hub; made-up facts, so no model knows them
    {"id": str(i), "title": f"Place {i}", "context": f"The harbour of Quillmoor{i} opened in {1700 + i}. Its first "
     f"keeper was a sailor called Brannoc{i}, who kept {i + 3} boats and a lamp of green glass. " * 2,
     "question": f"Who was the first keeper of the harbour of Quillmoor{i}?",
     "answers": {"text": [f"Brannoc{i}", f"a sailor called Brannoc{i}"], "answer_start": [0, 0]}}
    for i in range(12)] + [
    {"id": "x", "title": "Place x", "context": "Nothing is known about this place.", "question": "Who built it?",
     "answers": {"text": [], "answer_start": []}}]  # SQuAD 2.0: unanswerable, skipped


def _hotpot(i: int) -> dict:
    paras = [[f"Title {i}-{j}", [f"Sentence {j} about thing {i}. ", f"The colour of thing {i}-{j} is tone{i}{j}. "]]
             for j in range(4)]
    return {"_id": str(i), "question": f"What colour is thing {i}-2, given thing {i}-0?", "answer": f"tone{i}2",
            "context": paras, "supporting_facts": [[f"Title {i}-0", 1], [f"Title {i}-2", 1]], "type": "bridge",
            "level": "hard"}


def _check_fit(tok, s, length):
    budget = length - s.max_new_tokens
    assert math.ceil((1 - FILL_TOLERANCE) * budget) <= s.tokens <= budget
    assert s.tokens == len(tok(s.prompt)["input_ids"])


def test_synthetic_qa_fits_puts_the_gold_document_at_its_depth_and_only_it_answers(smollm2_tokenizer):
    tok = smollm2_tokenizer
    task = QATask(QAConfig(lengths=(1024, 4096), depths=(0.0, 0.5, 1.0), samples=2))
    positions = {}
    for cell in task.cells():
        s = task.formatted(tok, *cell)
        _check_fit(tok, s, cell[0])
        town = re.findall(r"\b([A-Z]\w+)(?= founded| lie| best|\?)", s.meta["question"])[-1]
        titles = re.findall(r"^Document: (\w+)$", s.prompt, flags=re.M)
        assert titles.count(town) == 1 and len(titles) == s.meta["documents"] == s.meta["distinct_documents"]
        positions[cell] = titles.index(town) / (len(titles) - 1)
        ids = tok(s.prompt)["input_ids"]
        assert tok.decode(ids[s.needle_token_offset:]).startswith(f"Document: {town}\n")
        gold = s.prompt[s.prompt.index(f"Document: {town}\n"):].split("\n\n")[0]
        assert s.target in gold  # the answer is in the gold document ...
        span = needle_span(tok, s)
        assert span is not None and s.target in tok.decode(ids[span[0]:span[1]])  # ... where diagnostics look
        assert s.prompt.endswith(f"Question: {s.meta['question']} Answer:")
        assert s == task.formatted(tok, *cell)  # seeded: the same cell is the same prompt
    for (n, d, i), at in positions.items():
        assert abs(at - d) <= 1 / 8, (n, d, i, at)
    grown = QATask(QAConfig(lengths=(1024,), depths=(0.5, 0.25), samples=3))
    assert grown.formatted(tok, 1024, 0.5, 1) == task.formatted(tok, 1024, 0.5, 1)  # growing the grid changes nothing


def test_synthetic_questions_ask_about_every_fact(smollm2_tokenizer):
    task = QATask(QAConfig(lengths=(1024,), depths=(0.5,), samples=24))
    asked = {s.meta["question"].split()[0] + " " + s.meta["question"].split()[1]
             for s in (task.formatted(smollm2_tokenizer, *c) for c in task.cells())}
    assert asked == {"Who founded", "In which", "On which", "What is"}


def test_squad_rows_nested_squad_and_hotpotqa_read_the_same_way(tmp_path, smollm2_tokenizer):
    flat = tmp_path / "squad.jsonl"
    flat.write_text("".join(json.dumps(r) + "\n" for r in SQUAD_ROWS))
    nested = tmp_path / "squad-v2.json"
    nested.write_text(json.dumps({"version": "v2.0", "data": [
        {"title": r["title"], "paragraphs": [{"context": r["context"], "qas": [
            {"id": r["id"], "question": r["question"], "is_impossible": not r["answers"]["text"],
             "answers": [{"text": t, "answer_start": 0} for t in r["answers"]["text"]]}]}]} for r in SQUAD_ROWS]}))
    for f in (flat, nested):
        questions, pool, kind = read_qa_file(str(f))
        assert kind == "squad" and len(questions) == 12 and len(pool) == 13  # the unanswerable one is a distractor
        assert questions[3].answers == ("Brannoc3", "a sailor called Brannoc3")
        assert questions[3].gold[0].startswith("Document: Place 3\nThe harbour of Quillmoor3")
    hotpot = tmp_path / "hotpot.json"  # the original JSON: [[title, [sentences]], ...], which Arrow cannot type
    hotpot.write_text(json.dumps([_hotpot(i) for i in range(5)]))
    hub = tmp_path / "hotpot.jsonl"  # Hub rows: context {"title": [...], "sentences": [[...]]}
    hub.write_text("".join(json.dumps({**h, "context": {"title": [t for t, _ in h["context"]],
                                                       "sentences": [s for _, s in h["context"]]},
                                       "supporting_facts": {"title": [t for t, _ in h["supporting_facts"]],
                                                            "sent_id": [k for _, k in h["supporting_facts"]]}}) + "\n"
                           for h in (_hotpot(i) for i in range(5))))
    for f in (hotpot, hub):
        questions, pool, kind = read_qa_file(str(f))
        assert kind == "hotpotqa" and len(questions) == 5 and len(pool) == 20
        assert questions[1].answers == ("tone12",)
        assert sorted(d.split("\n")[0] for d in questions[1].gold) == ["Document: Title 1-0", "Document: Title 1-2"]


def test_a_file_task_keeps_its_gold_documents_and_repeats_distractors_when_short(tmp_path, smollm2_tokenizer):
    tok = smollm2_tokenizer
    f = tmp_path / "hotpot.json"
    f.write_text(json.dumps([_hotpot(i) for i in range(5)]))
    task = QATask(QAConfig(lengths=(2048,), depths=(0.25,), samples=3, qa_file=str(f)))
    for cell in task.cells():
        s = task.formatted(tok, *cell)
        _check_fit(tok, s, 2048)
        i = int(re.search(r"thing (\d+)-2", s.meta["question"]).group(1))
        assert s.target == f"tone{i}2" and s.meta["gold_documents"] == 2
        assert s.prompt.count(f"Document: Title {i}-0\n") == s.prompt.count(f"Document: Title {i}-2\n") == 1
        assert s.meta["distinct_documents"] < s.meta["documents"]  # 20 documents cannot fill 2k: repeated
        assert s.haystack == "hotpotqa"


def test_bad_files_are_one_line(tmp_path, smollm2_tokenizer):
    with pytest.raises(UserError, match="no such file"):
        read_qa_file(str(tmp_path / "missing.json"))
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(UserError, match="json, .jsonl or .parquet"):
        read_qa_file(str(tmp_path / "x.txt"))
    (tmp_path / "cols.jsonl").write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    with pytest.raises(UserError, match="neither SQuAD .* columns: completion, prompt"):
        read_qa_file(str(tmp_path / "cols.jsonl"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UserError, match="not JSON"):
        read_qa_file(str(tmp_path / "broken.json"))
    (tmp_path / "empty.jsonl").write_text(json.dumps({**SQUAD_ROWS[-1]}) + "\n")
    with pytest.raises(UserError, match="no answerable question"):
        read_qa_file(str(tmp_path / "empty.jsonl"))


def test_scoring_is_any_reference_case_insensitive():
    task = QATask(QAConfig(lengths=(1024,)))
    from evals.base import Sample

    s = Sample(task="qa", context_length=1024, depth=0.5, sample_id=0, seed=0, prompt="", target="Brannoc3",
               tokens=0, max_new_tokens=32, needle_token_offset=None, haystack="squad",
               meta={"references": ["Brannoc3", "a sailor called Brannoc3"]})
    assert task.score(s, " Brannoc3.").correct
    lenient = task.score(s, " the sailor BRANNOC3")
    assert lenient.value == 1.0 and lenient.lenient and not lenient.correct
    assert task.score(s, " Quillmoor").value == 0.0
