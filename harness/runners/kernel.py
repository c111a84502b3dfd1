"""The custom-kernel runner: the HF runner's loading and decoding, with every attention call routed through the
attention spec's fast implementations (kernels/).

- CPU: plain causal attention dispatches to torch's SDPA; every other spec (sinks + window, SelfExtend, ALiBi)
  runs `kernels.cpu`, which costs what the spec costs (O(N·(S + W)) for sinks).
- CUDA: flash-attn (the `[gpu]` extra) for what it expresses natively — causal, ALiBi slopes, a pure window —
  and the Triton kernel for the rest.
Each record says which implementation served it (`kernel`). `impl` (or $LONGCTX_KERNEL) forces one: auto,
reference, cpu, sdpa, triton, flash-attn.

Models: Llama-family RoPE models (anything whose attention goes through transformers' attention interface), and
native-ALiBi Bloom, whose attention modules get a forward that runs its trained slopes as an ALiBi spec; its
prompt is prefilled in chunks of 1,024 tokens, because Bloom still builds a (T, S) float mask per forward (1 GiB at
16k) although the kernel does not read it.

Token scoring (perplexity): a method whose cache policy only evicts (sinks) is scored in one forward over the whole
text — the spec gives every query exactly the keys the streaming loop would have kept, at O(T·(S + W)) cost.
"""
from __future__ import annotations

import os
from typing import ClassVar

from extensions.base import ATTENTION_SPEC, MECHANISMS
from harness.runners.base import Capabilities
from harness.runners.attention import own_modules
from harness.runners.hf import HFRunner


class _Causal:
    """The spec of methods that do not define attention (none and the RoPE methods): plain causal."""

    mechanisms = frozenset({ATTENTION_SPEC})

    def attention_spec(self, config, model_config, inv_freq, length):
        from kernels.spec import AttentionSpec

        return AttentionSpec()


class KernelRunner(HFRunner):
    name: ClassVar[str] = "kernel"
    capabilities: ClassVar[Capabilities] = Capabilities(
        mechanisms=frozenset(MECHANISMS), batch_size=1, scores_tokens=True, diagnoses=True,
        notes="attention through kernels/: SDPA for plain causal, the CPU path or Triton / flash-attn otherwise")

    def __init__(self, device: str | None = None, dtype: str | None = None, impl: str | None = None,
                 prefix_cache: bool = False):
        super().__init__(device=device, dtype=dtype, attn_implementation="sdpa", prefix_cache=prefix_cache)
        self.attention_impl = _chosen_impl(impl)

    @classmethod
    def check_model(cls, profile, extension, ext_config, options: dict, d) -> None:
        """Every attention call must reach kernels/: refuse a model whose attention does not go through
        transformers' attention interface (Bloom's ALiBi modules excepted: this runner drives them itself)."""
        if profile.recurrent_only:
            d.refuse(f"this {profile.model_type} checkpoint has no attention (recurrent layers only); use -r mamba")
        if profile.attention_modules and not profile.through_interface and not own_modules(profile):
            d.refuse(f"this {profile.model_type} model's attention does not go through transformers' attention "
                     f"interface ({profile.interface_calls} of {profile.attention_modules} attention modules call "
                     "it), so the kernel runner cannot route it; use -r hf")
        from harness.profile import unread_attention

        if unread_attention(profile):
            d.refuse(f"{unread_attention(profile)}, so the kernel runner cannot stand in for it; use -r hf")
        if ATTENTION_SPEC not in extension.mechanisms:  # (methods that define attention say it themselves)
            if profile.softcap:
                d.compose(f"the model's softcap {profile.softcap:g} runs in the kernels (dense fp32 on the CPU path)")
            if profile.sliding:
                d.compose("the model's sliding windows run as the spec's window on their layers")
            if profile.learned_sinks:
                d.compose("the model's learned sink logits run in the kernels (the spec's sink_logits)")

    @classmethod
    def check(cls, extension_cls, options: dict) -> None:
        """Refuse, before anything is written or loaded, an implementation this machine or method cannot use."""
        import importlib.util

        from harness.errors import UserError
        from harness.runners.hf import default_device

        super().check(extension_cls, options)
        impl = _chosen_impl(options.get("impl"))
        device = str(options.get("device") or default_device())
        on_cuda = device.startswith("cuda")
        if impl == "triton" and not on_cuda and not os.environ.get("TRITON_INTERPRET"):
            raise UserError(f"kernel implementation 'triton' needs a CUDA device (this run is on {device}); "
                            "use auto, cpu or reference")
        if impl == "flash-attn":
            if not on_cuda:
                raise UserError(f"kernel implementation 'flash-attn' needs a CUDA device (this run is on {device}); "
                                "use auto, cpu or reference")
            if importlib.util.find_spec("flash_attn") is None:
                raise UserError('kernel implementation \'flash-attn\' needs flash-attn: pip install -e ".[gpu]"')
            if extension_cls.rerotates:  # flash-attn takes no alternative rotation of q and k
                raise UserError(f"flash-attn cannot express {extension_cls.name}; use auto (it picks flash-attn "
                                "where it applies) or triton")
        if impl == "sdpa" and ATTENTION_SPEC in extension_cls.mechanisms:
            raise UserError(f"kernel implementation 'sdpa' computes plain causal attention only; "
                            f"{extension_cls.name} defines its own — use auto, cpu or reference")

    OWN_MODULES_PREFILL_CHUNK: ClassVar[int] = 1024

    @classmethod
    def attention_path(cls, extension, hf_config, options: dict) -> str:
        """Every call goes to kernels/: SDPA for plain causal attention on CPU, the CPU path for any other spec
        (a method's, or a model's own windows, softcap or sink logits, or Bloom's slopes), Triton / flash-attn on
        CUDA; `impl` forces one."""
        from harness.profile import read_profile
        from harness.runners.hf import default_device

        impl = _chosen_impl(options.get("impl"))
        if impl == "auto":
            cuda = str(options.get("device") or default_device()).startswith("cuda")
            prof = read_profile(hf_config)
            own = prof.sliding or prof.softcap or prof.learned_sinks or own_modules(prof)
            impl = ("triton" if cuda else "cpu") if (ATTENTION_SPEC in extension.mechanisms or own) else \
                ("fused" if cuda else "sdpa")
        return {"cpu": "kernels/cpu", "reference": "reference", "sdpa": "sdpa"}.get(impl, "fused")

    @staticmethod
    def _needs_own_attention(hf_config, extension) -> str | None:
        return None  # every attention call runs the spec, which carries the model's softcap and windows

    def _install_attention(self, extension, extension_config) -> dict:
        from harness.runners.attention import OWN_MODULE_INSTALLERS, install

        if own_modules(self.profile):
            (cls,) = self.profile.attention_classes
            fn, record = OWN_MODULE_INSTALLERS[cls](self.model, self.attention_impl)
            self._attention.append(fn)
            return record

        source = extension if ATTENTION_SPEC in extension.mechanisms else _Causal()
        fn, record = install(self.model, source, extension_config, self.attention_impl, self.profile)
        self._attention.append(fn)
        return record

    @classmethod
    def prefill_limit(cls, profile) -> int | None:
        """Tokens a prefill forward takes at most on this model (None: the whole prompt): modules driven here that
        build their own (T, S) mask (Bloom's) prefill in chunks."""
        return cls.OWN_MODULES_PREFILL_CHUNK if own_modules(profile) else None

    def _prefill_chunk(self, T: int) -> int:
        return min(T, self.OWN_MODULES_PREFILL_CHUNK) if own_modules(self.profile) else T

    @classmethod
    def scores_in_one_pass(cls, extension, policy) -> bool:
        """Also where the method only evicts and its attention spec already says what attention sees."""
        return super().scores_in_one_pass(extension, policy) or (
            policy.evicts_only and ATTENTION_SPEC in extension.mechanisms)


def _chosen_impl(impl: str | None) -> str:
    """The implementation asked for (argument, else $LONGCTX_KERNEL, else auto), checked against the known ones."""
    from kernels import IMPLEMENTATIONS

    impl = impl or os.environ.get("LONGCTX_KERNEL", "auto")
    if impl not in IMPLEMENTATIONS:
        from harness.errors import unknown_name

        raise unknown_name("kernel implementation", impl, list(IMPLEMENTATIONS))
    return impl
