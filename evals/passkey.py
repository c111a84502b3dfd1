"""Passkey retrieval (Mohtashami & Jaggi 2023, "Landmark Attention"): a five-digit key hidden in filler text,
stated twice in the classic "the pass key is N; remember it" form, asked for at the end."""
from __future__ import annotations

import random

from evals.base import Needle, NeedleTask, Sample
from evals.scoring import Score, score_number


class PasskeyTask(NeedleTask):
    name = "passkey"
    preamble = "There is a pass key hidden in the irrelevant text below. Find it and memorize it.\n"

    def make_needle(self, rng: random.Random) -> Needle:
        key = str(rng.randint(10000, 99999))
        return Needle(text=f"The pass key is {key}. Remember it. {key} is the pass key.",
                      question="\nWhat is the pass key? The pass key is", target=key)

    def score(self, sample: Sample, prediction: str) -> Score:
        return score_number(prediction, sample.target)
