"""The Hugging Face transformers runner (the default).

- dtype: float32 on CPU (CPUs without native bf16 run bf16 matmuls ~400× slower: 0.3 vs 121 GFLOP/s measured
  here), bfloat16 on CUDA; `dtype=` overrides.
- attention: SDPA; extensions that define attention (an attention spec: ALiBi, SelfExtend, sinks) run the spec's
  fp32 oracle, `kernels.reference` — exact and slow; the kernel runner runs the same spec fast.
- decoding: a plain greedy loop over a KV cache. The prefill asks for the logits of the last position only
  (`logits_to_keep=1`): a 32k-token prompt's full logits over a 49k vocabulary would be 6 GB of fp32.
- prefix reuse (`prefix_cache=true`): the cache of the previous prompt is kept, cut to the longest token prefix it
  shares with the next one, and only the rest is prefilled. Exact for methods whose cached keys do not depend on
  what follows them (`Extension.static_keys`); a grid whose samples share a haystack (`--shared-haystack`), run
  deepest needle first, then prefills each haystack once (the experiment loop orders the cells so). On this runner
  it is correct but slower than no reuse on CPU: transformers' SDPA masks a chunk that follows cached keys, and the
  masked path is slow (docs/BENCHMARKS.md); the kernel runner serves such chunks on kernels/cpu — use it for reuse.
"""
from __future__ import annotations

import time
from typing import ClassVar

from harness.measure import PeakMemory
from harness.runners.base import (Capabilities, Generation, GenerationRequest, LoadInfo, answer_ids,
                                  readable_checkpoint)

from extensions.base import ATTENTION_SPEC, MECHANISMS


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> str:
    return "bfloat16" if str(device).startswith("cuda") else "float32"


class HFRunner:
    name: ClassVar[str] = "hf"
    capabilities: ClassVar[Capabilities] = Capabilities(mechanisms=frozenset(MECHANISMS), batch_size=1,
                                                        scores_tokens=True, diagnoses=True)
    attention_impl: ClassVar[str] = "reference"  # what attention-spec extensions run on (kernels.IMPLEMENTATIONS)
    diagnostics: str | None = None  # set before load: per-head diagnostics of "first" / "answer" rows (MODES)
    ablate: dict | None = None  # set before load: layer → heads whose attention outputs are zeroed

    def __init__(self, device: str | None = None, dtype: str | None = None, attn_implementation: str = "sdpa",
                 prefix_cache: bool = False):
        self.device = device
        self.dtype = dtype
        self.attn_implementation = attn_implementation
        self.prefix_cache = prefix_cache
        self._kept = None  # prefix reuse: (prompt ids (T,), cache holding them and the tokens generated after)
        self.model = None
        self.tokenizer = None

    def load(self, model_path: str, extension, extension_config, max_length: int | None = None) -> LoadInfo:
        self.extension, self.extension_config = extension, extension_config
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from harness.runners.cache import check_prefix_reuse

        self.device = self.device or default_device()
        self.dtype = self.dtype or default_dtype(self.device)
        torch_dtype = getattr(torch, self.dtype)
        hf_config = AutoConfig.from_pretrained(model_path)
        if self.prefix_cache:
            check_prefix_reuse(hf_config)
        self._own_attention_reason = self._needs_own_attention(hf_config, extension)
        if self._own_attention_reason and self.attn_implementation == "sdpa":
            self.attn_implementation = "eager"
        from harness.profile import read_profile

        ext_record = dict(extension.configure(hf_config, extension_config, profile=read_profile(hf_config)))
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
        from harness.profile import probe_model

        self.profile = probe_model(self.model)  # the loaded model itself: its layers' windows, caps, rotations
        self._head_differs = self._check_head()
        ext_record.update(extension.attach(self.model, extension_config))
        self._attention = []
        ext_record.update(self._install_attention(extension, extension_config))
        self._tap = None
        if self.diagnostics or self.ablate:
            ext_record.update(self._install_tap())
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        gen_cfg = getattr(self.model, "generation_config", None)
        eos = getattr(gen_cfg, "eos_token_id", None) or hf_config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        return LoadInfo(dtype=self.dtype, device=str(self.device),
                        model_max_position=getattr(hf_config, "max_position_embeddings", None),
                        extension_record=ext_record,
                        extra={"attn_implementation": self.attn_implementation,
                               **({"attn_implementation_why": self._own_attention_reason}
                                  if self._own_attention_reason else {}),
                               "model_features": self.profile.features(),
                               "torch_threads": torch.get_num_threads()})

    def _check_head(self) -> str | None:
        """Token scoring projects hidden states through the LM head and the profile's post-processing; check once,
        on 8 tokens, that this gives the model's own logits (a family with post-processing longctx does not know
        is then refused for token scoring, not scored wrong). Returns why they differ, or None."""
        import torch

        ids = torch.arange(10, 18, device=self.device)[None]
        with torch.inference_mode():
            own = self.model(input_ids=ids).logits[0].float()
            hidden = self.model.base_model(input_ids=ids).last_hidden_state[0]
            ours = self.profile.logits_from_head(self.model.get_output_embeddings()(hidden).float())
        err = float((own - ours).abs().max())
        if err > 1e-4 * max(1.0, float(own.abs().max())):
            return (f"this {self.profile.model_type} model's logits are not its LM head's output as longctx "
                    f"reproduces it (max difference {err:.2g}); token scoring would be wrong")
        return None

    @staticmethod
    def _needs_own_attention(hf_config, extension) -> str | None:
        """Why transformers' SDPA would drop something this model's attention does (a logit softcap, learned sink
        logits: SDPA ignores both), so the model's own eager attention must run; None when SDPA computes it."""
        from harness.profile import read_profile

        prof = read_profile(hf_config)
        if prof.attention_modules and not prof.through_interface:
            # Such a model keeps SDPA variants of its own (Falcon-ALiBi's differed from its eager path by 0.04 in
            # the logits, tests/runners/test_families.py); its eager attention is the reference.
            return "eager: the model's attention is its own code, outside transformers' interface"
        if ATTENTION_SPEC in extension.mechanisms:
            return None  # the spec runs, composed with what the model passes (harness.runners.attention)
        what = [w for w, on in (("attention logit softcap", prof.softcap), ("learned sink logits",
                                                                             prof.learned_sinks)) if on]
        return f"eager: SDPA would drop the {' and '.join(what)}" if what else None

    @classmethod
    def attention_path(cls, extension, hf_config, options: dict) -> str:
        """The attention code this runner will run for `extension` on this model (harness.memory's prediction asks
        it): the model's eager attention where SDPA would drop something or it has no SDPA path, the spec's fp32
        oracle for methods that define attention, SDPA otherwise."""
        from harness.profile import read_profile

        if (options.get("attn_implementation") == "eager" or not read_profile(hf_config).supports_sdpa
                or cls._needs_own_attention(hf_config, extension)):
            return "eager"
        return "reference" if ATTENTION_SPEC in extension.mechanisms else "sdpa"

    @classmethod
    def check_model(cls, profile, extension, ext_config, options: dict, d) -> None:
        """What this runner does with the model's own features (harness.support): a recurrent-only checkpoint
        belongs to the mamba runner; a softcap or learned sink logits make plain methods run transformers' eager
        attention (SDPA drops both); the spec carries the softcap for attention-level ones."""
        if profile.recurrent_only:
            d.refuse(f"this {profile.model_type} checkpoint has no attention (recurrent layers only); use -r mamba")
        if ATTENTION_SPEC not in extension.mechanisms and (profile.softcap or profile.learned_sinks):
            d.compose("runs the model's own eager attention (SDPA would drop its "
                      + " and ".join(w for w, on in (("softcap", profile.softcap),
                                                      ("sink logits", profile.learned_sinks)) if on) + ")")
        if profile.rerotation_layouts() and len(profile.rerotation_layouts()) > 1 and extension.rerotates_cache:
            d.refuse(f"{extension.name} re-rotates cached keys, and this model's layers rotate in different layouts")

    @classmethod
    def check(cls, extension_cls, options: dict) -> None:
        """Refuse prefix reuse for a method whose cached keys depend on what follows them."""
        if options.get("prefix_cache") and not extension_cls.static_keys:
            from harness.errors import UserError

            raise UserError(f"prefix_cache cannot serve {extension_cls.name}: its cached keys depend on the rest of "
                            "the prompt (its length, or what it evicts); drop -R prefix_cache=true")

    def _install_attention(self, extension, extension_config) -> dict:
        """attention-spec extensions: every attention call goes through the spec (per model, see attention.py)."""
        from harness.runners.attention import install, own_modules

        if ATTENTION_SPEC not in extension.mechanisms or own_modules(self.profile):
            return {}

        fn, record = install(self.model, extension, extension_config, self.attention_impl, self.profile)
        self._attention.append(fn)
        return record

    def _install_tap(self) -> dict:
        """A diagnostics tap on every attention call: the spec's own calls where the spec runs, else transformers'
        attention wrapped (harness.runners.diagnostics)."""
        from harness.runners.attention import SpecAttention
        from harness.runners.diagnostics import Tap, install_tap

        self._tap = Tap()
        if self._attention:
            if not all(isinstance(fn, SpecAttention) for fn in self._attention):
                raise RuntimeError("diagnostics cannot read this model's attention modules (refused before loading)")
            for fn in self._attention:
                fn.tap, fn.ablate = self._tap, dict(self.ablate or {})
            return {"diagnostics_tap": "the attention spec's calls", **self._ablated()}
        return {**install_tap(self.model, self._tap, self.profile, self.ablate), **self._ablated()}

    def _ablated(self) -> dict:
        if not self.ablate:
            return {}
        return {"ablated_heads": ",".join(f"{la}.{h}" for la in sorted(self.ablate) for h in self.ablate[la])}

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
        T = ids.shape[1]
        gold = answer_ids(self.tokenizer, request.prompt, ids[0].tolist(), request.answer) if request.answer else None
        if self._tap is not None and self.diagnostics:
            rows = range(T - 1, T - 1 + (request.max_new_tokens if self.diagnostics == "answer" else 1))
            self._tap.arm(rows, request.needle)
        with PeakMemory(self.device) as pm:
            t0 = time.perf_counter()
            new, prefill_s, cache_bytes, reused, answer_lp = self._greedy(ids, request.max_new_tokens, gold)
            if str(self.device).startswith("cuda"):
                torch.cuda.synchronize()
            latency = time.perf_counter() - t0 - (answer_lp[1] if answer_lp else 0.0)
        diagnostics = None
        if self._tap is not None and self.diagnostics:
            diagnostics = self._tap.result(ids[0], {T - 1 + i: t for i, t in enumerate(new)})
            self._tap.arm((), None)
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Generation(text=text, prompt_tokens=int(T), new_tokens=len(new), latency_s=latency,
                          prefill_s=prefill_s, peak_mem_bytes=pm.peak, mem_kind=pm.kind, cache_bytes=cache_bytes,
                          cached_tokens=reused if self.prefix_cache else None, kernel=self._kernels_used(),
                          answer_logprob=None if answer_lp is None else answer_lp[0],
                          answer_tokens=None if answer_lp is None else len(gold), diagnostics=diagnostics)

    def _new_cache(self):
        """A KV cache of the runner's own, applying the extension's policy (harness.runners.cache)."""
        from harness.runners.cache import RunnerCache

        layouts = self.profile.rerotation_layouts()
        return RunnerCache(self.model.config, self.extension.kv_policy(self.extension_config, self.model.config),
                           windows=self.profile.windows, rotary=next(iter(layouts)) if len(layouts) == 1 else None,
                           rotating={la.index for la in self.profile.attention if la.rotary} if self.profile.rope
                           else None)

    def _prefill(self, ids, cache, on_hidden=None, start: int = 0):
        """Run the prompt ids (1, T) into `cache` (which already holds its first `start` tokens): in one forward, or
        streamed in the policy's chunks with explicit positions and the policy applied after every forward (constant
        memory for sinks). on_hidden(h, start, end) receives each forward's last hidden states (token scoring);
        otherwise returns the last forward's output."""
        import torch

        T = ids.shape[1]
        streamed = cache.streams
        step = cache.policy.chunk if streamed else self._prefill_chunk(T - start)
        out = None
        for start in range(start, T, step):
            end = min(start + step, T)
            kw = {"position_ids": torch.arange(start, end, device=ids.device)[None]} if streamed else {}
            if on_hidden is None:
                out = self.model(input_ids=ids[:, start:end], past_key_values=cache, use_cache=True, logits_to_keep=1,
                                 **kw)
            else:
                h = self.model.base_model(input_ids=ids[:, start:end], past_key_values=cache, use_cache=True, **kw)
                on_hidden(h.last_hidden_state[0], start, end)
            cache.after_forward()
        return out

    @classmethod
    def prefill_limit(cls, profile) -> int | None:
        """Tokens a prefill forward takes at most on this model when the method does not stream (None: all)."""
        return None

    def _prefill_chunk(self, T: int) -> int:
        """Prompt tokens per forward when the method does not stream: all of them."""
        return T

    def _reusable(self, ids) -> tuple[object, int]:
        """Prefix reuse: the kept cache cut to the longest prefix the prompt `ids` (1, T) shares with the previous
        one (at most T − 1 tokens: the last one is always run, for its logits), and that length; else a new cache, 0."""
        kept, self._kept = self._kept, None
        if not self.prefix_cache or kept is None:
            return self._new_cache(), 0
        prev, cache = kept
        n = min(len(prev), ids.shape[1] - 1)
        differ = (prev[:n] != ids[0, :n].to(prev.device)).nonzero()
        shared = int(differ[0]) if len(differ) else n
        if shared == 0:
            return self._new_cache(), 0
        cache.keep_first(shared)
        return cache, shared

    def _greedy(self, ids, max_new_tokens: int, gold: list[int] | None = None):
        """Greedy decoding over the runner's KV cache; streaming methods (sinks) get the prompt in chunks and their
        cache trimmed after every forward, so memory does not grow with the input. Returns the new tokens, the
        prefill time, the cache's bytes, the prompt tokens served from a kept prefix, and with `gold` (answer token
        ids) (log p(gold | prompt), the seconds that measurement took) — else None."""
        import torch

        model = self.model
        T = ids.shape[1]
        with torch.inference_mode():
            self.extension.before_request(model, self.extension_config)
            cache, reused = self._reusable(ids)
            t0 = time.perf_counter()
            out = self._prefill(ids, cache, start=reused)
            prefill_s = time.perf_counter() - t0
            first = out.logits[0, -1].float().log_softmax(-1) if gold else None
            # teacher forcing starts again from the prefilled cache: cut back to T tokens where that is exact, else a
            # copy taken now (sharing its tensors; evicting or re-rotating policies, sliding layers)
            kept = cache.snapshot() if gold and len(gold) > 1 and not cache.rewindable() and not cache.recurrent \
                else None
            new: list[int] = []
            for step_i in range(max_new_tokens):
                token = int(out.logits[0, -1].argmax())
                new.append(token)
                if token in self._eos or step_i == max_new_tokens - 1:
                    break
                seq_len = T + len(new)  # length including the token being fed
                cache.before_decode(seq_len)
                kw = {"position_ids": torch.tensor([[seq_len - 1]], device=ids.device)} if cache.streams else {}
                out = model(input_ids=torch.tensor([[token]], device=ids.device), past_key_values=cache,
                            use_cache=True, logits_to_keep=1, **kw)
                cache.after_forward()
            nbytes = cache.nbytes()
            answer = None
            if gold:
                if self._tap is not None:
                    self._tap.disarm()
                t1 = time.perf_counter()
                lp = self._teacher_forced(cache if kept is None else kept, T, first, gold)
                answer = None if lp is None else (lp, time.perf_counter() - t1)
        if self.prefix_cache:
            self._kept = (ids[0].clone(), cache)
        return new, prefill_s, nbytes, reused, answer

    def _teacher_forced(self, cache, T: int, first, gold: list[int]) -> float | None:
        """log p(gold | prompt): the first token's from the prefill's logits, the others by feeding the gold tokens
        one decode step at a time through the same cache operations as greedy decoding (so a method's eviction or
        re-rotation applies to them as it would have to its own answer). `cache` is the greedy one, cut back to T
        tokens here, or a snapshot taken after the prefill. None where neither is possible (recurrent layers)."""
        import torch

        total = float(first[gold[0]])
        if len(gold) == 1:
            return total
        if cache.recurrent:
            return None
        if cache.rewindable():
            cache.keep_first(T)
        self.extension.before_request(self.model, self.extension_config)  # a base grown past T starts again
        device = first.device
        for i, token in enumerate(gold[:-1]):
            seq_len = T + i + 1
            cache.before_decode(seq_len)
            kw = {"position_ids": torch.tensor([[seq_len - 1]], device=device)} if cache.streams else {}
            out = self.model(input_ids=torch.tensor([[token]], device=device), past_key_values=cache, use_cache=True,
                             logits_to_keep=1, **kw)
            cache.after_forward()
            total += float(out.logits[0, -1].float().log_softmax(-1)[gold[i + 1]])
        return total

    @classmethod
    def scores_in_one_pass(cls, extension, policy) -> bool:
        """Whether token scoring may run the whole text in one forward without a cache: yes unless the method's
        cache policy changes what attention sees (here, where the oracle's cost grows with all keys, sinks stream)."""
        return policy is None or (policy.chunk is None and policy.recent is None)

    def _one_pass(self, policy) -> bool:
        return self.scores_in_one_pass(self.extension, policy)

    def token_nll(self, ids, chunk: int = 1024, return_greedy: bool = False):
        """Negative log-likelihood of every token given its prefix: ids (1, T) → (T − 1,) float32
        (and, with return_greedy, whether each token is the model's argmax, (T − 1,) bool).

        One forward over the whole input where the method allows it (`_one_pass`), hidden states projected to the
        vocabulary `chunk` positions at a time (full logits of a 32k × 49k prompt would be 6 GB); streaming methods
        (sinks) run the same chunked loop as generation.
        """
        import torch
        import torch.nn.functional as F

        if self._head_differs:
            from harness.errors import UserError

            raise UserError(f"{self._head_differs}; use a generation task")
        model = self.model
        ids = ids.to(self.device)
        T = ids.shape[1]
        lm_head, post = model.get_output_embeddings(), self.profile.logits_from_head

        def head(h):  # the model's own logits: its LM head and whatever its forward does after it
            return post(lm_head(h).float())

        nll = torch.empty(T - 1, dtype=torch.float32)
        greedy = torch.zeros(T - 1, dtype=torch.bool)

        def score(hidden, start, end):
            for a in range(start, end, chunk):
                b = min(a + chunk, end)
                self._nll_into(nll, greedy, head, hidden[a - start:b - start], ids[0], a, b, F)

        with torch.inference_mode():
            self.extension.before_request(model, self.extension_config)
            cache = self._new_cache()
            if self._one_pass(cache.policy):
                score(model.base_model(input_ids=ids, use_cache=False).last_hidden_state[0], 0, T)
            else:
                self._prefill(ids, cache, on_hidden=score)
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
