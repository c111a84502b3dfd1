"""Which part of a keyed mqar answer does a baseline get right? Teacher-forced argmax accuracy of a
`longctx train-baselines` checkpoint on the evaluation's own keyed mqar prompts (evals/mqar, `answer="keyed"`), split
by answer slot: "key 1" is the first word of the answer, "value 1" the digits after it, and so on. A model that looks
values up but cannot copy the question's list of keys in order has its values right and its keys wrong
(docs/RESULTS.md §7.6).

Usage: .venv/bin/python scripts/keyed_answer_slots.py runs/bl7/rope-conv [--prompts 24] [--seed 12345]
"""
import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from evals.base import TaskConfig  # noqa: E402
from evals.mqar import MultiQueryRecall  # noqa: E402

# (pairs in the block, keys asked, prompt length)
CELLS = ((8, 4, 192), (8, 4, 256), (8, 4, 512), (4, 4, 256), (4, 2, 256))


def slot_accuracy(model, tok, task, length: int, n: int) -> dict[str, float]:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--seed", type=int, default=12345)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    try:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
        tok = PreTrainedTokenizerFast.from_pretrained(args.model)
    except OSError as e:
        print(f"error: {args.model}: not a checkpoint ({str(e).splitlines()[0]})", file=sys.stderr)
        sys.exit(2)
    for pairs, asked, length in CELLS:
        task = MultiQueryRecall(TaskConfig(lengths=(length,), depths=(0.5,), seed=args.seed), num_pairs=pairs,
                                num_queries=asked, answer="keyed")
        acc = slot_accuracy(model, tok, task, length, args.prompts)
        print(f"{asked} keys asked of {pairs}, {length} tokens: "
              + ", ".join(f"{k} {v:.2f}" for k, v in acc.items()))


if __name__ == "__main__":
    main()
