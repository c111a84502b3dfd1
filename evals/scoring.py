"""Scorers: strict (the extracted answer equals the target) and lenient (the target is a substring).

Both are computed for every record so reports can show them side by side: a model that answers "48213." scores
on both, one that answers "the key 48213 I think 4" scores leniently only if extraction picks the wrong number.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class Score:
    correct: bool  # strict
    lenient: bool
    extracted: str | None  # what the strict scorer compared with the target
    score: float | None = None  # primary metric in [0, 1]; None means float(correct)
    metric: str = "exact"  # "exact", "all-references" or "any-reference"

    @property
    def value(self) -> float:
        return float(self.correct) if self.score is None else self.score


def first_number(prediction: str) -> str | None:
    """The first run of digits in the output ('The key is 48213.' → '48213')."""
    m = _NUMBER.search(prediction)
    return m.group(0) if m else None


def score_number(prediction: str, target: str) -> Score:
    extracted = first_number(prediction)
    return Score(correct=extracted == target, lenient=target in prediction, extracted=extracted)
