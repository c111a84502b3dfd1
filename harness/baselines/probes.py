"""Diagnostics of trained baselines that the scripts and the docs use (docs/RESULTS.md §7.3, §7.6):
which answer slot a keyed-mqar answer gets right, and whether misses sit on blocks with look-alike values."""
from __future__ import annotations

from collections import defaultdict

from harness.errors import UserError


def slot_accuracy(model, tok, task, length: int, n: int) -> dict[str, float]:
    """Teacher-forced argmax accuracy on `n` of the task's keyed-mqar prompts, by answer slot: "key 1" is the first
    word of the answer, "value 1" the digits after it, and so on (separators are not scored)."""
    import torch

    right = defaultdict(list)
    for i in range(n):
        s = task.sample(tok, length, (i + 0.5) / n, i)
        prompt = tok(s.prompt, add_special_tokens=False)["input_ids"]
        text = " " + s.target + "."
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = prompt + enc["input_ids"]
        with torch.no_grad():
            pred = model(input_ids=torch.tensor([ids])).logits[0].argmax(-1)
        for j, (a, b) in enumerate(enc["offset_mapping"]):
            piece = text[a:b]
            if not piece.strip(" ,."):
                continue  # separators
            slot = text[:b].count(",") + 1
            kind = "key" if any(c.isalpha() for c in piece) else "value"
            right[f"{kind} {slot}"].append(pred[len(prompt) + j - 1].item() == ids[len(prompt) + j])
    return {k: sum(v) / len(v) for k, v in sorted(right.items(), key=lambda kv: (kv[0][-1], kv[0]))}


def has_lookalike(values: list[str]) -> bool:
    """Two of the three-digit values share their first two digits."""
    return len({v[:2] for v in values}) < len(values)


def lookalike_misses(records: list[dict], tokenizer) -> dict[bool, list[int]]:
    """{block has a look-alike pair: [prompts, misses]} over mqar records, each prompt rebuilt from its record; a
    record whose prompt does not rebuild to its target (another tokenizer or task version) is a UserError."""
    from evals.registry import make_config, make_task

    out = {True: [0, 0], False: [0, 0]}
    for r in records:
        task = make_task(r["task"], make_config(r["task"], {
            "lengths": (r["context_length"],), "depths": (r["depth"],), "seed": r["seed"],
            "haystack": r["haystack"]}))
        try:
            s = task.sample(tokenizer, r["context_length"], r["depth"], r["sample_id"])
        except UserError as e:  # the prompt does not build under this tokenizer: not the run's
            raise UserError(f"sample {r['sample_id']} does not rebuild ({e}): give the model that produced the "
                            "results") from None
        if s.target != r["target"]:
            raise UserError(f"sample {r['sample_id']} at depth {r['depth']} rebuilds to {s.target!r}, not "
                            f"{r['target']!r}: give the model that produced the results")
        cell = out[has_lookalike(s.meta["values"])]
        cell[0] += 1
        cell[1] += not r["correct"]
    return out
