"""The runner protocol: what the experiment loop needs from any inference backend.

A runner is configured by its constructor (its signature is its configuration), declares what it can host in
`capabilities` (checked before any model is loaded), loads one (model, extension) pair, and answers batches of
generation requests. HF is the default; vLLM, the custom-kernel runner and the Mamba runner implement the same
protocol. Runner modules import their heavy dependencies inside methods, so choosing one never imports another.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable


@dataclass(frozen=True)
class Capabilities:
    mechanisms: frozenset[str]  # what it carries out (extensions.base.MECHANISMS); hosts methods needing a subset
    batch_size: int = 1  # requests the loop hands over at once (vLLM batches; HF on CPU gains nothing)
    needs_main_guard: bool = False  # starts worker processes (vLLM)
    scores_tokens: bool = False  # implements token_nll(ids) (perplexity, loglikelihood)
    diagnoses: bool = False  # reads per-head attention rows (--diagnostics; harness.runners.diagnostics)
    notes: str = ""


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    max_new_tokens: int
    request_id: str = ""
    answer: str | None = None  # the gold continuation (" 48213"): its teacher-forced log-probability is measured
    needle: tuple[int, int] | None = None  # [start, end) token span of the needle in the prompt (diagnostics)


@dataclass(frozen=True)
class Generation:
    text: str  # decoded new tokens (special tokens skipped)
    prompt_tokens: int | None  # tokens the model actually consumed (None: the runner cannot tell)
    new_tokens: int
    latency_s: float  # prefill + decode wall time
    prefill_s: float | None = None
    peak_mem_bytes: int | None = None
    mem_kind: str | None = None
    cache_bytes: int | None = None  # KV cache (or recurrent state) held at the end of the request
    cached_tokens: int | None = None  # prompt tokens served from a prefix cache (vLLM)
    kernel: str | None = None  # attention implementation(s) that ran: sdpa / cpu / triton / flash-attn / reference
    error: str | None = None
    answer_logprob: float | None = None  # log p(answer | prompt), teacher-forced, natural log (None: not measured)
    answer_tokens: int | None = None  # tokens of the answer that log-probability covers
    diagnostics: dict | None = None  # harness.runners.diagnostics.Tap.result: field → (layers, heads)


@dataclass(frozen=True)
class LoadInfo:
    """What a runner reports after loading, recorded in run.json."""

    dtype: str
    device: str
    model_max_position: int | None
    extension_record: dict = field(default_factory=dict)  # what the extension patched
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Runner(Protocol):
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def load(self, model_path: str, extension, extension_config, max_length: int | None = None) -> LoadInfo:
        """Load once per (model, extension). max_length: the longest request to come (sizes caches)."""
        ...

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]: ...

    def close(self) -> None: ...


def answer_ids(tokenizer, prompt: str, prompt_ids: list[int], answer: str) -> list[int]:
    """The tokens of `answer` as they follow this prompt: the tail of the tokenized prompt + answer where it starts
    with the prompt's own tokens, else the answer tokenized alone."""
    both = tokenizer(prompt + answer)["input_ids"]
    T = len(prompt_ids)
    if len(both) > T and both[:T] == list(prompt_ids):
        return both[T:]
    return tokenizer(answer, add_special_tokens=False)["input_ids"]


@contextmanager
def readable_checkpoint(model_path: str):
    """Turn a checkpoint that cannot be read (missing or truncated weight files, a corrupt safetensors header) into
    a one-line UserError; anything else (a bug, an out-of-memory) keeps its traceback."""
    from safetensors import SafetensorError

    from harness.errors import UserError

    try:
        yield
    except (OSError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load the weights of {model_path}: {first}") from None
