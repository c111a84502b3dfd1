"""Variable tracking (RULER, Hsieh et al. 2024): a chain of assignments hidden in the haystack,

    VAR BKTRD = 48213.  …  VAR QMWPL = VAR BKTRD.  …  VAR ZNCHF = VAR QMWPL.  …

and the question asks for every variable that ends up holding 48213. The score is the fraction of the chain's
variable names the output contains (RULER's all-references metric). Distractor chains (other names, other values)
can be added with `num_chains`.

Placement: the chain's first assignment sits at the requested depth and the others follow in order, spread evenly
over the rest of the haystack (assignment j of m at depth + (1 - depth) × j / m); distractor chains take seeded
random depths, each in its own order.
"""
from __future__ import annotations

import random

from evals.base import Sample, TaskConfig
from evals.ruler import MultiNeedleTask, NeedleSet
from evals.scoring import Score, score_all_references
from harness.errors import UserError

# Consonants only (no Y): five-letter names drawn from them are never English words, so a name cannot be "found"
# in an output that merely uses a common word (the metric is a case-insensitive substring test).
NAME_LETTERS = "BCDFGHJKLMNPQRSTVWXZ"


def make_names(rng: random.Random, count: int) -> list[str]:
    """`count` distinct five-letter variable names."""
    names: list[str] = []
    while len(names) < count:
        name = "".join(rng.choice(NAME_LETTERS) for _ in range(5))
        if name not in names:
            names.append(name)
    return names


def chain_texts(names: list[str], value: str) -> list[str]:
    """The assignments of one chain: the value to the first name, then each name to the one before it."""
    return [f"VAR {names[0]} = {value}."] + [f"VAR {b} = VAR {a}." for a, b in zip(names, names[1:])]


class VariableTracking(MultiNeedleTask):
    """Track one chain of `num_hops` reassignments (num_hops + 1 variables) through the haystack.

    Generation budget (SmolLM2's tokenizer): the five names of a default chain take up to 29 tokens: use
    --max-new-tokens 32 ("vt-2chains" too); the nine names of "vt-8hops" take up to 50: use 64.
    """

    name = "vt"
    preamble = "Some variable assignments are hidden in the irrelevant text below. Follow them and memorize them.\n"
    PRESETS = {
        "vt": {},
        "vt-2chains": {"num_chains": 2},
        "vt-8hops": {"num_hops": 8},
    }

    def __init__(self, config: TaskConfig, *, num_chains: int = 1, num_hops: int = 4):
        if num_chains < 1 or num_hops < 1:
            raise UserError(f"num_chains and num_hops must be at least 1, got {num_chains} and {num_hops}")
        super().__init__(config, num_chains=num_chains, num_hops=num_hops)

    def budget(self) -> int:
        hops = self.params["num_hops"]
        return 32 if hops <= 4 else 64 if hops <= 8 else 8 * (hops + 1)

    def make_needles(self, rng: random.Random, depth: float) -> NeedleSet:
        chains, m = self.params["num_chains"], self.params["num_hops"] + 1
        names = make_names(rng, chains * m)
        values: list[str] = []
        while len(values) < chains:
            v = str(rng.randint(10000, 99999))
            if v not in values:
                values.append(v)
        needles = [(t, depth + (1 - depth) * j / m) for j, t in enumerate(chain_texts(names[:m], values[0]))]
        for c in range(1, chains):
            depths = sorted(rng.random() for _ in range(m))
            needles += list(zip(chain_texts(names[c * m:(c + 1) * m], values[c]), depths))
        question = (f"\nWhich variables hold the value {values[0]}, directly or through another variable? "
                    f"The variables that hold {values[0]} are")
        return NeedleSet(needles=needles, question=question, references=names[:m], anchor=0,
                         meta={"value": values[0], "distractor_names": names[m:], "distractor_values": values[1:]})

    def score(self, sample: Sample, prediction: str) -> Score:
        return score_all_references(prediction, sample.meta["references"])
