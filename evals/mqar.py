"""Multi-query associative recall (MQAR; after Arora et al. 2023, "Zoology: Measuring and Improving Recall in
Efficient Language Models"): the context stores key → value pairs and the question asks for several keys' values at
once. Zoology showed that this recall, not perplexity, separates attention from fixed-state recurrent models: a
model must hold every pair it has seen, since it cannot know which ones will be asked.

Here the pairs form one contiguous block of lines ("pelican 042"), inserted as a single needle into the task's
haystack (noise or essay) at the requested depth. Keeping the block in one piece and the filler around it makes the
two axes independent: the number of stored pairs (`num_pairs`, what a fixed state must hold) and the context length
(how much filler lies between the block and the question, what a fixed state must carry it through). Keys are
distinct words from `evals.ruler.WORDS` (chosen to be absent from the noise filler), values distinct three-digit
numbers written with leading zeros; `num_queries` distinct keys of the block are asked in a seeded random order.

Scoring: `score` is RULER's all-references fraction (each queried value occurring in the output counts), `lenient`
that every value occurs, `correct` (strict) that the first `num_queries` three-digit numbers of the output are the
values in the order asked.

`answer="keyed"` (the `-keyed` presets) asks for each key with its value ("goblet 721, igloo 566"), the references
are those pairs and the strict reading compares the output's first "word ddd" pairs with them, in order. Each answer
then follows its own key, as each query's value does in Zoology's MQAR; with bare values a model must also map the
question's list of keys onto positions in its answer, which the ALiBi baseline could not do while finding 0.94 of
one-key questions and 0.99 of values after teacher-forced keys (docs/RESULTS.md §7.6).
"""
from __future__ import annotations

import random
import re

from evals.base import Sample, TaskConfig
from evals.ruler import WORDS, MultiNeedleTask, NeedleSet, join_phrase
from evals.scoring import Score, score_references_in_order, three_digit_numbers
from harness.errors import UserError

KEYS = WORDS  # 100 distinct single words


class MultiQueryRecall(MultiNeedleTask):
    """A block of `num_pairs` "key value" lines in the haystack; `num_queries` of the keys asked at once.

    Generation budget (the values joined by ", " plus a full stop, SmolLM2's tokenizer): every three-digit value
    takes exactly 5 tokens (a space or comma, three digits), so four queries take 20; the budget is 5 per query plus
    4 spare (24 for every preset).
    """

    name = "mqar"
    preamble = ("Somewhere in the irrelevant text below is a list of words, each followed by its number. "
                "Find the list and memorize it.\n")
    PRESETS = {
        "mqar": {},
        "mqar-4": {"num_pairs": 4},
        "mqar-16": {"num_pairs": 16},
        "mqar-64": {"num_pairs": 64},
        "mqar-keyed": {"answer": "keyed"},
        "mqar-4-keyed": {"num_pairs": 4, "answer": "keyed"},
        "mqar-16-keyed": {"num_pairs": 16, "answer": "keyed"},
        "mqar-64-keyed": {"num_pairs": 64, "answer": "keyed"},
    }
    ANSWERS = ("values", "keyed")

    def __init__(self, config: TaskConfig, *, num_pairs: int = 8, num_queries: int = 4, answer: str = "values"):
        if not 1 <= num_pairs <= len(KEYS):
            raise UserError(f"num_pairs must be in [1, {len(KEYS)}] (one distinct key word each), got {num_pairs}")
        if not 1 <= num_queries <= num_pairs:
            raise UserError(f"num_queries must be in [1, num_pairs = {num_pairs}], got {num_queries}")
        if answer not in self.ANSWERS:
            raise UserError(f"answer must be one of {', '.join(self.ANSWERS)}, got {answer!r}")
        super().__init__(config, num_pairs=num_pairs, num_queries=num_queries, answer=answer)

    def budget(self) -> int:
        # keyed: a key word takes at most 4 of SmolLM2's tokens with its leading space (tests check every key)
        return (9 if self.params["answer"] == "keyed" else 5) * self.params["num_queries"] + 4

    def make_needles(self, rng: random.Random, depth: float) -> NeedleSet:
        n, q = self.params["num_pairs"], self.params["num_queries"]
        keys = rng.sample(KEYS, n)
        values = [f"{v:03d}" for v in rng.sample(range(1000), n)]
        asked = rng.sample(range(n), q)  # distinct, in random order (not the block's)
        # Own lines: a newline before the first pair and after the last keeps the block apart from the filler.
        block = "\n" + "".join(f"{k} {v}\n" for k, v in zip(keys, values))
        queries = [keys[i] for i in asked]
        keyed = self.params["answer"] == "keyed"
        question = question_for(queries, keyed)
        references = [f"{keys[i]} {values[i]}" if keyed else values[i] for i in asked]
        return NeedleSet(needles=[(block, depth)], question=question, references=references,
                         anchor=0, meta={"keys": keys, "values": values, "queries": queries})

    def score(self, sample: Sample, prediction: str) -> Score:
        extract = keyed_pairs if self.params["answer"] == "keyed" else three_digit_numbers
        return score_references_in_order(prediction, sample.meta["references"], extract_all=extract)


def question_for(queries: list[str], keyed: bool) -> str:
    """The question asking for `queries`' numbers, in that order (keyed: each word with its number)."""
    if len(queries) == 1:
        return (f"\nWhat is the number of {queries[0]}? Answer with the word and its number:" if keyed else
                f"\nWhat is the number of {queries[0]}? The number is")
    return (f"\nWhat are the numbers of {join_phrase(queries)}? Answer with each word and its number, in that order:"
            if keyed else f"\nWhat are the numbers of {join_phrase(queries)}, in that order? The numbers are")


def keyed_pairs(prediction: str) -> list[str]:
    """Every "word ddd" pair, in order ('goblet 721, igloo 56, lake 566.' → ['goblet 721'])."""
    return [f"{w} {d}" for w, d in re.findall(r"\b([a-z]+) (\d{3})\b(?!\d)", prediction)]
