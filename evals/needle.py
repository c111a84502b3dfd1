"""Single needle in a haystack (the length × depth grid of Kamradt's NIAH, in the key → number form RULER uses):
one sentence binds a named key to a seven-digit number; the question names the key."""
from __future__ import annotations

import random

from evals.base import Needle, NeedleTask, Sample
from evals.scoring import Score, score_number

_ADJECTIVES = ("amber", "silent", "northern", "copper", "velvet", "hollow", "crimson", "quiet", "distant", "iron")
_NOUNS = ("falcon", "harbour", "lantern", "orchard", "glacier", "meadow", "compass", "tower", "river", "garden")


class NeedleInHaystackTask(NeedleTask):
    name = "needle"
    preamble = "There is a secret code hidden in the irrelevant text below. Find it and memorize it.\n"

    def make_needle(self, rng: random.Random) -> Needle:
        key = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
        value = str(rng.randint(1_000_000, 9_999_999))
        return Needle(text=f"The secret code for the {key} is {value}.",
                      question=f"\nWhat is the secret code for the {key}? The secret code for the {key} is",
                      target=value)

    def score(self, sample: Sample, prediction: str) -> Score:
        return score_number(prediction, sample.target)
