"""Phone-book lookup, the copying/retrieval probe of Jelassi et al. 2024 ("Repeat After Me: Transformers are Better
than State Space Models at Copying"): the context is a list of "Firstname Lastname: 555-123-4567" lines, the
question asks for one person's number. A fixed-size recurrent state cannot hold an arbitrary long phone book, so
accuracy against length separates architectures sharply.

Names are unique within a sample (FIRST_NAMES × LAST_NAMES = 10,000 people, about 170k tokens of phone book), and
so are numbers. The asked-for line sits at the entry index nearest depth × (number of other lines). Scoring:
any-reference over the one number; strict means the first phone-shaped token of the output is the number.
"""
from __future__ import annotations

import random
from typing import Iterator

from evals.base import NeedleTask, Sample, build_entries_prompt, require_answer_room
from evals.scoring import Score, first_phone, score_any_reference
from harness.errors import UserError

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Margaret", "Donald", "Sandra",
    "Steven", "Ashley", "Paul", "Kimberly", "Andrew", "Emily", "Joshua", "Donna", "Kenneth", "Michelle",
    "Kevin", "Carol", "Brian", "Amanda", "George", "Melissa", "Timothy", "Deborah", "Ronald", "Stephanie",
    "Edward", "Rebecca", "Jason", "Sharon", "Jeffrey", "Laura", "Ryan", "Cynthia", "Jacob", "Kathleen",
    "Gary", "Amy", "Nicholas", "Angela", "Eric", "Shirley", "Jonathan", "Anna", "Stephen", "Brenda",
    "Larry", "Pamela", "Justin", "Emma", "Scott", "Nicole", "Brandon", "Helen", "Benjamin", "Samantha",
    "Samuel", "Katherine", "Gregory", "Christine", "Alexander", "Debra", "Frank", "Rachel", "Patrick", "Carolyn",
    "Raymond", "Janet", "Jack", "Catherine", "Dennis", "Maria", "Jerry", "Heather", "Tyler", "Diane",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
    "Gomez", "Phillips", "Evans", "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes",
    "Stewart", "Morris", "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper",
    "Peterson", "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson",
    "Watson", "Brooks", "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes",
    "Price", "Alvarez", "Castillo", "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "Jimenez",
)


def phone_number(rng: random.Random) -> str:
    """A North-American-shaped number: area code and exchange 200-999, then four digits."""
    return f"{rng.randint(200, 999)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"


class PhonebookTask(NeedleTask):
    """Find one person's number in a phone book that fills the context.

    It refuses the config's haystack and haystack_file (the phone book is the haystack; samples record
    "phonebook"). Generation budget: a number takes 14 tokens with SmolLM2's tokenizer (digits are single tokens):
    use --max-new-tokens 16.
    """

    name = "phonebook"
    uses_haystack = False
    default_budget = 16
    preamble = "Below is a phone book: each line gives a person's name and phone number.\n"

    def sample(self, tokenizer, length: int, depth: float, sample_id: int) -> Sample:
        c = self.config
        rng = random.Random(f"{self.name}|{c.seed}|{length}|{depth!r}|{sample_id}")
        people = [f"{f} {l}" for f in FIRST_NAMES for l in LAST_NAMES]
        rng.shuffle(people)
        name, number = people[0], phone_number(rng)
        require_answer_room(tokenizer, self.name, number, self.max_new_tokens)
        question = f"\nWhat is the phone number of {name}? The phone number of {name} is"
        built = build_entries_prompt(tokenizer, head=self.preamble, target=f"{name}: {number}",
                                     entries=self._lines(rng, people[1:], {number}), tail=question,
                                     budget=self.prompt_budget(length), depth=depth, sep="\n")
        return Sample(task=self.name, context_length=length, depth=depth, sample_id=sample_id, seed=c.seed,
                      prompt=built.prompt, target=number, tokens=built.tokens, max_new_tokens=self.max_new_tokens,
                      needle_token_offset=built.needle_token_offset, haystack="phonebook",
                      meta={"name": name, "references": [number], "entries": len(built.entries),
                            "target_index": built.target_index})

    @staticmethod
    def _lines(rng: random.Random, people: list[str], used: set[str]) -> Iterator[str]:
        """Lines for the other people, in their shuffled order, each with a number nobody else has."""
        for person in people:
            number = phone_number(rng)
            while number in used:
                number = phone_number(rng)
            used.add(number)
            yield f"{person}: {number}"
        raise UserError(f"the phone book holds only {len(people) + 1} people; use a shorter context length")

    def score(self, sample: Sample, prediction: str) -> Score:
        return score_any_reference(prediction, [sample.target], extract=first_phone)
