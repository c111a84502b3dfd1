"""Scorers: strict (the extracted answer equals the target) and lenient (the target is a substring).

Both are computed for every record so reports can show them side by side: a model that answers "48213." scores
on both, one that answers "the key 48213 I think 4" scores leniently only if extraction picks the wrong number.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable, Sequence

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


# --- RULER's two semantics for tasks with several acceptable or required answers --------------------------------
#
# RULER (Hsieh et al. 2024) scores by case-insensitive substring presence: "all" tasks (several values, several
# queries, variable tracking) earn the fraction of references found; "any" tasks earn 1 if any reference is found.
# `score` carries that metric; `correct` is the strict reading (each reference as a whole token, exact case, or the
# extracted answer equal to a reference) and `lenient` the plain substring reading, as for the single-answer tasks.

_UUID = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                   r"(?![0-9a-fA-F])")
_WORD = re.compile(r"[A-Za-z]+")
_PHONE = re.compile(r"(?<!\d)\d{3}-\d{3}-\d{4}(?!\d)")
_THREE_DIGITS = re.compile(r"(?<!\d)\d{3}(?!\d)")


def first_uuid(prediction: str) -> str | None:
    """The first UUID-shaped token ('"1b4e28ba-2fa1-41d2-883f-0016d3cca427",' → '1b4e28ba-...-0016d3cca427')."""
    m = _UUID.search(prediction)
    return m.group(0) if m else None


def first_word(prediction: str) -> str | None:
    """The first run of letters (' pelican, then' → 'pelican')."""
    m = _WORD.search(prediction)
    return m.group(0) if m else None


def first_phone(prediction: str) -> str | None:
    """The first phone number shaped 555-123-4567."""
    m = _PHONE.search(prediction)
    return m.group(0) if m else None


def three_digit_numbers(prediction: str) -> list[str]:
    """Every standalone three-digit number, in order (' 042, 1907, 381.' → ['042', '381'])."""
    return _THREE_DIGITS.findall(prediction)


def _found(prediction: str, reference: str) -> bool:
    """RULER's test: the reference occurs in the prediction, ignoring case."""
    return reference.lower() in prediction.lower()


def _found_strict(prediction: str, reference: str) -> bool:
    """The reference occurs with its exact case as a whole token ('1234567' is not found in '12345678')."""
    return re.search(r"(?<![0-9A-Za-z])" + re.escape(reference) + r"(?![0-9A-Za-z])", prediction) is not None


def score_all_references(prediction: str, references: list[str]) -> Score:
    """Fraction of the references that occur in the prediction (case-insensitive substrings).

    Args:
        prediction: the model's output.
        references: every answer the prediction must contain (at least one).
    Returns:
        Score with metric "all-references"; `correct` when every reference occurs as a whole token with exact case,
        `lenient` when every reference occurs as a substring; `extracted` lists the references found.
    """
    if not references:
        raise ValueError("score_all_references needs at least one reference")
    found = [r for r in references if _found(prediction, r)]
    return Score(correct=all(_found_strict(prediction, r) for r in references), lenient=len(found) == len(references),
                 extracted=", ".join(found) or None, score=len(found) / len(references), metric="all-references")


def score_any_reference(prediction: str, references: list[str],
                        extract: Callable[[str], str | None] | None = None) -> Score:
    """1.0 if any reference occurs in the prediction (case-insensitive substring), else 0.0.

    Args:
        prediction: the model's output.
        references: the acceptable answers (at least one).
        extract: optional function prediction → answer (e.g. `first_number`); when given, `correct` requires the
            extracted answer to equal a reference exactly, else a reference occurring as a whole token with exact case.
    Returns:
        Score with metric "any-reference"; `lenient` when any reference occurs as a substring.
    """
    if not references:
        raise ValueError("score_any_reference needs at least one reference")
    found = [r for r in references if _found(prediction, r)]
    if extract is not None:
        extracted = extract(prediction)
        correct = extracted in references
    else:
        strict = [r for r in references if _found_strict(prediction, r)]
        extracted = strict[0] if strict else None
        correct = bool(strict)
    return Score(correct=correct, lenient=bool(found), extracted=extracted, score=float(bool(found)),
                 metric="any-reference")


def score_references_in_order(prediction: str, references: list[str],
                              extract_all: Callable[[str], list[str]]) -> Score:
    """`score_all_references`, with a strict reading that also wants the order: for answers listed in the order
    the question asks them (mqar), right values in the wrong order have not answered the question.

    Args:
        prediction: the model's output.
        references: every answer, in the order the question asks for them (at least one).
        extract_all: prediction → its answers in order (e.g. `three_digit_numbers`).
    Returns:
        Score with metric "all-references" (`score` and `lenient` as in `score_all_references`); `correct` when the
        first len(references) extracted answers equal the references, in order; `extracted` lists those answers.
    """
    got = extract_all(prediction)[:len(references)]
    return replace(score_all_references(prediction, references), correct=got == list(references),
                   extracted=", ".join(got) or None)


def all_numbers(prediction: str) -> list[str]:
    """Every run of digits in the output, in order."""
    return _NUMBER.findall(prediction)


def score_absent(prediction: str, target: str, extract: Callable[[str], str | None],
                 context_values: Sequence[str] = (), shaped: bool = True) -> Score:
    """A question whose answer may be "none" (the asked-for thing is not in the context).

    For target "none": strict wants the word "none" and no value beside it (an invented or borrowed value is a
    hallucination: any value-shaped token when `shaped` — numbers, UUIDs —, else any of `context_values`, the
    context's other values); lenient wants the word anywhere. For a value target: `score_any_reference`, where a
    "none" written before the value counts against strict.

    Returns:
        Score with metric "any-reference".
    """
    none = re.compile(r"(?<![A-Za-z])none(?![A-Za-z])", flags=re.I)
    said_none = none.search(prediction)
    if target.lower() == "none":
        rest = none.sub(" ", prediction)
        invented = (extract(rest) if shaped else None) or next((v for v in context_values if _found(rest, v)), None)
        ok = bool(said_none) and invented is None
        return Score(correct=ok, lenient=bool(said_none), extracted="none" if said_none else invented,
                     score=float(ok), metric="any-reference")
    s = score_any_reference(prediction, [target], extract=extract)
    at = prediction.lower().find(target.lower())
    if said_none and (at < 0 or said_none.start() < at):
        s = replace(s, correct=False)
    return s
