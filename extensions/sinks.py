"""Attention sinks with a sliding window (Xiao et al. 2024, "Efficient Streaming Language Models with Attention
Sinks", StreamingLLM).

A query at position i sees the S first tokens (the sinks) and the W most recent tokens including itself:
keys [0, S) ∪ [i − W + 1, i]. Positions are assigned inside the cache, not in the original text: the sinks sit at
0..S−1, the window at S..S+W−1, the query at the window's end. Distances inside the window are therefore the
true ones, and only query→sink distances change (to S + W − 1 − s once the cache is full). The runner streams
the input in chunks and trims the cache to S + W − 1 keys after every step, so memory is constant in length.

Implementation: an attention spec (kernels.spec: sinks S, window W) — keys stay cached rotated at their true
positions (which already gives the right window distances); for sink scores the query is re-rotated to its
in-cache position, which is exact and needs no re-rotation of cached keys — plus a KV-cache policy (evict all but
the sinks and the last W − 1 keys after every forward, applied by the runner's cache). sink_tokens=0 gives a plain sliding window (the
"window-only" baseline).
"""
from __future__ import annotations

from dataclasses import dataclass

from extensions.base import ATTENTION_SPEC, KV_POLICY, Extension, ExtensionConfig, KVPolicy
from extensions.rope import require_rope


@dataclass(frozen=True)
class SinksConfig(ExtensionConfig):
    sink_tokens: int = 4  # S
    window: int = 2048  # W, the most recent tokens (the query included)
    chunk: int = 512  # tokens per streaming step of the prompt (1 = token by token; results are identical)

    def __post_init__(self):
        for name, low in (("sink_tokens", 0), ("window", 1), ("chunk", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")


def kept_keys(n: int, sink_tokens: int, window: int) -> list[int]:
    """Key indices a query at position n − 1 attends to: [0, S) ∪ [n − W, n)."""
    return sorted(set(range(min(sink_tokens, n))) | set(range(max(0, n - window), n)))


def cache_positions(n: int, sink_tokens: int, window: int) -> list[int]:
    """The positions those keys take inside the cache (0..S+W−1), the query being the last."""
    return list(range(len(kept_keys(n, sink_tokens, window))))


class Sinks(Extension):
    name = "sinks"
    static_keys = False  # the cache evicts
    config_cls = SinksConfig
    rerotates = True  # sink keys are scored from the query's in-cache position
    mechanisms = frozenset({ATTENTION_SPEC, KV_POLICY})

    def resolve(self, config: SinksConfig, hf_config) -> SinksConfig:
        require_rope(self.name, hf_config, "keeps rotary keys at their cache positions")
        trained = hf_config.max_position_embeddings
        if config.sink_tokens + config.window > trained:
            raise ValueError(f"sink_tokens + window = {config.sink_tokens + config.window} exceeds the model's "
                             f"context {trained}; use a window of at most {trained - config.sink_tokens}")
        return config

    def attention_spec(self, config: SinksConfig, model_config, inv_freq, length: int):
        from kernels.spec import AttentionSpec

        from kernels.spec import streaming_map

        m = streaming_map(config.sink_tokens, config.window) if config.sink_tokens else None
        return AttentionSpec(sink_tokens=config.sink_tokens, window=config.window, position_map=m, inv_freq=inv_freq)

    def kv_policy(self, config: SinksConfig, model_config) -> KVPolicy:
        """Stream the prompt; after every forward keep the S sinks and the W − 1 most recent keys (the next query
        completes the window)."""
        return KVPolicy(chunk=config.chunk, sink_tokens=config.sink_tokens, recent=config.window - 1)

    LABEL_IGNORES = ("chunk",)  # streaming step: same results for any chunk

    def short_label(self, params: dict) -> str:
        S, W = params.get("sink_tokens", 4), params.get("window", 2048)
        return f"sinks {S}+{W}" if S else f"window {W}"

    def inspect(self, config: SinksConfig, hf_config, length: int | None = None) -> dict:
        n = length or hf_config.max_position_embeddings
        return {"kept_keys": kept_keys(n, config.sink_tokens, config.window),
                "positions": cache_positions(n, config.sink_tokens, config.window)}
