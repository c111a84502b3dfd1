"""The extension interface shared by all position methods.

Lifecycle, driven by a runner:
  1. `parse(params)`      → a frozen config; unknown keys and bad values raise ValueError (before any load);
  2. `resolve(cfg, hf)`   → fill defaults that depend on the model's config (e.g. the original context);
  3. `configure(hf, cfg)` → edit the model *config* before weights load (transformers' rope parameters);
  4. `attach(model, cfg)` → edit the loaded model through the library's extension points;
  5. `before_request` / `before_decode` → per-request hooks for methods with state (dynamic NTK's cached keys).
`configure` and `attach` return a plain dict saying what was changed; it is written to run.json.

Each method declares the *mechanisms* it needs a runner to carry out (`mechanisms`); runners declare the ones they
provide, and which runner hosts which method is derived from the two (harness.runners.check_hostable):
  rope-parameters  new rotary parameters in the model config before loading (`configure`);
  attention-spec   attention as a `kernels.spec.AttentionSpec` (`attention_spec`): the runner routes every
                   attention call through an implementation of the spec (the fp32 oracle, the CPU path, Triton);
  kv-policy        the runner streams the prompt in chunks with explicit positions and applies the method's cache
                   policy after every forward (`chunk_size`, `after_forward`: sinks' eviction).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar


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


class Extension:
    name: ClassVar[str] = ""
    config_cls: ClassVar[type[ExtensionConfig]] = ExtensionConfig
    mechanisms: ClassVar[frozenset[str]] = frozenset()  # what a runner must carry out (see the module docstring)

    def parse(self, params: dict[str, Any]) -> ExtensionConfig:
        allowed = self.config_cls.allowed()
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            hint = f"allowed: {', '.join(allowed)}" if allowed else "it takes no parameters"
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for extension {self.name!r}; {hint}")
        return self.config_cls(**params)

    def resolve(self, config: ExtensionConfig, hf_config: Any) -> ExtensionConfig:
        return config

    def configure(self, hf_config: Any, config: ExtensionConfig) -> dict:
        return {}

    def attach(self, model: Any, config: ExtensionConfig) -> dict:
        return {}

    def attention_spec(self, config: ExtensionConfig, model_config: Any, inv_freq: Any, length: int) -> Any:
        """attention-spec methods: the `kernels.spec.AttentionSpec` for sequences of `length` tokens.
        inv_freq: the model's (D/2,) rotary frequencies, or None on a model without RoPE."""
        raise NotImplementedError(f"{self.name} does not define attention")

    def chunk_size(self, config: ExtensionConfig) -> int:
        """kv-policy methods: prompt tokens per streaming step."""
        raise NotImplementedError(f"{self.name} does not stream")

    def before_request(self, model: Any, config: ExtensionConfig) -> None:
        """Reset per-request state (runners call this before each prompt)."""

    def before_decode(self, model: Any, cache: Any, seq_len: int, config: ExtensionConfig) -> None:
        """Runners with a KV cache call this before each decode step; `seq_len` counts the token being decoded."""

    def after_forward(self, cache: Any, config: ExtensionConfig) -> None:
        """Streaming methods evict from the KV cache here (runners call it after every forward)."""

    def describe(self, config: ExtensionConfig) -> str:
        params = ", ".join(f"{k}={v}" for k, v in config.params().items())
        return f"{self.name}({params})" if params else self.name
