"""The result record (one JSON line per sample) and the run directory that holds them.

A run directory is the unit of resumption:
  run.json       the experiment's identity (task, model, extension, runner, seed, ...), the machine, package
                 versions, git sha and every command line that wrote into it;
  results.jsonl  one `SampleRecord` per line, appended and flushed (fsync) as each sample finishes.
Re-running the same command skips samples whose key is already in results.jsonl. Reports only read these files.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness.errors import UserError

SCHEMA_VERSION = 3  # 2: adds `score`, `metric` (partial credit for multi-reference tasks) and `cache_bytes`;
# 3: adds `kernel`
RESULTS = "results.jsonl"
RUN = "run.json"


@dataclass(frozen=True)
class SampleRecord:
    """One evaluated sample. Missing values are None (null in JSON), never a sentinel like -1."""

    task: str  # task family, e.g. "passkey", "needle"
    model: str  # model name as given (e.g. "smollm2") or checkpoint path
    extension: str  # position-extension method name, "none" for the unmodified model
    extension_params: dict  # the extension's resolved parameters (after defaults)
    runner: str  # runner name, e.g. "hf"
    context_length: int  # target length in tokens (prompt + generation budget never exceeds it)
    tokens: int  # realised prompt length in tokens, as fed to the model
    depth: float | None  # needle position as a fraction of the haystack (None where the task has no needle)
    sample_id: int  # index of the sample within its (context_length, depth) cell
    seed: int  # the experiment seed the sample was generated from
    prediction: str  # the model's decoded output (raw; reports escape it)
    target: str  # the expected answer
    correct: bool  # strict: the answer extracted from the prediction equals the target
    lenient: bool  # the target occurs as a substring of the prediction
    latency_s: float  # wall time of the whole request (prefill + decode)
    peak_mem_bytes: int | None  # peak memory during the request (see mem_kind)
    mem_kind: str | None = None  # "rss" (process resident set, CPU) or "cuda" (max allocated on the device)
    prefill_s: float | None = None  # wall time of the prompt forward pass alone
    new_tokens: int | None = None  # number of generated tokens
    needle_token_offset: int | None = None  # token index of the needle's first token in the prompt
    haystack: str | None = None  # haystack kind, e.g. "noise", "essay"
    dtype: str | None = None  # compute dtype of the runner, e.g. "float32"
    model_max_position: int | None = None  # the model's native context window (max_position_embeddings)
    prompt_sha: str | None = None  # sha256 of the prompt text, for determinism checks and de-duplication
    error: str | None = None  # set when the runner failed on this sample (then prediction is empty)
    cache_bytes: int | None = None  # KV-cache (or recurrent-state) bytes held at the end of the request
    cached_tokens: int | None = None  # prompt tokens served from a prefix cache (vLLM's prefix caching)
    score: float | None = None  # the task's primary metric for this sample in [0, 1] (partial credit allowed)
    metric: str | None = None  # what `score` means: "exact", "all-references", "any-reference"
    kernel: str | None = None  # attention implementation(s) that ran: sdpa, eager, reference, cpu, triton, flash-attn
    schema_version: int = SCHEMA_VERSION  # bumped whenever a field changes meaning

    @property
    def key(self) -> tuple:
        return sample_key(self.task, self.context_length, self.depth, self.sample_id)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict) -> "SampleRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def sample_key(task: str, context_length: int, depth: float | None, sample_id: int) -> tuple:
    """The identity of a sample inside a run directory (the experiment identity lives in run.json)."""
    return (task, int(context_length), None if depth is None else round(float(depth), 6), int(sample_id))


def read_records(run_dir: str | Path) -> list[SampleRecord]:
    """All complete records of a run; a torn last line (a crash mid-write) is skipped with a warning."""
    path = Path(run_dir) / RESULTS
    if not path.exists():
        return []
    records = []
    with path.open(encoding="utf-8") as f:
        lines = f.readlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(SampleRecord.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError) as e:
            if i == len(lines) - 1:
                warnings.warn(f"{path}: ignoring an incomplete last line ({e})")
            else:
                raise UserError(f"{path}:{i + 1}: not a valid result record ({e})") from None
    return records


@dataclass
class RunDir:
    """A run directory opened for appending. Use `RunDir.open(path, identity, invocation)`."""

    path: Path
    identity: dict
    done: set = field(default_factory=set)

    @classmethod
    def open(cls, path: str | Path, identity: dict, invocation: dict) -> "RunDir":
        """Create or resume a run directory.

        `identity` is everything that makes two samples with the same key comparable (task, model, extension and
        its params, runner, dtype, seed, haystack ...). Resuming with a different identity is refused: the grid
        (lengths, depths, samples) may grow, but the meaning of existing records may not change.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        run_file = path / RUN
        meta = {"schema_version": SCHEMA_VERSION, "identity": identity, "invocations": []}
        if run_file.exists():
            meta = json.loads(run_file.read_text())
            if meta.get("identity") != identity:
                diff = sorted(k for k in set(identity) | set(meta.get("identity", {}))
                              if identity.get(k) != meta.get("identity", {}).get(k))
                raise UserError(f"{path} holds a different experiment (differs in: {', '.join(diff)}); "
                                f"use another --out directory")
        meta["invocations"].append(invocation)
        _atomic_write(run_file, json.dumps(meta, indent=2, sort_keys=True))
        _repair_torn_tail(path / RESULTS)
        # A record with an error (a crashed request) does not count as done: resuming retries it.
        done = {r.key for r in read_records(path) if r.error is None}
        return cls(path=path, identity=identity, done=done)

    def note_load(self, load_info: dict) -> None:
        """Attach what the runner reported on load (dtype, device, what the extension patched) to this invocation."""
        run_file = self.path / RUN
        meta = json.loads(run_file.read_text())
        meta["invocations"][-1]["load"] = load_info
        _atomic_write(run_file, json.dumps(meta, indent=2, sort_keys=True))

    def append(self, record, filename: str = RESULTS) -> None:
        """Append one record (anything with to_json and key) and fsync: a crash loses at most this line."""
        with (self.path / filename).open("a", encoding="utf-8") as f:
            f.write(record.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done.add(record.key)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _repair_torn_tail(path: Path) -> None:
    """Drop a partial last line left by a crash, so that appended records start on a fresh line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        print(f"warning: {path}: dropping an incomplete last record ({len(data) - cut} bytes)", file=sys.stderr)
        with path.open("r+b") as f:
            f.truncate(cut)


def iter_run_dirs(paths: list[str]) -> Iterator[Path]:
    """Expand report arguments: a run directory, or a directory whose subdirectories are run directories."""
    for p in map(Path, paths):
        if (p / RESULTS).exists() or (p / RUN).exists():
            yield p
        elif p.is_dir():
            found = sorted(d for d in p.rglob(RUN))
            if not found:
                raise UserError(f"{p} holds no run (no {RUN} found below it)")
            for f in found:
                yield f.parent
        else:
            raise UserError(f"no run directory at {p}")


def load_run_meta(run_dir: Path) -> dict[str, Any]:
    f = Path(run_dir) / RUN
    return json.loads(f.read_text()) if f.exists() else {}
