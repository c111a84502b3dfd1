"""Has a baseline learnt in-context lookup at all? Teacher-forced accuracy on the answer digits of phone-book recall
drills (the training format, fresh seed), beside the chance level of always predicting the most frequent digit.

Usage: .venv/bin/python scripts/recall_probe.py runs/baselines/rope [runs/baselines/alibi ...]
"""
import random
import sys
from collections import Counter

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.baselines import recall_drill


def probe(path: str, drills: int = 60, seed: int = 12_345) -> tuple[float, float, int]:
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    rng = random.Random(seed)
    hits, digits = 0, Counter()
    for _ in range(drills):
        ids, is_answer = [], []
        for text, answer in recall_drill(rng, 200):
            piece = tok(text, add_special_tokens=False)["input_ids"]
            ids += piece
            is_answer += [answer] * len(piece)
        with torch.no_grad():
            pred = model(input_ids=torch.tensor([ids])).logits[0].argmax(-1)
        for i in range(1, len(ids)):
            d = tok.decode([ids[i]])
            if is_answer[i] and d.isdigit():
                hits += int(pred[i - 1] == ids[i])
                digits[d] += 1
    n = sum(digits.values())
    return hits / n, max(digits.values()) / n, n


if __name__ == "__main__":
    for p in sys.argv[1:]:
        acc, chance, n = probe(p)
        print(f"{p}: answer-digit accuracy {acc:.3f} over {n} digits (most-frequent-digit chance {chance:.3f})")
