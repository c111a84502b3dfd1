"""Attention sinks with a sliding window (Xiao et al. 2024, "Efficient Streaming Language Models with Attention
Sinks", StreamingLLM).

A query at position i sees the S first tokens (the sinks) and the W most recent tokens including itself:
keys [0, S) ∪ [i − W + 1, i]. Positions are assigned inside the cache, not in the original text: the sinks sit at
0..S−1, the window at S..S+W−1, the query at the window's end. Distances inside the window are therefore the
true ones, and only query→sink distances change (to S + W − 1 − s once the cache is full). The runner streams
the input in chunks and trims the cache to S + W − 1 keys after every step, so memory is constant in length.

Implementation: keys stay cached rotated at their true positions (which already gives the right window
distances); for sink scores the query is re-rotated to its in-cache position, which is exact and needs no
re-rotation of cached keys. sink_tokens=0 gives a plain sliding window (the "window-only" baseline).
"""
from __future__ import annotations

from dataclasses import dataclass

from extensions.attention import positional_attention, query_positions, register, rotary_inv_freq
from extensions.base import Extension, ExtensionConfig
from extensions.rope import require_rope, rotate


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


def sink_visible(sink_tokens: int, window: int):
    def allowed(qp, kp):
        causal = kp[None, :] <= qp[:, None]
        recent = kp[None, :] > (qp[:, None] - window)
        return causal & (recent | (kp[None, :] < sink_tokens))

    return allowed


def cached_key_positions(q_pos, n_keys: int, sink_tokens: int):
    """True positions of the keys in a trimmed cache: sinks 0..S−1, then a contiguous run ending at the queries."""
    import torch

    end = int(q_pos[-1]) + 1
    if n_keys >= end:
        return torch.arange(n_keys, device=q_pos.device)
    recent = n_keys - sink_tokens
    return torch.cat([torch.arange(sink_tokens, device=q_pos.device),
                      torch.arange(end - recent, end, device=q_pos.device)])


class Sinks(Extension):
    name = "sinks"
    config_cls = SinksConfig
    streaming = True  # runners feed the prompt in chunks with explicit positions and call after_forward

    def resolve(self, config: SinksConfig, hf_config) -> SinksConfig:
        require_rope(self.name, hf_config, "keeps rotary keys at their cache positions")
        trained = hf_config.max_position_embeddings
        if config.sink_tokens + config.window > trained:
            raise ValueError(f"sink_tokens + window = {config.sink_tokens + config.window} exceeds the model's "
                             f"context {trained}; use a window of at most {trained - config.sink_tokens}")
        return config

    def chunk_size(self, config: SinksConfig) -> int:
        return config.chunk

    def attach(self, model, config: SinksConfig) -> dict:
        inv_freq = rotary_inv_freq(model)
        S, W = config.sink_tokens, config.window
        allowed = sink_visible(S, W)

        def sinks_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
            q_pos = query_positions(query, kwargs)
            k_pos = cached_key_positions(q_pos, key.shape[2], S)
            # Sink scores: the query moves from position i to its in-cache position min(i, S + W − 1).
            in_cache = q_pos.clamp(max=S + W - 1)
            shift = (in_cache - q_pos).float()[:, None] * inv_freq.to(query.device)[None, :]  # (T, D/2)
            alt = (rotate(query.float(), shift), key, lambda qp, kp: (kp < S)[None, :].expand(len(qp), -1),
                   lambda qp, kp: (min(S, len(kp)), min(S, len(kp))))  # sinks always alt, the rest never
            return positional_attention(query, key, value, scaling, q_pos, k_pos, allowed=allowed, alt=alt), None

        return register(model, "longctx_sinks", sinks_attention)

    def after_forward(self, cache, config: SinksConfig) -> None:
        """Evict: keep the S sinks and the W − 1 most recent keys (the next query completes the window)."""
        import torch

        S, keep = config.sink_tokens, config.window - 1
        for layer in cache.layers:
            if layer.keys is None or layer.keys.shape[-2] <= S + keep:
                continue
            layer.keys = torch.cat([layer.keys[:, :, :S], layer.keys[:, :, layer.keys.shape[-2] - keep:]], dim=-2)
            layer.values = torch.cat([layer.values[:, :, :S], layer.values[:, :, layer.values.shape[-2] - keep:]],
                                     dim=-2)

    def inspect(self, config: SinksConfig, hf_config, length: int | None = None) -> dict:
        n = length or hf_config.max_position_embeddings
        return {"kept_keys": kept_keys(n, config.sink_tokens, config.window),
                "positions": cache_positions(n, config.sink_tokens, config.window)}
