"""A scripted runner for unit tests of callers (the experiment loop, the CLI, reports). Never evidence.

It answers each prompt with a function of the prompt; by default it "finds" a five- or seven-digit number stated in
the prompt only when the prompt is at most `reach` characters long, so loops and reports see a pass/fail pattern.
"""
from __future__ import annotations

import re
import time
from typing import Callable, ClassVar

from harness.runners.base import Capabilities, Generation, GenerationRequest, LoadInfo


def _default_answer(prompt: str, reach: int) -> str:
    m = re.search(r" is (\d{5,7})\.", prompt)
    if m and len(prompt) <= reach:
        return f" {m.group(1)}."
    return " I do not know."


class ScriptedRunner:
    name: ClassVar[str] = "fake"
    capabilities: ClassVar[Capabilities] = Capabilities(mechanisms=frozenset(), batch_size=4)

    def __init__(self, reach: int = 10**9, answer: Callable[[str], str] | None = None, die_once: str = "",
                 delay_s: float = 0.0, **_):
        self.reach = reach
        self.die_once = die_once  # a path: the first process to answer a request creates it and dies (SIGKILL-like)
        self.delay_s = delay_s  # seconds per request, so that a test can kill a run mid-way
        self.answer = answer
        self.loaded = None
        self.calls: list[GenerationRequest] = []

    def load(self, model_path, extension, extension_config, max_length=None) -> LoadInfo:
        self.loaded = (model_path, extension)
        return LoadInfo(dtype="float32", device="cpu", model_max_position=None)

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        out = []
        for r in requests:
            if self.die_once:
                import os

                try:
                    fd = os.open(self.die_once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    os.close(fd)
                    os._exit(137)
            time.sleep(self.delay_s)
            self.calls.append(r)
            t0 = time.perf_counter()
            text = self.answer(r.prompt) if self.answer else _default_answer(r.prompt, self.reach)
            out.append(Generation(text=text, prompt_tokens=None, new_tokens=len(text.split()),
                                  latency_s=time.perf_counter() - t0))
        return out

    def close(self) -> None:
        self.loaded = None
