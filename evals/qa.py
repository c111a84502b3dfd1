"""Question answering over distractor documents (RULER's QA, Hsieh et al. 2024 §3): the documents are the
haystack; one of them (for multi-hop files, the few that support the answer, kept together) holds the answer, the
others are documents of the same kind that do not.

- `qa` with no file: a synthetic set whose documents describe made-up towns (founder, founding year, river, what
  the town is known for, a population and some colour), all from one template with seeded, made-up names. The
  question names the gold document's town, so only that document answers it, and no answer can come from the
  model's memory. CI and the demo use this one.
- `qa` with `--qa-file PATH`: questions and documents from a local file the user gives, read with `datasets`
  (nothing is downloaded). Formats: SQuAD (flat rows context / question / answers, as on the Hub, or the original
  nested `{"data": [...]}` JSON; unanswerable questions are skipped) and HotpotQA (question / answer / context /
  supporting_facts, Hub rows or the original JSON list; the supporting paragraphs are the gold documents).
  Distractors are the file's other documents, in a seeded order, repeated when the file holds too few for the
  length (as RULER does).

The gold document goes to the document slot nearest the requested depth, and its first token is the sample's
needle offset (so diagnostics can measure attention to it). The prompt is fitted token-exactly like the
entry-list tasks (whole documents, traded for others of a closer size to reach 99 % of the budget). Scoring is
RULER's string_match_part: the sample scores 1 when any reference answer occurs in the output (case-insensitive);
strict wants it with exact case as whole words.
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from evals.base import MAX_SAMPLES, Sample, Task, build_entries_prompt
from evals.scoring import Score, score_any_reference
from harness.errors import UserError


@dataclass(frozen=True)
class QAConfig:
    """The grid of the QA task: lengths × depths (where the gold document sits) × samples."""

    lengths: tuple[int, ...]
    depths: tuple[float, ...] = (0.5,)
    samples: int = 1
    seed: int = 0
    qa_file: str | None = None  # a local SQuAD- or HotpotQA-format file; None: the synthetic set
    max_new_tokens: int | None = None  # generation budget, counted inside context_length; None: 32
    prompt_format: str = "base"
    answer_prefix: bool = True
    thinking_tokens: int = 0  # tokens to think in before the answer (--thinking-budget); 0: none

    def __post_init__(self):
        from evals.base import check_grid

        check_grid(self)
        if not self.depths or any(not 0.0 <= d <= 1.0 for d in self.depths):
            raise UserError(f"depths must be fractions in [0, 1], got {list(self.depths)}")
        if len(set(self.lengths)) * len(set(self.depths)) * self.samples > MAX_SAMPLES:
            raise UserError(f"this grid has more than {MAX_SAMPLES:,} samples (fewer --samples, lengths or depths)")
        if self.max_new_tokens is not None and not 1 <= self.max_new_tokens < min(self.lengths):
            raise UserError(f"max_new_tokens must be at least 1 and leave room for a prompt in a "
                            f"{min(self.lengths)}-token context, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Question:
    question: str  # ends in "?"
    answers: tuple[str, ...]  # every accepted answer
    gold: tuple[str, ...]  # the documents that hold the answer (text as it goes into the prompt)


# --- the synthetic set --------------------------------------------------------------------------------------------

_SYLLABLES = ("bar", "dal", "fen", "gor", "hal", "kes", "lin", "mar", "nor", "pel", "quen", "ros", "sel", "tam",
              "ul", "ven", "wis", "yor", "zan", "bri", "cal", "dor", "eth", "fal", "gil", "hur", "ist", "jor", "kal",
              "lom", "mir", "nes", "ost", "pra", "rin", "sol", "tor", "var", "wen", "ald")
_ENDINGS = ("holt", "by", "ford", "mere", "wick", "stead", "ton", "dale", "combe", "ham")
_FIRST = ("Edda", "Tomas", "Ilse", "Bram", "Wenna", "Oskar", "Mira", "Jorund", "Alvie", "Cato", "Runa", "Pieter",
          "Sabine", "Emeric", "Halla", "Ivo", "Leofa", "Mattis", "Nelle", "Oda")
_TRADES = ("miller", "weaver", "blacksmith", "fisherman", "stonemason", "brewer", "shepherd", "carpenter", "potter",
           "merchant")
_GOODS = ("copper kettles", "blue cheese", "woollen blankets", "clay pipes", "cider", "rope", "glass beads",
          "smoked eels", "honey cakes", "lace", "iron nails", "apple brandy", "felt hats", "salt", "barley beer")
_SIZES = ("small", "quiet", "busy", "old", "walled", "hillside", "riverside", "market")
_COLOUR = ("Its church has a {a} tower that can be seen from the {b} road.",
           "A fair is held there every {season}, when traders come from {other}.",
           "The old bridge over the {river} was rebuilt in {year2} after a flood.",
           "Most houses are built of {stone} stone from a quarry north of the town.",
           "The town hall keeps a clock that has run since {year2}.",
           "Its school was opened by the {trade2}s' guild in {year2}.",
           "Travellers from {other} stop there on their way to the coast.")


def _name(rng: random.Random, used: set[str], ending: bool) -> str:
    while True:
        name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 2))) + \
            (rng.choice(_ENDINGS) if ending else rng.choice(_SYLLABLES))
        name = name.capitalize()
        if name not in used:
            used.add(name)
            return name


def synthetic_document(rng: random.Random, used: set[str]) -> tuple[str, dict]:
    """One made-up town's document and its facts (town, founder, year, river, goods)."""
    town, river = _name(rng, used, True), _name(rng, used, False)
    founder = f"{rng.choice(_FIRST)} {_name(rng, used, True)}"
    facts = {"town": town, "founder": founder, "year": str(rng.randint(1150, 1890)), "river": river,
             "goods": rng.choice(_GOODS)}
    text = (f"{town} is a {rng.choice(_SIZES)} town on the river {river}. It was founded in {facts['year']} by "
            f"{founder}, a {rng.choice(_TRADES)}. About {rng.randint(2, 95) * 100} people live there today, and "
            f"the town is best known for its {facts['goods']}.")
    for template in rng.sample(_COLOUR, rng.randint(0, 4)):
        text += " " + template.format(a=rng.choice(("tall", "crooked", "square", "slender")),
                                      b=rng.choice(("northern", "eastern", "southern", "western")),
                                      season=rng.choice(("spring", "summer", "autumn", "winter")),
                                      other=_name(rng, used, True), river=river,
                                      year2=rng.randint(1500, 1990), stone=rng.choice(("grey", "red", "yellow")),
                                      trade2=rng.choice(_TRADES))
    return f"Document: {town}\n{text}", facts


_ASKS = (("founder", "Who founded {town}?"), ("year", "In which year was {town} founded?"),
         ("river", "On which river does {town} lie?"), ("goods", "What is {town} best known for?"))


def synthetic_question(rng: random.Random) -> tuple[Question, set[str]]:
    """A gold document, a question only it answers, and the names used so far (distractors take others)."""
    used: set[str] = set()
    doc, facts = synthetic_document(rng, used)
    field, ask = rng.choice(_ASKS)
    return Question(ask.format(town=facts["town"]), (facts[field],), (doc,)), used


def synthetic_distractors(rng: random.Random, used: set[str]) -> Iterator[str]:
    while True:
        yield synthetic_document(rng, used)[0]


# --- a user's file ------------------------------------------------------------------------------------------------

def _rows(path: Path) -> list[dict]:
    """The file's rows through `datasets` (json / jsonl / parquet; the nested SQuAD JSON through its "data" field),
    with the standard library's JSON reader as the fallback for JSON Arrow cannot type (HotpotQA's original lists
    of [title, sentences] pairs)."""
    import json
    import tempfile

    kind = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}.get(path.suffix.lower())
    if kind is None:
        raise UserError(f"--qa-file {path}: a .json, .jsonl or .parquet file is needed")
    field = None
    if kind == "json":
        with path.open("rb") as f:
            head = f.read(4096).lstrip()
        if head.startswith(b"{") and b'"data"' in head and path.suffix.lower() == ".json":
            field = "data"
    try:
        import datasets

        with tempfile.TemporaryDirectory() as cache:
            ds = datasets.load_dataset(kind, data_files=str(path), field=field, split="train", cache_dir=cache,
                                       keep_in_memory=True) if field else \
                datasets.load_dataset(kind, data_files=str(path), split="train", cache_dir=cache,
                                      keep_in_memory=True)
            return ds.to_list()
    except Exception as e:  # noqa: BLE001 - Arrow's typing errors have many classes; JSON gets a second reader
        if kind != "json":
            raise UserError(f"--qa-file {path}: cannot be read ({str(e).splitlines()[0][:200]})") from None
        try:
            text = path.read_text("utf-8")
            data = json.loads(text) if path.suffix.lower() == ".json" else \
                [json.loads(line) for line in text.splitlines() if line.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError) as e2:
            raise UserError(f"--qa-file {path}: not JSON ({e2})") from None
        return data["data"] if isinstance(data, dict) and field else data if isinstance(data, list) else [data]


def _paragraphs(context) -> list[tuple[str, str]]:
    """HotpotQA's context as (title, text) pairs: Hub rows hold {"title": [...], "sentences": [[...]]}, the
    original JSON [[title, [sentences]], ...]."""
    if isinstance(context, dict):
        return [(t, "".join(s)) for t, s in zip(context["title"], context["sentences"])]
    return [(t, "".join(s)) for t, s in context]


def _doc(title: str, text: str) -> str:
    return f"Document: {title}\n{text.strip()}" if title else f"Document:\n{text.strip()}"


@functools.lru_cache(maxsize=4)
def _read_file(path: str, stamp: float) -> tuple[tuple[Question, ...], tuple[str, ...], str]:
    rows = _rows(Path(path))
    if not rows or not isinstance(rows[0], dict):
        raise UserError(f"--qa-file {path}: no rows")
    keys = set(rows[0])
    questions, pool = [], {}
    if "paragraphs" in keys:  # nested SQuAD
        rows = [{"title": r.get("title", ""), "context": p["context"], "question": q["question"],
                 "answers": {"text": [a["text"] for a in q.get("answers", [])]}}
                for r in rows for p in r["paragraphs"] for q in p["qas"]]
        keys = {"context", "question", "answers"}
    if {"context", "question", "answers"} <= keys:  # SQuAD
        kind = "squad"
        for r in rows:
            doc = _doc(r.get("title") or "", r["context"])
            pool[doc] = None
            answers = r["answers"]["text"] if isinstance(r["answers"], dict) else [a["text"] for a in r["answers"]]
            answers = tuple(dict.fromkeys(a.strip() for a in answers if a and a.strip()))
            if answers:
                questions.append(Question(r["question"].strip(), answers, (doc,)))
    elif {"question", "answer", "context", "supporting_facts"} <= keys:  # HotpotQA
        kind = "hotpotqa"
        for r in rows:
            paragraphs = _paragraphs(r["context"])
            sf = r["supporting_facts"]
            titles = set(sf["title"]) if isinstance(sf, dict) else {t for t, _ in sf}
            docs = [_doc(t, x) for t, x in paragraphs]
            pool.update(dict.fromkeys(docs))
            gold = tuple(d for (t, _), d in zip(paragraphs, docs) if t in titles)
            answer = str(r["answer"]).strip()
            if gold and answer and answer.lower() not in ("yes", "no"):
                questions.append(Question(r["question"].strip(), (answer,), gold))
    else:
        raise UserError(f"--qa-file {path}: neither SQuAD (context, question, answers) nor HotpotQA (question, "
                        f"answer, context, supporting_facts) rows; its columns: {', '.join(sorted(keys))}")
    if not questions:
        raise UserError(f"--qa-file {path}: no answerable question in it")
    questions = [q if q.question.endswith("?") else Question(q.question + "?", q.answers, q.gold) for q in questions]
    return tuple(questions), tuple(pool), kind


def read_qa_file(path: str) -> tuple[tuple[Question, ...], tuple[str, ...], str]:
    """(answerable questions, every distinct document, "squad" or "hotpotqa"): read once per file version."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--qa-file {path}: no such file")
    return _read_file(str(p.resolve()), p.stat().st_mtime)


def file_distractors(rng: random.Random, pool: tuple[str, ...], gold: tuple[str, ...]) -> Iterator[str]:
    """The file's documents other than the gold ones, shuffled, reshuffled for each further pass."""
    others = [d for d in pool if d not in set(gold)]
    if not others:
        raise UserError("--qa-file: every document of the file supports this question; no distractors to draw")
    while True:
        rng.shuffle(others)
        yield from others


# --- the task -----------------------------------------------------------------------------------------------------

class QATask(Task):
    """`qa`: answer a question from the one document (or supporting set) among distractor documents that holds it.

    Generation budget: 32 tokens, RULER's for its QA tasks (SQuAD answers are a few words; a synthetic answer at
    most 8 of SmolLM2's tokens).
    """

    name = "qa"
    config_cls = QAConfig
    head = ("Read the documents below, then answer the question that follows them. Answer with a few words taken "
            "from the documents.\n\n")
    sep = "\n\n"

    def __init__(self, config: QAConfig):
        self.config = config

    @property
    def max_new_tokens(self) -> int:
        return self.config.max_new_tokens or 32

    def cells(self) -> Iterator[tuple[int, float, int]]:
        for n in self.config.lengths:
            for d in self.config.depths:
                for i in range(self.config.samples):
                    yield n, d, i

    def check(self, tokenizer) -> None:
        c = self.config
        if c.qa_file is not None:
            read_qa_file(c.qa_file)
        try:
            self.formatted(tokenizer, min(c.lengths), c.depths[0], 0)
        except UserError as e:
            raise UserError(f"{self.name} at {min(c.lengths)} tokens: {e}") from None

    def tail(self, question: Question) -> str:
        return f"{self.sep}Question: {question.question} Answer:"

    def sample(self, tokenizer, length: int, depth: float, sample_id: int) -> Sample:
        c = self.config
        rng = random.Random(f"{self.name}|{c.seed}|{length}|{depth!r}|{sample_id}|{c.qa_file or 'synthetic'}")
        if c.qa_file is None:
            q, used = synthetic_question(rng)
            stream, source = synthetic_distractors(rng, used), "synthetic"
        else:
            questions, pool, source = read_qa_file(c.qa_file)
            q = questions[rng.randrange(len(questions))]
            stream = file_distractors(rng, pool, q.gold)
        gold = list(q.gold)
        rng.shuffle(gold)
        target = self.sep.join(gold)
        built = build_entries_prompt(tokenizer, self.head, target, stream, self.tail(q),
                                     budget=self.prompt_budget(length), depth=depth, sep=self.sep)
        return Sample(task=self.name, context_length=length, depth=depth, sample_id=sample_id, seed=c.seed,
                      prompt=built.prompt, target=q.answers[0], tokens=built.tokens,
                      max_new_tokens=self.max_new_tokens, needle_token_offset=built.needle_token_offset,
                      haystack=source, meta={"references": list(q.answers), "question": q.question,
                                             "documents": len(built.entries), "gold_documents": len(gold),
                                             "distinct_documents": len(set(built.entries))})

    def score(self, sample: Sample, prediction: str) -> Score:
        return score_any_reference(prediction, list(sample.meta.get("references") or [sample.target]))

