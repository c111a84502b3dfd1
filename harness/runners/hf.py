"""The Hugging Face transformers runner (the default).

- dtype: float32 on CPU (CPUs without native bf16 run bf16 matmuls ~400× slower: 0.3 vs 121 GFLOP/s measured
  here), bfloat16 on CUDA; `dtype=` overrides.
- attention: SDPA; extensions that define attention (an attention spec: ALiBi, SelfExtend, sinks) run the spec's
  fp32 oracle, `kernels.reference` — exact and slow; the kernel runner runs the same spec fast.
- decoding: a plain greedy loop over a KV cache. The prefill asks for the logits of the last position only
  (`logits_to_keep=1`): a 32k-token prompt's full logits over a 49k vocabulary would be 6 GB of fp32.
"""
from __future__ import annotations

import time
from typing import ClassVar

from harness.memory import PeakMemory
from harness.runners.base import Capabilities, Generation, GenerationRequest, LoadInfo, readable_checkpoint

from extensions.base import ATTENTION_SPEC, KV_POLICY, MECHANISMS


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> str:
    return "bfloat16" if str(device).startswith("cuda") else "float32"


def cache_nbytes(cache) -> int:
    """Bytes held by a transformers KV cache (keys and values of every layer)."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if t is not None:
                total += t.numel() * t.element_size()
    return total


def _native_alibi(model) -> bool:
    """Bloom applies its trained ALiBi slopes itself, in its own eager attention."""
    return getattr(model.config, "model_type", None) == "bloom"


class HFRunner:
    name: ClassVar[str] = "hf"
    capabilities: ClassVar[Capabilities] = Capabilities(mechanisms=frozenset(MECHANISMS), batch_size=1,
                                                        scores_tokens=True)
    attention_impl: ClassVar[str] = "reference"  # what attention-spec extensions run on (kernels.IMPLEMENTATIONS)

    def __init__(self, device: str | None = None, dtype: str | None = None, attn_implementation: str = "sdpa"):
        self.device = device
        self.dtype = dtype
        self.attn_implementation = attn_implementation
        self.model = None
        self.tokenizer = None

    def load(self, model_path: str, extension, extension_config, max_length: int | None = None) -> LoadInfo:
        self.extension, self.extension_config = extension, extension_config
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        self.device = self.device or default_device()
        self.dtype = self.dtype or default_dtype(self.device)
        torch_dtype = getattr(torch, self.dtype)
        hf_config = AutoConfig.from_pretrained(model_path)
        ext_record = dict(extension.configure(hf_config, extension_config))
        with readable_checkpoint(model_path):
            try:
                model = AutoModelForCausalLM.from_pretrained(
                    model_path, config=hf_config, dtype=torch_dtype, attn_implementation=self.attn_implementation)
            except ValueError as e:  # e.g. Bloom (ALiBi) has no SDPA path in transformers: use its eager attention
                if "attention implementation" not in str(e) or self.attn_implementation == "eager":
                    raise
                self.attn_implementation = "eager"
                model = AutoModelForCausalLM.from_pretrained(model_path, config=hf_config, dtype=torch_dtype,
                                                             attn_implementation="eager")
        self.model = model.to(self.device)
        self.model.eval()
        ext_record.update(extension.attach(self.model, extension_config))
        self._attention = []
        ext_record.update(self._install_attention(extension, extension_config))
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        gen_cfg = getattr(self.model, "generation_config", None)
        eos = getattr(gen_cfg, "eos_token_id", None) or hf_config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        return LoadInfo(dtype=self.dtype, device=str(self.device),
                        model_max_position=getattr(hf_config, "max_position_embeddings", None),
                        extension_record=ext_record,
                        extra={"attn_implementation": self.attn_implementation,
                               "torch_threads": torch.get_num_threads()})

    def _install_attention(self, extension, extension_config) -> dict:
        """attention-spec extensions: every attention call goes through the spec (per model, see attention.py)."""
        if ATTENTION_SPEC not in extension.mechanisms or _native_alibi(self.model):
            return {}
        from harness.runners.attention import install

        fn, record = install(self.model, extension, extension_config, self.attention_impl)
        self._attention.append(fn)
        return record

    def _kernels_used(self) -> str | None:
        """The attention implementations that served the last request, e.g. "cpu" or "cpu+sdpa"."""
        used = set()
        for fn in self._attention:
            used |= {k for k, n in fn.used.items() if n}
            fn.used.clear()
        return "+".join(sorted(used)) or self.attn_implementation  # transformers' own: sdpa, or eager (Bloom)

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        return [self._generate_one(r) for r in requests]

    def _generate_one(self, request: GenerationRequest) -> Generation:
        import torch

        ids = self.tokenizer(request.prompt, return_tensors="pt")["input_ids"].to(self.device)  # (1, T)
        with PeakMemory(self.device) as pm:
            t0 = time.perf_counter()
            new, prefill_s, cache_bytes = self._greedy(ids, request.max_new_tokens)
            if str(self.device).startswith("cuda"):
                torch.cuda.synchronize()
            latency = time.perf_counter() - t0
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Generation(text=text, prompt_tokens=int(ids.shape[1]), new_tokens=len(new), latency_s=latency,
                          prefill_s=prefill_s, peak_mem_bytes=pm.peak, mem_kind=pm.kind, cache_bytes=cache_bytes,
                          kernel=self._kernels_used())

    def _greedy(self, ids, max_new_tokens: int) -> tuple[list[int], float, int]:
        """Greedy decoding over a KV cache. Streaming extensions (sinks) get the prompt in chunks with explicit
        positions and trim the cache after every forward, so memory does not grow with the input."""
        import torch
        from transformers import DynamicCache

        model, ext, ext_cfg = self.model, self.extension, self.extension_config
        streaming = KV_POLICY in ext.mechanisms
        T = ids.shape[1]
        with torch.inference_mode():
            ext.before_request(model, ext_cfg)
            cache = DynamicCache(config=model.config)
            t0 = time.perf_counter()
            if streaming:
                step = ext.chunk_size(ext_cfg)
                for start in range(0, T, step):
                    end = min(start + step, T)
                    pos = torch.arange(start, end, device=ids.device)[None]  # (1, c) true positions
                    out = model(input_ids=ids[:, start:end], position_ids=pos, past_key_values=cache,
                                use_cache=True, logits_to_keep=1)
                    ext.after_forward(cache, ext_cfg)
            else:
                out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            prefill_s = time.perf_counter() - t0
            new: list[int] = []
            for step_i in range(max_new_tokens):
                token = int(out.logits[0, -1].argmax())
                new.append(token)
                if token in self._eos or step_i == max_new_tokens - 1:
                    break
                nxt = torch.tensor([[token]], device=ids.device)  # (1, 1)
                seq_len = T + len(new)  # length including the token being fed
                ext.before_decode(model, cache, seq_len, ext_cfg)
                kw = {"position_ids": torch.tensor([[seq_len - 1]], device=ids.device)} if streaming else {}
                out = model(input_ids=nxt, past_key_values=cache, use_cache=True, logits_to_keep=1, **kw)
                if streaming:
                    ext.after_forward(cache, ext_cfg)
        return new, prefill_s, cache_nbytes(cache)

    def token_nll(self, ids, chunk: int = 1024, return_greedy: bool = False):
        """Negative log-likelihood of every token given its prefix: ids (1, T) → (T − 1,) float32
        (and, with return_greedy, whether each token is the model's argmax, (T − 1,) bool).

        Dense methods run one forward over the whole input (no re-running per length) and project hidden states
        to the vocabulary `chunk` positions at a time (full logits of a 32k × 49k prompt would be 6 GB).
        Streaming methods (sinks) run the same chunked, position-explicit loop as generation.
        """
        import torch
        import torch.nn.functional as F
        from transformers import DynamicCache

        model, ext, ext_cfg = self.model, self.extension, self.extension_config
        ids = ids.to(self.device)
        T = ids.shape[1]
        head = model.get_output_embeddings()
        nll = torch.empty(T - 1, dtype=torch.float32)
        greedy = torch.zeros(T - 1, dtype=torch.bool)
        with torch.inference_mode():
            ext.before_request(model, ext_cfg)
            if KV_POLICY in ext.mechanisms:
                cache = DynamicCache(config=model.config)
                step = ext.chunk_size(ext_cfg)
                for start in range(0, T, step):
                    end = min(start + step, T)
                    pos = torch.arange(start, end, device=ids.device)[None]
                    out = model.base_model(input_ids=ids[:, start:end], position_ids=pos, past_key_values=cache,
                                      use_cache=True)
                    ext.after_forward(cache, ext_cfg)
                    self._nll_into(nll, greedy, head, out.last_hidden_state[0], ids[0], start, end, F)
            else:
                hidden = model.base_model(input_ids=ids, use_cache=False).last_hidden_state[0]  # (T, hidden)
                for start in range(0, T, chunk):
                    end = min(start + chunk, T)
                    self._nll_into(nll, greedy, head, hidden[start:end], ids[0], start, end, F)
        return (nll, greedy) if return_greedy else nll

    @staticmethod
    def _nll_into(nll, greedy, head, hidden, ids, start, end, F):
        """Fill nll[start:end] (predictions of tokens start+1 .. end) from hidden states of positions start..end-1."""
        stop = min(end, len(ids) - 1)
        if stop <= start:
            return
        logits = head(hidden[: stop - start]).float()  # (c, vocab)
        targets = ids[start + 1:stop + 1]
        nll[start:stop] = F.cross_entropy(logits, targets, reduction="none").cpu()
        greedy[start:stop] = (logits.argmax(-1) == targets).cpu()

    def close(self) -> None:
        self.model = None
