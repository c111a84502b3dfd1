"""RULER's needle variants (Hsieh et al. 2024, "RULER: What's the Real Context Size of Your Long-Context Language
Models?"): several key → value needles in one haystack.

- `niah-multikey`: one asked-for needle plus distractor needles with other keys; the answer is the asked key's value.
- `niah-multivalue`: several values bound to one key at different depths; every value must be returned.
- `niah-multiquery`: several keys asked at once; every key's value must be returned.

Values are seven-digit numbers (default), words from `WORDS`, or UUIDs. Scoring follows RULER: multikey earns 1 if
its value occurs in the output (any-reference over one reference); multivalue and multiquery earn the fraction of
values that occur (all-references). Variants are presets: `PRESETS` of each class maps a name to constructor
keywords, and a task's `name` is the preset its parameters match, so records of different variants never mix.

Depths: the first needle sits at the requested depth; with m needles the others follow at depth + j/m (wrapping
past 1), spread evenly over the haystack.
"""
from __future__ import annotations

import dataclasses
import inspect
import random
import uuid
from dataclasses import dataclass, field

from evals.base import NeedleTask, Sample, TaskConfig, build_needles_prompt, require_answer_room
from evals.haystack import sentence_stream
from evals.scoring import (Score, all_numbers, first_number, first_uuid, first_word, score_absent,
                           score_all_references, score_any_reference, score_references_in_order)
from harness.errors import UserError, unknown_name

VALUE_KINDS = ("numbers", "words", "uuids")

# Keys: adjective + noun (20 × 20 = 400), none of them among the value words below.
ADJECTIVES = ("amber", "silent", "northern", "copper", "velvet", "hollow", "crimson", "quiet", "distant", "iron",
              "golden", "frozen", "hidden", "bright", "ancient", "gentle", "rusty", "lonely", "misty", "swift")
NOUNS = ("falcon", "harbour", "lantern", "orchard", "glacier", "meadow", "compass", "tower", "river", "garden",
         "anchor", "bridge", "canyon", "chapel", "forest", "island", "mirror", "valley", "window", "beacon")

# Value words: concrete, unambiguous, one per meaning, distinct from the keys and from the filler haystacks' words.
WORDS = ("pelican", "saffron", "turbine", "walnut", "marble", "trumpet", "cactus", "lobster", "violin", "pepper",
         "tractor", "giraffe", "blanket", "kettle", "pumpkin", "rocket", "sapphire", "teapot", "umbrella", "wizard",
         "biscuit", "carpet", "dolphin", "elbow", "feather", "gorilla", "helmet", "igloo", "jacket", "koala",
         "lemon", "magnet", "noodle", "octopus", "parrot", "quilt", "radish", "saddle", "tulip", "unicorn",
         "vulture", "waffle", "yogurt", "zebra", "almond", "buffalo", "cobalt", "dagger", "emerald", "flannel",
         "garlic", "hammer", "ivory", "jigsaw", "kayak", "ladder", "mustard", "nutmeg", "oyster", "pretzel",
         "quartz", "raccoon", "scooter", "thimble", "vanilla", "whistle", "anvil", "badger", "candle", "donkey",
         "eagle", "fossil", "goblet", "hazelnut", "iguana", "juniper", "kitten", "lizard", "mango", "nickel",
         "olive", "panther", "rhubarb", "salmon", "tinsel", "walrus", "acorn", "bucket", "cherry", "dragon",
         "engine", "fiddle", "ginger", "hornet", "pickle", "sponge", "tomato", "velcro", "wombat", "zipper")

_VALUE_NOUN = {"numbers": "number", "words": "word", "uuids": "ID"}
_EXTRACT = {"numbers": first_number, "words": first_word, "uuids": first_uuid}


def make_values(kind: str, rng: random.Random, count: int) -> list[str]:
    """`count` distinct values of one kind: 7-digit numbers, words from WORDS, or UUIDs (version 4)."""
    values: list[str] = []
    if kind == "words":
        return rng.sample(WORDS, count)
    while len(values) < count:
        if kind == "numbers":
            v = str(rng.randint(1_000_000, 9_999_999))
        else:
            v = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if v not in values:
            values.append(v)
    return values


def make_keys(rng: random.Random, count: int) -> list[str]:
    """`count` distinct adjective-noun keys ("amber falcon")."""
    return [f"{a} {n}" for a, n in rng.sample([(a, n) for a in ADJECTIVES for n in NOUNS], count)]


def spread_depths(depth: float, count: int) -> list[float]:
    """The requested depth, then count - 1 more 1/count apart, wrapping past 1 (0.5, 4 → 0.5, 0.75, 0, 0.25)."""
    return [depth] + [(depth + j / count) % 1.0 for j in range(1, count)]


def join_phrase(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@dataclass(frozen=True)
class NeedleSet:
    """What a multi-needle task inserts and asks."""

    needles: list[tuple[str, float]]  # (needle sentence, depth), in the order build_needles_prompt receives them
    question: str  # ends in the answer prefix
    references: list[str]  # the answers, in the order `target` lists them
    anchor: int | None  # index in `needles` of the asked-for needle (the sample's needle_token_offset); None: absent
    meta: dict = field(default_factory=dict)


class MultiNeedleTask(NeedleTask):
    """Base of tasks with several needles: subclasses define `make_needles`, `score` and keyword-only parameters.

    `name` is the registered name of the family; an instance's `name` is the preset its parameters match, or the
    family name followed by its non-default parameters ("niah-multikey:num_keys=6").
    """

    PRESETS: dict[str, dict] = {}

    def __init__(self, config: TaskConfig, **params):
        super().__init__(config)
        self.params = params
        self.name = self._name_for(params)

    @classmethod
    def defaults(cls) -> dict:
        return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}

    @classmethod
    def from_preset(cls, preset: str, config: TaskConfig) -> "MultiNeedleTask":
        """The task of a named variant, e.g. `MultiKeyNeedle.from_preset("niah-multikey-uuids", config)`."""
        if preset not in cls.PRESETS:
            raise unknown_name("preset", preset, list(cls.PRESETS))
        return cls(config, **cls.PRESETS[preset])

    def _name_for(self, params: dict) -> str:
        defaults = self.defaults()
        for preset, overrides in self.PRESETS.items():
            if {**defaults, **overrides} == params:
                return preset
        changed = ",".join(f"{k}={v}" for k, v in params.items() if v != defaults[k])
        return f"{type(self).name}:{changed}"

    def make_needles(self, rng: random.Random, depth: float) -> NeedleSet:
        raise NotImplementedError

    # RULER's wording (--style ruler): (keys, values per key, keys asked) of this task's RULER counterpart
    def ruler_shape(self) -> tuple[int, int, int] | None:
        return None

    @property
    def styles(self) -> tuple[str, ...]:
        return ("longctx", "ruler") if self.ruler_shape() is not None else ("longctx",)

    def ruler_needles(self, rng: random.Random, depth: float) -> tuple[str, NeedleSet]:
        """RULER's NIAH prompt (Hsieh et al. 2024, its niah template): keys as adjective-noun words joined by a
        hyphen, needles "One of the special magic {numbers|words|uuids} for {key} is: {value}.", the question "What
        are all the special magic ... for {keys} mentioned in the provided text?" and its answer prefix. The needles
        are spread from the requested depth (the first asked key's first value at it), not shuffled as in RULER."""
        keys_n, per_key, asked = self.ruler_shape()
        kind = self.params["value_kind"]
        keys = [k.replace(" ", "-") for k in make_keys(rng, keys_n)]
        values = make_values(kind, rng, keys_n * per_key)
        texts = [f"One of the special magic {kind} for {k} is: {values[i * per_key + j]}."
                 for i, k in enumerate(keys) for j in range(per_key)]
        query = keys[0] if asked == 1 else ", ".join(keys[:asked - 1]) + ", and " + keys[asked - 1]
        preamble = (f"Some special magic {kind} are hidden within the following text. Make sure to memorize it. "
                    f"I will quiz you about the {kind} afterwards.\n")
        question = (f"\nWhat are all the special magic {kind} for {query} mentioned in the provided text? "
                    f"The special magic {kind} for {query} mentioned in the provided text are")
        depths = spread_depths(depth, len(texts))
        references = values[:asked * per_key]
        if per_key > 1:  # the values of one key in reading order, as the longctx wording lists them
            order = sorted(range(per_key), key=lambda i: (depths[i], i))
            references = [values[i] for i in order]
        return preamble, NeedleSet(needles=list(zip(texts, depths)), question=question, references=references,
                                   anchor=0, meta={"keys": keys[:asked], "style": "ruler"})

    def sample(self, tokenizer, length: int, depth: float, sample_id: int) -> Sample:
        c = self.config
        rng = random.Random(f"{self.name}|{c.seed}|{length}|{depth!r}|{sample_id}|{c.haystack}")
        preamble = self.preamble
        if c.style == "ruler":
            preamble, ns = self.ruler_needles(rng, depth)
            stream = ruler_noise() if c.haystack == "noise" else sentence_stream(c.haystack, rng, c.haystack_file)
        else:
            ns = self.make_needles(rng, depth)
            stream = sentence_stream(c.haystack, rng, c.haystack_file)
        target = ", ".join(ns.references)
        require_answer_room(tokenizer, self.name, target, self.max_new_tokens)
        built = build_needles_prompt(tokenizer, preamble, ns.needles, ns.question, stream,
                                     budget=self.prompt_budget(length))
        meta = {**self.params, **ns.meta, "references": list(ns.references),
                "needle_token_offsets": list(built.needle_token_offsets)}
        return Sample(task=self.name, context_length=length, depth=depth, sample_id=sample_id, seed=c.seed,
                      prompt=built.prompt, target=target, tokens=built.tokens, max_new_tokens=self.max_new_tokens,
                      needle_token_offset=None if ns.anchor is None else built.needle_token_offsets[ns.anchor],
                      haystack=c.haystack, meta=meta)


RULER_NOISE = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.")


def ruler_noise():
    """RULER's noise haystack: its five sentences repeated from the first (--style ruler with --haystack noise)."""
    while True:
        yield from RULER_NOISE


def _check_kind(value_kind: str) -> None:
    if value_kind not in VALUE_KINDS:
        raise UserError(f"unknown value kind {value_kind!r}; available: {', '.join(VALUE_KINDS)}")


def _check_count(what: str, n: int, least: int) -> None:
    if not least <= n <= len(ADJECTIVES) * len(NOUNS):
        raise UserError(f"{what} must be in [{least}, {len(ADJECTIVES) * len(NOUNS)}], got {n}")


ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


class MultiKeyNeedle(MultiNeedleTask):
    """One asked-for key → value needle among `num_keys - 1` distractor needles with other keys and values.

    Harder variants in the spirit of RULERv2 (NVIDIA NeMo-Skills' second RULER), at most one at a time:
    - `absent_rate` (preset niah-multikey-absent, 0.5): in that share of the samples (drawn per sample, seeded) the
      asked key is in no needle and the right answer is "none"; the question says so in every sample, so a model
      that always answers "none" scores about 1 − absent_rate. Absent samples have no needle offset.
    - `copies` (preset niah-multikey-ordinal, 3): the asked key holds `copies` values at spread depths, and the
      question asks for the k-th of them in reading order (k drawn per sample); strict and score both want that
      value as the first number written (listing every value is not an answer).
    - `compute` (preset niah-multikey-compute): copy-then-compute; the answer is the value, then the value plus one.
      Scored as all-references, so 0.5 means the value was found and the arithmetic failed, 1.0 both: retrieval
      and the computation on what was retrieved are told apart.

    Generation budget (answer + full stop, SmolLM2's tokenizer): a number takes 9 tokens and a word at most 4, so the
    default --max-new-tokens 12 suffices; a UUID takes up to 38: use --max-new-tokens 48 for niah-multikey-uuids;
    copy-then-compute writes two numbers and a few words (32).
    """

    name = "niah-multikey"
    PRESETS = {
        "niah-multikey": {},
        "niah-multikey-words": {"value_kind": "words"},
        "niah-multikey-uuids": {"value_kind": "uuids"},
        "niah-multikey-absent": {"absent_rate": 0.5},
        "niah-multikey-ordinal": {"copies": 3},
        "niah-multikey-compute": {"compute": True},
    }

    def __init__(self, config: TaskConfig, *, num_keys: int = 4, value_kind: str = "numbers",
                 absent_rate: float = 0.0, copies: int = 1, compute: bool = False):
        _check_kind(value_kind)
        _check_count("num_keys", num_keys, 1)
        if not 0.0 <= absent_rate <= 1.0:
            raise UserError(f"absent_rate must be in [0, 1], got {absent_rate}")
        if not 1 <= copies <= len(ORDINALS):
            raise UserError(f"copies must be in [1, {len(ORDINALS)}], got {copies}")
        if sum((absent_rate > 0, copies > 1, bool(compute))) > 1:
            raise UserError("niah-multikey takes one of absent_rate, copies and compute at a time")
        if compute and value_kind != "numbers":
            raise UserError("compute (copy-then-compute) adds one to a number: it needs value_kind numbers")
        super().__init__(config, num_keys=num_keys, value_kind=value_kind, absent_rate=float(absent_rate),
                         copies=int(copies), compute=bool(compute))
        noun = _VALUE_NOUN[value_kind]
        self.preamble = f"Some secret {noun}s are hidden in the irrelevant text below. Find them and memorize them.\n"

    def budget(self) -> int:
        return 48 if self.params["value_kind"] == "uuids" else 32 if self.params["compute"] else 12

    def ruler_shape(self):
        p = self.params
        plain = p["absent_rate"] == 0 and p["copies"] == 1 and not p["compute"]
        return (p["num_keys"], 1, 1) if plain else None

    def make_needles(self, rng: random.Random, depth: float) -> NeedleSet:
        p = self.params
        n, kind, copies = p["num_keys"], p["value_kind"], p["copies"]
        noun = _VALUE_NOUN[kind]
        absent = p["absent_rate"] > 0 and rng.random() < p["absent_rate"]
        keys, values = make_keys(rng, n + absent), make_values(kind, rng, n + copies - 1 + absent)
        key = keys[0]
        if absent:  # every needle is a distractor: keys[1:] with values[1:]
            texts = [f"The secret {noun} for the {k} is {v}." for k, v in zip(keys[1:], values[1:])]
            question = (f"\nIf the text gives no secret {noun} for the {key}, answer none. What is the secret {noun} "
                        f"for the {key}? The secret {noun} for the {key} is")
            return NeedleSet(needles=list(zip(texts, spread_depths(depth, n))), question=question,
                             references=["none"], anchor=None,
                             meta={"key": key, "absent": True, "distractor_keys": keys[1:],
                                   "distractor_values": values[1:]})
        if copies > 1:  # the asked key's values first (the first at the requested depth), then the distractors
            texts = [f"One of the secret {noun}s for the {key} is {v}." for v in values[:copies]] + \
                [f"The secret {noun} for the {k} is {v}." for k, v in zip(keys[1:], values[copies:])]
            depths = spread_depths(depth, len(texts))
            reading = sorted(range(copies), key=lambda i: (depths[i], i))  # the asked key's needles in text order
            k = rng.randrange(copies)
            ordinal = ORDINALS[k]
            question = (f"\nThe text gives {copies} secret {noun}s for the {key}. What is the {ordinal} of them, "
                        f"counting from the start of the text? The {ordinal} secret {noun} for the {key} is")
            return NeedleSet(needles=list(zip(texts, depths)), question=question, references=[values[reading[k]]],
                             anchor=reading[k],
                             meta={"key": key, "ordinal": k + 1, "copies_in_order": [values[i] for i in reading],
                                   "distractor_keys": keys[1:], "distractor_values": values[copies:]})
        texts = [f"The secret {noun} for the {k} is {v}." for k, v in zip(keys, values)]
        needles = list(zip(texts, spread_depths(depth, n)))
        meta = {"key": key, "distractor_keys": keys[1:], "distractor_values": values[1:]}
        if p["compute"]:
            plus = str(int(values[0]) + 1)
            question = (f"\nWhat is the secret {noun} for the {key}, and what is that {noun} plus one? Write the "
                        f"{noun}, then the {noun} plus one. The secret {noun} for the {key} is")
            return NeedleSet(needles=needles, question=question, references=[values[0], plus], anchor=0, meta=meta)
        rule = f"If the text gives no secret {noun} for the {key}, answer none. " if p["absent_rate"] > 0 else ""
        question = f"\n{rule}What is the secret {noun} for the {key}? The secret {noun} for the {key} is"
        return NeedleSet(needles=needles, question=question, references=[values[0]], anchor=0,
                         meta={**meta, **({"absent": False} if rule else {})})

    def score(self, sample: Sample, prediction: str) -> Score:
        p = self.params
        if p["compute"]:
            return score_references_in_order(prediction, sample.meta["references"], all_numbers)
        if p["absent_rate"] > 0:
            return score_absent(prediction, sample.target, _EXTRACT[p["value_kind"]],
                                context_values=sample.meta.get("distractor_values", ()),
                                shaped=p["value_kind"] != "words")
        s = score_any_reference(prediction, [sample.target], extract=_EXTRACT[p["value_kind"]])
        return dataclasses.replace(s, score=float(s.correct), metric="first-answer") if p["copies"] > 1 else s


class MultiValueNeedle(MultiNeedleTask):
    """`num_values` values bound to one key, at spread depths; the answer lists them all (in reading order).

    Generation budget (the four answers joined by ", " plus a full stop, SmolLM2's tokenizer): four numbers take
    36 tokens (--max-new-tokens 48), four words at most 14 (16), four UUIDs up to 149 (160).
    """

    name = "niah-multivalue"
    PRESETS = {
        "niah-multivalue": {},
        "niah-multivalue-words": {"value_kind": "words"},
        "niah-multivalue-uuids": {"value_kind": "uuids"},
    }

    def __init__(self, config: TaskConfig, *, num_values: int = 4, value_kind: str = "numbers"):
        _check_kind(value_kind)
        _check_count("num_values", num_values, 1)
        super().__init__(config, num_values=num_values, value_kind=value_kind)
        noun = _VALUE_NOUN[value_kind]
        self.preamble = (f"Several secret {noun}s for one thing are hidden in the irrelevant text below. "
                         "Find them all and memorize them.\n")

    def budget(self) -> int:
        return {"numbers": 48, "words": 16, "uuids": 160}[self.params["value_kind"]]

    def ruler_shape(self):
        return 1, self.params["num_values"], 1

    def make_needles(self, rng: random.Random, depth: float) -> NeedleSet:
        n, kind = self.params["num_values"], self.params["value_kind"]
        noun = _VALUE_NOUN[kind]
        key, values = make_keys(rng, 1)[0], make_values(kind, rng, n)
        depths = spread_depths(depth, n)
        # Reading order: by depth (the builder keeps equal depths in the order given), so `target` lists the values
        # as they appear in the text.
        order = sorted(range(n), key=lambda i: (depths[i], i))
        needles = [(f"One of the secret {noun}s for the {key} is {values[i]}.", depths[i]) for i in order]
        question = f"\nWhat are all the secret {noun}s for the {key}? The secret {noun}s for the {key} are"
        return NeedleSet(needles=needles, question=question, references=[values[i] for i in order],
                         anchor=order.index(0), meta={"key": key})

    def score(self, sample: Sample, prediction: str) -> Score:
        return score_all_references(prediction, sample.meta["references"])


class MultiQueryNeedle(MultiNeedleTask):
    """`num_queries` key → value needles at spread depths, all asked at once; the answer lists the values in the
    order the question names the keys.

    Generation budget (the four answers joined by ", " plus a full stop, SmolLM2's tokenizer): four numbers take
    36 tokens (--max-new-tokens 48), four words at most 14 (16), four UUIDs up to 149 (160).
    """

    name = "niah-multiquery"
    PRESETS = {
        "niah-multiquery": {},
        "niah-multiquery-words": {"value_kind": "words"},
        "niah-multiquery-uuids": {"value_kind": "uuids"},
    }

    def __init__(self, config: TaskConfig, *, num_queries: int = 4, value_kind: str = "numbers"):
        _check_kind(value_kind)
        _check_count("num_queries", num_queries, 1)
        super().__init__(config, num_queries=num_queries, value_kind=value_kind)
        noun = _VALUE_NOUN[value_kind]
        self.preamble = f"Some secret {noun}s are hidden in the irrelevant text below. Find them and memorize them.\n"

    def budget(self) -> int:
        return {"numbers": 48, "words": 16, "uuids": 160}[self.params["value_kind"]]

    def ruler_shape(self):
        return self.params["num_queries"], 1, self.params["num_queries"]

    def make_needles(self, rng: random.Random, depth: float) -> NeedleSet:
        n, kind = self.params["num_queries"], self.params["value_kind"]
        noun = _VALUE_NOUN[kind]
        keys, values = make_keys(rng, n), make_values(kind, rng, n)
        texts = [f"The secret {noun} for the {k} is {v}." for k, v in zip(keys, values)]
        named = join_phrase([f"the {k}" for k in keys])
        question = f"\nWhat are the secret {noun}s for {named}? The secret {noun}s for {named} are"
        return NeedleSet(needles=list(zip(texts, spread_depths(depth, n))), question=question,
                         references=values, anchor=0, meta={"keys": keys})

    def score(self, sample: Sample, prediction: str) -> Score:
        return score_all_references(prediction, sample.meta["references"])
