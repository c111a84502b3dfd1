"""The KV cache the HF-family runners own, applying an extension's `KVPolicy` (extensions.base).

Extensions say what they need as data (evict all but S sinks and the R most recent keys after every forward;
re-rotate cached keys before a decode step); this cache does it to its own storage. It is transformers'
`DynamicCache` (so any transformers model accepts it) with the policy's two operations added, and nothing in
`extensions/` touches cache internals.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache

from harness.profile import recurrent_layer_types
from kernels.rotary import rotate_pairs


def check_prefix_reuse(model_config) -> None:
    """Refuse, in one line, prefix reuse for a model with a recurrent cache state (checked before anything is
    written, and again when a runner loads)."""
    from harness.errors import UserError

    if recurrent_layer_types(model_config):
        raise UserError(f"prefix_cache cannot serve this {model_config.model_type} model: its "
                        f"{', '.join(recurrent_layer_types(model_config))} layers keep a state that cannot be cut "
                        "back to a shared prefix; drop -R prefix_cache=true")


class RunnerCache(DynamicCache):
    """windows: layer index → the model's own sliding window on that layer (harness.profile). Without an evicting
    policy those layers keep transformers' sliding layers (they trim themselves to the window). Under one (sinks),
    this cache evicts every layer itself — a sliding layer trimming first would drop the sinks — keeping on a
    sliding layer what the composed spec shows (harness.runners.attention.compose): the last W_s − 1 keys when the
    method's window reaches W_s, else the sinks and the method's window."""

    def __init__(self, model_config, policy=None, windows: dict | None = None, rotary: tuple | None = None,
                 rotating: set | None = None):
        super().__init__(config=model_config)
        self.policy = policy
        self.rotary = rotary  # (layout, rotated dims) of the model's rotation, for re-rotating cached keys
        self.rotating = rotating  # indices of the layers that rotate (None: all); a NoPE layer's keys never turn
        self.windows = dict(windows or {})
        if policy is not None and policy.recent is not None:
            from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

            self.layers = [DynamicLayer() if isinstance(layer, DynamicSlidingWindowLayer) else layer
                           for layer in self.layers]

    def _kept(self, layer_idx: int) -> tuple[int, int]:
        """(sinks, recent keys) this layer keeps after a forward."""
        p = self.policy
        w = self.windows.get(layer_idx)
        if w is None:
            return p.sink_tokens, p.recent
        if p.recent + 1 >= w:  # the method's window reaches the model's: the model's window alone
            return 0, w - 1
        return p.sink_tokens, p.recent

    @property
    def streams(self) -> bool:
        """The prompt goes in chunks with explicit positions (the policy evicts between them)."""
        return self.policy is not None and self.policy.chunk is not None

    def after_forward(self) -> None:
        """Evict: keep the first `sink_tokens` and the `recent` most recent keys of every layer."""
        p = self.policy
        if p is None or p.recent is None:
            return
        for i, layer in enumerate(self.layers):
            keys = getattr(layer, "keys", None)
            sinks, recent = self._kept(i)
            if keys is None or keys.shape[-2] <= sinks + recent:
                continue
            n = keys.shape[-2]
            layer.keys = torch.cat([keys[:, :, :sinks], keys[:, :, n - recent:]], dim=-2)
            layer.values = torch.cat([layer.values[:, :, :sinks], layer.values[:, :, n - recent:]], dim=-2)

    def before_decode(self, seq_len: int) -> None:
        """Re-rotate cached keys for the step that makes the sequence `seq_len` tokens long (keys are cached after
        rotation, so turning the key at cache position p by p·Δθ moves it to the new frequencies)."""
        p = self.policy
        delta = p.rerotate(seq_len) if p is not None and p.rerotate is not None else None
        if delta is None:
            return
        for i, layer in enumerate(self.layers):
            keys = getattr(layer, "keys", None)
            if keys is None or keys.numel() == 0 or (self.rotating is not None and i not in self.rotating):
                continue
            pos = torch.arange(keys.shape[-2], device=keys.device, dtype=torch.float32)
            angles = pos[:, None] * delta.to(keys.device)[None, :]  # (T, dim/2)
            layout, dim = self.rotary or ("half", 2 * delta.numel())
            layer.keys = rotate_pairs(keys.float(), angles, layout, dim).to(keys.dtype)

    @property
    def recurrent(self) -> bool:
        """Some layer keeps a recurrent state (a hybrid's convolution / SSM states), updated in place."""
        return any(getattr(layer, "conv_states", None) is not None for layer in self.layers)

    def rewindable(self) -> bool:
        """Whether `keep_first` returns this cache to an earlier length exactly: nothing was evicted, re-rotated
        or trimmed by a sliding layer."""
        from transformers.cache_utils import DynamicSlidingWindowLayer

        p = self.policy
        return not self.recurrent and (p is None or (p.recent is None and p.rerotate is None)) and \
            not any(isinstance(layer, DynamicSlidingWindowLayer) for layer in self.layers)

    def snapshot(self) -> "RunnerCache":
        """A copy of this cache as it is now, sharing its tensors: nothing here or in transformers' layers writes a
        cached tensor in place (an update concatenates, an eviction or re-rotation builds new ones), so the copy
        stays as it was while this cache goes on. Recurrent layers (updated in place) cannot be copied so."""
        import copy

        if self.recurrent:
            raise RuntimeError("a recurrent cache layer is updated in place; it cannot be snapshotted by reference")
        new = copy.copy(self)
        new.layers = [copy.copy(layer) for layer in self.layers]
        return new

    def keep_first(self, n: int) -> None:
        """Drop every cached position from `n` on (prefix reuse: the next prompt shares only the first n tokens)."""
        for layer in self.layers:
            if getattr(layer, "conv_states", None) is not None:
                raise RuntimeError("a recurrent cache layer cannot be cut back to a prefix (refused at load)")
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys = layer.keys[:, :, :n]
                layer.values = layer.values[:, :, :n]

    def nbytes(self) -> int:
        """Bytes of keys and values held (every layer), and of the states of recurrent layers (a hybrid's convs)."""
        total = 0
        for layer in self.layers:
            states = [*(getattr(layer, "conv_states", None) or {}).values(),
                      *(getattr(layer, "recurrent_states", None) or {}).values()]
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None), *states):
                if t is not None:
                    total += t.numel() * t.element_size()
        return total
