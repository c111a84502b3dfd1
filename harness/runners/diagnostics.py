"""Per-head attention diagnostics gathered inside a runner's attention calls (issue 34), and the answer's
teacher-forced likelihood.

A `Tap` is armed for one request with the prompt positions whose query rows to read (the last prompt position:
the row that writes the first answer token; with mode "answer", every row that writes an answer token) and the
needle's token span. Each attention call of the model passes through `Tap.observe` with what the call computes
from — the layer's rotated q and k, the composed attention spec, the positions — and the tap recomputes those rows'
attention weights exactly as the spec scores them (`kernels.diagnostics.attention_probs`, fp32 over every cached
key), reducing each to per-head numbers at once (a 16k row is never kept).

After the request, `Tap.result(prompt_ids, written)` gives, per field, a (layers, heads) float32 tensor averaged over
the rows read: needle mass, Wu et al.'s retrieval score (the fraction of rows whose argmax key is a needle token equal
to the token that row writes), sink mass, recent mass and entropy (kernels/diagnostics.py defines them).

Two places feed a tap: `harness.runners.attention.SpecAttention` (every attention call of the kernel runner, and of
the HF runner for methods that define attention) and `TappedAttention` (the HF runner's own SDPA / eager attention
for the others: transformers computes the output, the tap only reads q and k).
"""
from __future__ import annotations

import itertools

import torch

from harness.records import decode_heads, encode_heads
from kernels.diagnostics import FIELDS, attention_probs, head_stats

MODES = ("first", "answer")  # which rows: the one writing the first answer token, or every answer token's
SINK = 4  # the first SINK positions count as sinks (StreamingLLM's 4)
RECENT = 64  # keys fewer than RECENT positions back count as recent


class Tap:
    def __init__(self, sink: int = SINK, recent: int = RECENT):
        self.sink, self.recent = sink, recent
        self.rows: set[int] = set()
        self.needle: tuple[int, int] | None = None
        self.seen: dict[tuple[int, int], dict] = {}  # (layer, row position) → field → (H,) and "top" (H,)
        self._layer_of: dict[int, int] = {}  # id(module) → layer index, for modules without layer_idx

    @property
    def armed(self) -> bool:
        return bool(self.rows)

    def arm(self, rows, needle: tuple[int, int] | None) -> None:
        self.rows, self.needle, self.seen = set(int(r) for r in rows), needle, {}

    def add_rows(self, rows) -> None:
        self.rows |= set(int(r) for r in rows)

    def disarm(self) -> None:
        self.rows = set()

    def layer(self, module) -> int:
        idx = getattr(module, "layer_idx", None)
        if idx is not None:
            return int(idx)
        return self._layer_of.setdefault(id(module), len(self._layer_of))

    def observe(self, module, query, key, spec, q_pos, k_pos, scale) -> None:
        """Read the armed rows among this call's queries: query (B, H, T, D), key (B, H_kv, S, D) as the attention
        function receives them (rotated at their positions), spec the call's composed spec."""
        if not self.rows:
            return
        last = int(q_pos[-1])
        if last < min(self.rows) or int(q_pos[0]) > max(self.rows):
            return
        pos = q_pos.tolist()
        sel = [i for i, p in enumerate(pos) if p in self.rows]
        if not sel:
            return
        idx = torch.tensor(sel, device=query.device)
        qp = q_pos[idx]
        with torch.no_grad():
            probs = attention_probs(query[:1].index_select(2, idx), key[:1], spec, qp, k_pos, scale)  # (1, H, r, S)
            stats = head_stats(probs, qp, k_pos, self.needle, sink=self.sink, recent=self.recent)
            top = k_pos[probs.argmax(-1)]  # (1, H, r): position of each row's most attended key
            top = torch.where(probs.amax(-1) > 0, top, torch.full_like(top, -1))
        layer = self.layer(module)
        for j, p in enumerate(qp.tolist()):
            self.seen[layer, p] = {f: getattr(stats, f)[0, :, j].float().cpu() for f in FIELDS if f != "retrieval"}
            self.seen[layer, p]["top"] = top[0, :, j].cpu()

    def result(self, prompt_ids: torch.Tensor, written: dict[int, int]) -> dict | None:
        """Per field, (layers, heads) float32 averaged over the rows read. written: row position → the token that
        row wrote (its retrieval compares it with the needle token the head attends most). None if nothing read."""
        if not self.seen:
            return None
        layers = sorted({la for la, _ in self.seen})
        rows = sorted({p for _, p in self.seen})
        ids = prompt_ids.reshape(-1).cpu()
        out = {}
        for f in FIELDS:
            per_layer = []
            for la in layers:
                vals = []
                for p in rows:
                    s = self.seen.get((la, p))
                    if s is None:
                        continue
                    vals.append(self._retrieval(s["top"], ids, written.get(p)) if f == "retrieval" else s[f])
                per_layer.append(torch.stack(vals).mean(0))
            out[f] = torch.stack(per_layer)
        out["layers"], out["rows"], out["needle"] = layers, rows, self.needle
        return out

    def _retrieval(self, top: torch.Tensor, ids: torch.Tensor, token: int | None) -> torch.Tensor:
        if self.needle is None or token is None:
            return torch.zeros(top.shape, dtype=torch.float32)
        s, e = self.needle
        inside = (top >= s) & (top < e) & (top < len(ids))
        hit = inside & (ids[top.clamp(0, len(ids) - 1)] == int(token))
        return hit.float()


class TappedAttention:
    """One of transformers' own attention functions (SDPA, or the model's eager one) with a tap reading q and k and
    the ablated heads' outputs zeroed; otherwise its output is transformers' own, untouched."""

    def __init__(self, inner, tap: Tap, profile, ablate: dict[int, list[int]] | None = None):
        self.inner, self.tap, self.profile, self.ablate = inner, tap, profile, ablate or {}

    def __call__(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        out = self.inner(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
        heads = self.ablate.get(self.tap.layer(module)) if self.ablate else None
        if heads:
            attn, *rest = out
            attn = attn.clone()
            attn[:, :, heads] = 0  # (B, T, H, D): transformers' layout after its attention functions
            out = (attn, *rest)
        if self.tap.armed:
            from kernels.spec import AttentionSpec, key_positions

            from harness.runners.attention import compose, query_positions

            q_pos = query_positions(query, kwargs)
            spec = compose(AttentionSpec(), window=kwargs.get("sliding_window"), softcap=kwargs.get("softcap"),
                           sink_logits=kwargs.get("s_aux"))
            k_pos = key_positions(spec, q_pos, key.shape[2])
            self.tap.observe(module, query, key, spec, q_pos, k_pos, scaling)
        return out


_serial = itertools.count()


def install_tap(model, tap: Tap, profile, ablate: dict[int, list[int]] | None = None) -> dict:
    """Route this model's own attention (whatever transformers runs for it: SDPA, or the model's eager function)
    through a `TappedAttention` registered under a name of its own. Returns a record for run.json."""
    import sys

    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    before = model.config._attn_implementation
    if before == "eager":
        modules = {sys.modules[type(m).__module__] for m in model.modules()
                   if type(m).__name__ in set(profile.attention_classes)}
        inner = [getattr(mod, "eager_attention_forward", None) for mod in modules]
        if len(modules) != 1 or inner[0] is None:
            from harness.errors import UserError  # raised while loading, before the run directory is written

            raise UserError(f"this {profile.model_type} model's eager attention is not transformers' shared "
                            "`eager_attention_forward`, so --diagnostics / --ablate-heads cannot wrap it; use -r kernel")
        inner = inner[0]
    else:
        inner = ALL_ATTENTION_FUNCTIONS[before]
    name = f"longctx_tap_{next(_serial)}"
    AttentionInterface.register(name, TappedAttention(inner, tap, profile, ablate))
    # transformers builds masks by the implementation's name, and builds none for a name it does not know: the tap's
    # name gets the mask function of the implementation it wraps, so the model computes exactly what it did before
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[before])
    model.set_attn_implementation(name)
    return {"diagnostics_tap": f"{before} (read by a tap{', heads ablated' if ablate else ''})"}


def encode(values: torch.Tensor) -> str:
    """A (layers, heads) float tensor as base64 of little-endian float16 (2 bytes a head)."""
    return encode_heads(values.detach().float().cpu().numpy())


def decode(text: str, layers: int, heads: int) -> torch.Tensor:
    return torch.from_numpy(decode_heads(text, layers, heads))


# --- ablation: zeroing chosen heads' outputs (the causal check of a diagnostic) ------------------------------------

def parse_ablation(text: str) -> tuple[str, int | None, int]:
    """'top:K' → ("top", K, 0); 'random:K' or 'random:K:SEED' → ("random", K, SEED); 'L.H,L.H' → ("list", None, 0).
    A ValueError says what is wrong."""
    parts = text.strip().split(":")
    if parts[0] in ("top", "random"):
        if len(parts) not in ((2,) if parts[0] == "top" else (2, 3)) or not all(p.isdigit() for p in parts[1:]):
            form = "top:K" if parts[0] == "top" else "random:K or random:K:SEED"
            raise ValueError(f"--ablate-heads {text!r}: write {form} with whole numbers")
        k = int(parts[1])
        if k < 1:
            raise ValueError(f"--ablate-heads {text!r}: K must be at least 1")
        return parts[0], k, int(parts[2]) if len(parts) == 3 else 0
    heads_of(text)
    return "list", None, 0


def heads_of(text: str) -> list[tuple[int, int]]:
    """'3.1,5.0' → [(3, 1), (5, 0)] (layer.head, both from 0)."""
    out = []
    for item in text.split(","):
        a, dot, b = item.strip().partition(".")
        if not (dot and a.isdigit() and b.isdigit()):
            raise ValueError(f"--ablate-heads: {item.strip()!r} is not LAYER.HEAD (e.g. 3.1); or give top:K / "
                             "random:K")
        out.append((int(a), int(b)))
    if len(set(out)) != len(out):
        raise ValueError("--ablate-heads names a head twice")
    return sorted(out)


def top_heads(run_dir, k: int, layers: int, heads: int) -> list[tuple[int, int]]:
    """The k heads with the highest retrieval score averaged over the samples of a diagnostics run (ties: the
    higher needle mass). A ValueError where the run has no diagnostics or another model's shape."""
    from harness.records import read_diagnostics

    lines = list(read_diagnostics(run_dir).values())
    if not lines:
        raise ValueError(f"--heads-from {run_dir}: no diagnostics there (run it with --diagnostics first)")
    shapes = {(d["layers"], d["heads"]) for d in lines}
    if shapes != {(layers, heads)}:
        raise ValueError(f"--heads-from {run_dir}: its diagnostics have {sorted(shapes)[0][0]} layers × "
                         f"{sorted(shapes)[0][1]} heads; this model has {layers} × {heads}")
    retrieval = torch.stack([decode(d["retrieval"], layers, heads) for d in lines]).mean(0)
    needle = torch.stack([decode(d["needle_mass"], layers, heads) for d in lines]).mean(0)
    order = sorted(((float(retrieval[la, h]), float(needle[la, h]), la, h) for la in range(layers)
                    for h in range(heads)), reverse=True)
    return sorted((la, h) for _, _, la, h in order[:k])


def random_heads(k: int, seed: int, layers: int, heads: int) -> list[tuple[int, int]]:
    """k heads drawn uniformly without replacement from all layers × heads (a seeded generator of its own)."""
    import random

    pool = [(la, h) for la in range(layers) for h in range(heads)]
    return sorted(random.Random(f"ablate|{seed}|{k}").sample(pool, k))


def chosen_heads(text: str, heads_from: str | None, layers: int, heads: int) -> list[tuple[int, int]]:
    """The heads an --ablate-heads value names on a model of layers × heads (ValueError: why not)."""
    kind, k, seed = parse_ablation(text)
    if kind == "top" and not heads_from:
        raise ValueError("--ablate-heads top:K reads the retrieval scores of a diagnostics run: add --heads-from DIR")
    if kind != "top" and heads_from:
        raise ValueError("--heads-from is read by --ablate-heads top:K only")
    if k is not None and k > layers * heads:
        raise ValueError(f"--ablate-heads {text}: this model has {layers * heads} heads")
    if kind == "top":
        return top_heads(heads_from, k, layers, heads)
    if kind == "random":
        return random_heads(k, seed, layers, heads)
    out = heads_of(text)
    bad = [f"{la}.{h}" for la, h in out if la >= layers or h >= heads]
    if bad:
        raise ValueError(f"--ablate-heads names {', '.join(bad)}, outside this model's {layers} layers × {heads} "
                         "heads (both counted from 0)")
    return out


def by_layer(heads: list[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for la, h in heads:
        out.setdefault(la, []).append(h)
    return out
