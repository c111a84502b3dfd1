"""Which method a runner can honour on which model: decided from the model's profile, never from its family's name.

For a (model profile, method, runner) the answer is one of
  honoured   the method runs as it does on a plain Llama;
  composed   it runs together with something the model does itself (its sliding windows, its logit softcap, its
             rotary layout, rope parameters per layer type, layers without RoPE), and the note says how;
  refused    the spec cannot express it: one line naming the feature and the way out, before anything is written.

The method's side asks what the method needs (its mechanisms; whether it re-rotates q and k: `Extension.rerotates`;
whether it can rescale rope parameters per layer type: `RopeExtension.per_layer_type`); the runner's side is the
runner's own `check_model` (harness.runners). This module holds the method's side and the walk over both.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.profile import unread_attention

HONOURED, COMPOSED, REFUSED = "honoured", "composed", "refused"


@dataclass(frozen=True)
class Verdict:
    status: str  # honoured | composed | refused
    notes: tuple[str, ...] = field(default_factory=tuple)  # how it composes, or why it is refused

    def line(self) -> str:
        return f"{self.status}" + (f": {'; '.join(self.notes)}" if self.notes else "")


class Decision:
    """Collects composition notes; the first refusal ends it (raised as Refused)."""

    def __init__(self):
        self.notes: list[str] = []

    def compose(self, note: str) -> None:
        self.notes.append(note)

    def refuse(self, why: str):
        raise Refused(why)

    def verdict(self) -> Verdict:
        return Verdict(COMPOSED if self.notes else HONOURED, tuple(self.notes))


class Refused(Exception):
    pass


def method_side(profile, extension, ext_config, d: Decision) -> None:
    """What the method needs of the model (the same on every runner)."""
    from extensions.base import ATTENTION_SPEC, ROPE_PARAMETERS

    name, mt = extension.name, profile.model_type
    if ROPE_PARAMETERS in extension.mechanisms:
        if not profile.rope:
            d.refuse(f"{name} rescales RoPE, but this {mt} model has no rotary embeddings"
                     + (" (it was trained with ALiBi)" if profile.alibi else "") + "; use none"
                     + (" or alibi" if profile.alibi else ""))
        if profile.scaled_rope and not getattr(ext_config, "replace", False):
            d.refuse(f"this {mt} model's RoPE was scaled in training ({profile.rope_type}); {name} would replace "
                     f"that scaling, not extend it: pass -E replace=true to replace it, or use none")
        if profile.scaled_rope:
            d.compose(f"replaces the trained {profile.rope_type} scaling (-E replace=true)")
        if profile.per_layer_rope:
            if not extension.per_layer_type:
                d.refuse(f"this {mt} model has rope parameters per layer type ({', '.join(profile.per_layer_rope)}),"
                         f" which {name} cannot rescale; use pi, ntk or yarn")
            kept = [t for t in profile.per_layer_rope if t not in profile.rescaled_layer_types()]
            d.compose(f"rescales the rope parameters of {', '.join(profile.rescaled_layer_types())} layers"
                      + (f"; {', '.join(kept)} layers keep theirs (they never see past their window)" if kept else ""))
        if profile.nope_layers:
            d.compose(f"layers {', '.join(map(str, profile.nope_layers))} have no RoPE and are left alone")
        if profile.partial_rotary:
            d.compose("rescales the rotated dimensions only (partial rotary)")
        if extension.rerotates_cache and (profile.interleaved or profile.partial_rotary):
            d.compose("re-rotates cached keys in the model's own rotary layout")
    if ATTENTION_SPEC in extension.mechanisms:
        if profile.probe_error:
            d.refuse(f"{name} defines attention, but longctx could not probe this {mt} model's attention "
                     f"({profile.probe_error}); use a RoPE method or none")
        if not profile.through_interface and not (profile.alibi and extension.identity_on_trained_alibi(ext_config)):
            d.refuse(f"{name} defines attention, but this {mt} model's attention does not go through "
                     f"transformers' attention interface ({profile.interface_calls} of {profile.attention_modules} "
                     "attention modules call it), so no method can change it; use a RoPE method or none")
        if unread_attention(profile):
            d.refuse(f"{name} defines attention, but {unread_attention(profile)}; use a RoPE method or none on -r hf")
        if profile.learned_sinks:
            d.compose("the model's learned sink logits join every softmax (the spec's sink_logits)")
        if extension.rerotates:
            if not profile.rope:
                d.refuse(f"{name} re-rotates RoPE positions, but this {mt} model has no rotary embeddings; use none"
                         + (" or alibi" if profile.alibi else ""))
            if profile.rotary_unknown:
                d.refuse(f"{name} re-rotates q and k, but this {mt} model moves them with position in a way that is "
                         "neither a half-split nor an interleaved rotation; use a RoPE method or none")
            if profile.interleaved or profile.partial_rotary:
                d.compose("re-rotates in each layer's own rotary layout (" + ", ".join(
                    w for w, on in (("interleaved pairs", profile.interleaved),
                                    ("partial rotary", profile.partial_rotary)) if on) + ")")
            if profile.nope_layers:
                d.compose(f"layers {', '.join(map(str, profile.nope_layers))} have no RoPE: no re-rotation there")
        if profile.sliding:
            d.compose(f"the model's sliding windows ({'/'.join(map(str, sorted(set(profile.windows.values()))))}) "
                      "intersect the method's attention on their layers")
        if profile.softcap:
            d.compose(f"scores capped at {profile.softcap:g} (the model's softcap) in every kernel")


def decide(profile, extension, ext_config, runner_cls, options: dict | None = None) -> Verdict:
    """The verdict for this method on this runner for this model."""
    d = Decision()
    missing = sorted(set(extension.mechanisms) - set(runner_cls.capabilities.mechanisms))
    if missing:
        return Verdict(REFUSED, (f"runner {runner_cls.name} does not carry out {', '.join(missing)}",))
    try:
        method_side(profile, extension, ext_config, d)
        check = getattr(runner_cls, "check_model", None)
        if check is not None:
            check(profile, extension, ext_config, dict(options or {}), d)
    except Refused as r:
        return Verdict(REFUSED, (str(r),))
    return d.verdict()


def require(profile, extension, ext_config, runner_cls, options: dict | None = None) -> Verdict:
    """decide(), with a refusal raised as a one-line UserError."""
    from harness.errors import UserError

    v = decide(profile, extension, ext_config, runner_cls, options)
    if v.status == REFUSED:
        raise UserError(f"{extension.name} on runner {runner_cls.name}: {v.notes[0]}")
    return v


TABLE_METHODS = ("none", "pi", "ntk", "dynamic-ntk", "yarn", "selfextend", "sinks", "alibi")
TABLE_RUNNERS = ("hf", "kernel", "vllm")
_MARK = {HONOURED: "✓", COMPOSED: "◐", REFUSED: "✗"}


def support_table(profiles: dict) -> str:
    """A Markdown table: one row per (family, runner), one column per method, ✓ honoured / ◐ composed / ✗ refused,
    from `decide` on each family's profile ({family: ModelProfile}); the features column says what the profile read."""
    from extensions import EXTENSIONS
    from harness.runners import RUNNERS

    head = "| family | features read | runner | " + " | ".join(TABLE_METHODS) + " |"
    lines = [head, "|" + "---|" * (3 + len(TABLE_METHODS))]
    for fam, prof in profiles.items():
        features = "; ".join(prof.features()) or "—"
        for i, r in enumerate(TABLE_RUNNERS):
            cells = []
            for m in TABLE_METHODS:
                ext = EXTENSIONS.get(m)()
                cells.append(_MARK[decide(prof, ext, ext.parse({}), RUNNERS.get(r)).status])
            lines.append(f"| {fam if i == 0 else ''} | {features if i == 0 else ''} | {r} | " + " | ".join(cells)
                         + " |")
    return "\n".join(lines)
