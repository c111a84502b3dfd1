"""The Mamba runner: Mamba and Mamba-2 checkpoints through transformers' models, with memory constant in length.

transformers' pure-torch Mamba paths materialise (batch, inner, length, state) tensors over the whole prompt (about
12.9 GB each for mamba-130m at 128k tokens). This runner prefills in chunks and carries the recurrent state
(convolution window + SSM state) between them, so memory does not grow with the input:

- Mamba-2: transformers' chunked SSD accepts the carried state as its initial state, so chunked prefill equals the
  unchunked forward (tested to 1e-5).
- Mamba-1: transformers' full-sequence scan ignores a carried SSM state (a 50-token-chunk prefill of a random
  2-layer model was off by 4e-3 in the logits here), while its one-token recurrent step is exact. `prefill="auto"`
  therefore runs Mamba-1 prompts in one unchunked forward (exact, memory grows with length) and Mamba-2 prompts in
  chunks; `prefill="token"` streams Mamba-1 token by token (exact, constant memory, slow).
The recurrent-state size is recorded as `cache_bytes`, next to the KV-cache size of attention runners.
"""
from __future__ import annotations

import copy
import time
from typing import ClassVar

from harness.measure import PeakMemory
from harness.runners.base import (Capabilities, Generation, GenerationRequest, LoadInfo, answer_ids,
                                  readable_checkpoint)

MAMBA_TYPES = ("mamba", "mamba2")
PREFILL_MODES = ("auto", "chunked", "full", "token")


def state_nbytes(cache) -> int:
    """Bytes of a transformers recurrent cache (conv and SSM states of every layer)."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("conv_states", "recurrent_states", "keys", "values"):
            states = getattr(layer, name, None)
            if states is None:
                continue
            if isinstance(states, dict):  # transformers 5 keeps one entry per state index
                states = list(states.values())
            for t in (states if isinstance(states, (list, tuple)) else [states]):
                if hasattr(t, "numel"):
                    total += t.numel() * t.element_size()
    return total


class MambaRunner:
    name: ClassVar[str] = "mamba"
    capabilities: ClassVar[Capabilities] = Capabilities(mechanisms=frozenset(), batch_size=1,
                                                         scores_tokens=True)

    @classmethod
    def attention_path(cls, extension, hf_config, options: dict) -> str:
        return "recurrent"

    @classmethod
    def check_model(cls, profile, extension, ext_config, options: dict, d) -> None:
        """This runner drives recurrent-only checkpoints (Mamba, Mamba-2): a model with attention layers is refused
        before anything is predicted or loaded."""
        if not profile.recurrent_only:
            d.refuse(f"this {profile.model_type} checkpoint has attention layers; the mamba runner runs "
                     "recurrent-only (Mamba, Mamba-2) checkpoints; use -r hf")

    def __init__(self, device: str | None = None, dtype: str | None = None, chunk: int = 2048,
                 prefill: str = "auto"):
        from harness.errors import UserError

        if prefill not in PREFILL_MODES:
            raise UserError(f"prefill must be one of {', '.join(PREFILL_MODES)}, got {prefill!r}")
        self.device, self.dtype, self.chunk, self.prefill = device, dtype, chunk, prefill
        self.model = None

    def load(self, model_path: str, extension, extension_config, max_length: int | None = None) -> LoadInfo:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from harness.errors import UserError
        from harness.runners.hf import default_device, default_dtype

        hf_config = AutoConfig.from_pretrained(model_path)
        if hf_config.model_type not in MAMBA_TYPES:
            raise UserError(f"runner 'mamba' needs a Mamba or Mamba-2 checkpoint; {model_path} is "
                            f"{hf_config.model_type!r} (use --runner hf)")
        self.device = self.device or default_device()
        self.dtype = self.dtype or default_dtype(self.device)
        with readable_checkpoint(model_path):
            model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, self.dtype))
        self.model = model.to(self.device)
        self.model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.kind = hf_config.model_type
        mode = self.prefill
        if mode == "auto":
            mode = "chunked" if self.kind == "mamba2" else "full"
        if mode == "chunked" and self.kind == "mamba":
            raise UserError("chunked prefill is not exact for Mamba-1 with transformers' scan; "
                            "use prefill=token (constant memory) or prefill=full")
        self.mode = mode
        eos = getattr(self.model.generation_config, "eos_token_id", None) or hf_config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        return LoadInfo(dtype=self.dtype, device=str(self.device), model_max_position=None,
                        extension_record={}, extra={"architecture": self.kind, "prefill": mode, "chunk": self.chunk})

    def _steps(self, ids):
        """Prefill pieces: the whole prompt, chunks, or single tokens."""
        T = ids.shape[1]
        size = {"full": T, "chunked": self.chunk, "token": 1}[self.mode]
        return [(s, min(s + size, T)) for s in range(0, T, size)]

    def _forward(self, ids, cache, **kw):
        kwargs = {"cache_params": cache} if cache is not None else {}
        out = self.model(input_ids=ids, use_cache=True, **kwargs, **kw)
        return out, getattr(out, "cache_params", None) or out.past_key_values

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        return [self._generate_one(r) for r in requests]

    def _generate_one(self, request: GenerationRequest) -> Generation:
        import torch

        ids = self.tokenizer(request.prompt, return_tensors="pt")["input_ids"].to(self.device)
        gold = answer_ids(self.tokenizer, request.prompt, ids[0].tolist(), request.answer) if request.answer else None
        with PeakMemory(self.device) as pm, torch.inference_mode():
            t0 = time.perf_counter()
            cache = None
            for a, b in self._steps(ids):
                out, cache = self._forward(ids[:, a:b], cache, logits_to_keep=1)
            prefill_s = time.perf_counter() - t0
            first = out.logits[0, -1].float().log_softmax(-1) if gold else None
            # the recurrent state is updated in place; a copy (its size is constant) starts the answer's measurement
            kept = copy.deepcopy(cache) if gold and len(gold) > 1 else None
            new: list[int] = []
            for step in range(request.max_new_tokens):
                token = int(out.logits[0, -1].argmax())
                new.append(token)
                if token in self._eos or step == request.max_new_tokens - 1:
                    break
                out, cache = self._forward(torch.tensor([[token]], device=ids.device), cache)
            latency = time.perf_counter() - t0
            nbytes = state_nbytes(cache)
            answer = None
            if gold:  # log p(gold | prompt): the same decode steps, fed the gold tokens from the prefilled state
                answer = float(first[gold[0]])
                for i, token in enumerate(gold[:-1]):
                    out, kept = self._forward(torch.tensor([[token]], device=ids.device), kept)
                    answer += float(out.logits[0, -1].float().log_softmax(-1)[gold[i + 1]])
        return Generation(text=self.tokenizer.decode(new, skip_special_tokens=True), prompt_tokens=int(ids.shape[1]),
                          new_tokens=len(new), latency_s=latency, prefill_s=prefill_s, peak_mem_bytes=pm.peak,
                          mem_kind=pm.kind, cache_bytes=nbytes, answer_logprob=answer,
                          answer_tokens=None if gold is None else len(gold))

    def token_nll(self, ids, chunk: int | None = None, return_greedy: bool = False):
        """Per-token NLL (T − 1,), streaming the input through the recurrent state like generation does."""
        import torch
        import torch.nn.functional as F

        ids = ids.to(self.device)
        T = ids.shape[1]
        nll = torch.empty(T - 1, dtype=torch.float32)
        greedy = torch.zeros(T - 1, dtype=torch.bool)
        with torch.inference_mode():
            cache = None
            for a, b in self._steps(ids):
                out, cache = self._forward(ids[:, a:b], cache)
                stop = min(b, T - 1)
                if stop > a:
                    logits = out.logits[0, : stop - a].float()
                    targets = ids[0, a + 1:stop + 1]
                    nll[a:stop] = F.cross_entropy(logits, targets, reduction="none").cpu()
                    greedy[a:stop] = (logits.argmax(-1) == targets).cpu()
        return (nll, greedy) if return_greedy else nll

    def close(self) -> None:
        self.model = None
