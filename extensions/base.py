"""The extension interface shared by all position methods.

Lifecycle, driven by a runner:
  1. `parse(params)`      → a frozen config; unknown keys and bad values raise ValueError (before any load);
  2. `resolve(cfg, hf)`   → fill defaults that depend on the model's config (e.g. the original context);
  3. `configure(hf, cfg)` → edit the model *config* before weights load (transformers' rope parameters);
  4. `attach(model, cfg)` → edit the loaded model through the library's extension points;
  5. `before_request`     → reset per-request state on the model (dynamic NTK's grown base).
`configure` and `attach` return a plain dict saying what was changed; it is written to run.json. What a method asks
of the KV cache is data (`kv_policy` → `KVPolicy`); the runner owns the cache and applies the policy to it.

Each method declares the *mechanisms* it needs a runner to carry out (`mechanisms`); runners declare the ones they
provide, and which runner hosts which method is derived from the two (harness.runners.check_hostable):
  rope-parameters  new rotary parameters in the model config before loading (`configure`);
  attention-spec   attention as a `kernels.spec.AttentionSpec` (`attention_spec`): the runner routes every
                   attention call through an implementation of the spec (the fp32 oracle, the CPU path, Triton);
  kv-policy        the runner owns a KV cache that applies the method's `KVPolicy`: the prompt streamed in chunks
                   with explicit positions, eviction after every forward (sinks). Re-rotation of cached keys
                   (dynamic NTK) is a refinement of a rope-parameters method: runners with a cache of their own
                   apply it, others (vLLM) run the method without it and say so in run.json.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar


@dataclass(frozen=True)
class ExtensionConfig:
    """Base of every method's config. Subclasses add fields and validate in __post_init__."""

    @classmethod
    def allowed(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


ROPE_PARAMETERS = "rope-parameters"
ATTENTION_SPEC = "attention-spec"
KV_POLICY = "kv-policy"
MECHANISMS = (ROPE_PARAMETERS, ATTENTION_SPEC, KV_POLICY)


@dataclass(frozen=True)
class KVPolicy:
    """What a method asks of the runner's KV cache (harness.runners.cache applies it).

    chunk        prompt tokens per forward, positions given explicitly; None: the prompt in one forward.
    sink_tokens  with `recent`: after every forward keep the first `sink_tokens` cached keys ...
    recent       ... and the `recent` most recent ones (None: never evict).
    rerotate     before the decode step that makes the sequence L tokens long, rerotate(L) gives Δinv_freq (D/2,):
                 every cached key at cache position p is turned by p·Δinv_freq (None from it: unchanged).
    A policy that only evicts drops exactly the keys the method's attention spec never shows again, so a runner that
    implements the spec may score a whole text in one forward instead of streaming it (`evicts_only`).
    """

    chunk: int | None = None
    sink_tokens: int = 0
    recent: int | None = None
    rerotate: Callable[[int], Any] | None = None

    @property
    def evicts_only(self) -> bool:
        return self.recent is not None and self.rerotate is None


class Extension:
    name: ClassVar[str] = ""
    config_cls: ClassVar[type[ExtensionConfig]] = ExtensionConfig
    mechanisms: ClassVar[frozenset[str]] = frozenset()  # what a runner must carry out (see the module docstring)
    # What the method asks of a model's rotary embedding (harness.support reads these against the model's profile):
    rerotates: ClassVar[bool] = False  # its attention spec moves q and k to other positions (sinks, SelfExtend)
    rerotates_cache: ClassVar[bool] = False  # its KV policy turns cached keys (dynamic NTK)
    per_layer_type: ClassVar[bool] = False  # it can rescale rope parameters given per layer type (Gemma 3)

    def identity_on_trained_alibi(self, config: ExtensionConfig) -> bool:
        """Whether, on a model that applies trained ALiBi slopes itself, this method changes nothing (so it may run
        on such a model even where its attention is outside the interface)."""
        return False

    def parse(self, params: dict[str, Any]) -> ExtensionConfig:
        allowed = self.config_cls.allowed()
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            hint = f"allowed: {', '.join(allowed)}" if allowed else "it takes no parameters"
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for extension {self.name!r}; {hint}")
        return self.config_cls(**params)

    def resolve(self, config: ExtensionConfig, hf_config: Any) -> ExtensionConfig:
        return config

    def configure(self, hf_config: Any, config: ExtensionConfig, profile: Any = None) -> dict:
        """profile: the model's harness.profile.ModelProfile, where the method's edit depends on the layers."""
        return {}

    def attach(self, model: Any, config: ExtensionConfig) -> dict:
        return {}

    def attention_spec(self, config: ExtensionConfig, model_config: Any, inv_freq: Any, length: int) -> Any:
        """attention-spec methods: the `kernels.spec.AttentionSpec` for sequences of `length` tokens.
        inv_freq: the model's (D/2,) rotary frequencies, or None on a model without RoPE."""
        raise NotImplementedError(f"{self.name} does not define attention")

    def kv_policy(self, config: ExtensionConfig, model_config: Any) -> KVPolicy | None:
        """What the method asks of the KV cache (kv-policy methods, and dynamic NTK's re-rotation); None: nothing."""
        return None

    # Whether the cached keys and values of a prompt's first p tokens are the same whatever follows them, so a
    # runner may serve a shared prefix from an earlier prompt's cache (prefix reuse). False where the rotation
    # depends on the prompt's length (dynamic NTK) or where the cache evicts (sinks).
    static_keys: ClassVar[bool] = True

    def before_request(self, model: Any, config: ExtensionConfig) -> None:
        """Reset per-request state (runners call this before each prompt)."""

    def inspect(self, config: ExtensionConfig, hf_config: Any, length: int | None = None) -> dict:
        """What the method computes for this model at `length` (frequencies, kept keys, slopes ...), for
        `longctx extensions show`; plain JSON-able values."""
        return {}

    LABEL_IGNORES: ClassVar[tuple[str, ...]] = ()  # parameters that do not change results (e.g. sinks' chunk)

    def changed(self, params: dict) -> dict:
        """The parameters that differ from the config's defaults (those defaulting to None are filled from the
        model and count as defaults; so do LABEL_IGNORES)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self.config_cls)}
        return {k: v for k, v in params.items() if k in defaults and defaults[k] is not None
                and v != defaults[k] and k not in self.LABEL_IGNORES}

    def short_label(self, params: dict) -> str:
        """A report label naming only what differs from the defaults, e.g. "yarn ×2", "sinks 4+4092"."""
        changed = self.changed(params)
        return " ".join([self.name] + [f"{k}={format_param(v)}" for k, v in sorted(changed.items())])

    def describe(self, config: ExtensionConfig) -> str:
        params = ", ".join(f"{k}={v}" for k, v in config.params().items())
        return f"{self.name}({params})" if params else self.name


def format_param(v) -> str:
    """A parameter value for a label: 2.0 → "2", 0.5 → "0.5"."""
    return f"{v:g}" if isinstance(v, float) else str(v)
