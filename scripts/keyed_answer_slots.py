"""Which part of a keyed mqar answer does a baseline get right? Teacher-forced argmax accuracy of a
`longctx train-baselines` checkpoint on the evaluation's own keyed mqar prompts (evals/mqar, `answer="keyed"`), split
by answer slot: "key 1" is the first word of the answer, "value 1" the digits after it, and so on. A model that looks
values up but cannot copy the question's list of keys in order has its values right and its keys wrong
(docs/RESULTS.md §7.6).

Usage: .venv/bin/python scripts/keyed_answer_slots.py runs/bl7/rope-conv [--prompts 24] [--seed 12345]
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from evals.base import TaskConfig  # noqa: E402
from evals.mqar import MultiQueryRecall  # noqa: E402
from harness.baselines.probes import slot_accuracy  # noqa: E402

# (pairs in the block, keys asked, prompt length)
CELLS = ((8, 4, 192), (8, 4, 256), (8, 4, 512), (4, 4, 256), (4, 2, 256))


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
