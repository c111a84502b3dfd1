"""Key-value retrieval (InfiniteBench's kv_retrieval style): the haystack is one JSON object of random UUID → UUID
pairs filling the context, and the question asks for the value of one key. There is no filler text: every token
of the haystack is a plausible answer to some other question, which makes this harder than a needle in noise.

The asked-for pair sits at the entry index nearest depth × (number of other pairs). Scoring: any-reference over
the one value (RULER's semantics); strict means the first UUID of the output is the value.
"""
from __future__ import annotations

import json
import random
import uuid
from typing import Iterator

from evals.base import NeedleTask, Sample, build_entries_prompt, require_answer_room
from evals.scoring import Score, first_uuid, score_any_reference


def random_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def pair_entry(key: str, value: str) -> str:
    """One member of the object as json.dumps writes it: '"key": "value"'."""
    return f"{json.dumps(key)}: {json.dumps(value)}"


class KeyValueTask(NeedleTask):
    """Find one key's value in a JSON object of UUID pairs.

    It refuses the config's haystack and haystack_file (the object is the haystack; samples record "json").
    Generation budget: a UUID value (with its full stop) takes up to 38 tokens with SmolLM2's tokenizer:
    use --max-new-tokens 48. A pair costs ~70 tokens, so a short context holds only a few, and some lengths below
    ~700 tokens cannot be filled to within 1 % (a UserError says so; 512 can).
    """

    name = "kv"
    uses_haystack = False
    default_budget = 48
    preamble = "Below is a JSON object whose keys and values are random IDs. Look up the key you are asked about.\n"

    def sample(self, tokenizer, length: int, depth: float, sample_id: int) -> Sample:
        c = self.config
        rng = random.Random(f"{self.name}|{c.seed}|{length}|{depth!r}|{sample_id}")
        key, value = random_uuid(rng), random_uuid(rng)
        require_answer_room(tokenizer, self.name, value, self.max_new_tokens)
        question = f'\nWhat is the value of the key "{key}"? The value of "{key}" is'
        built = build_entries_prompt(tokenizer, head=self.preamble + "{", target=pair_entry(key, value),
                                     entries=self._pairs(rng, {key, value}), tail="}" + question,
                                     budget=self.prompt_budget(length), depth=depth, sep=", ")
        return Sample(task=self.name, context_length=length, depth=depth, sample_id=sample_id, seed=c.seed,
                      prompt=built.prompt, target=value, tokens=built.tokens, max_new_tokens=self.max_new_tokens,
                      needle_token_offset=built.needle_token_offset, haystack="json",
                      meta={"key": key, "references": [value], "entries": len(built.entries),
                            "target_index": built.target_index})

    @staticmethod
    def _pairs(rng: random.Random, used: set[str]) -> Iterator[str]:
        """Endless UUID pairs, every UUID new (so no key repeats and no value is ambiguous)."""
        while True:
            k, v = random_uuid(rng), random_uuid(rng)
            if k in used or v in used or k == v:
                continue
            used |= {k, v}
            yield pair_entry(k, v)

    def score(self, sample: Sample, prediction: str) -> Score:
        return score_any_reference(prediction, [sample.target], extract=first_uuid)
