"""Prompts generated once: a content-addressed cache of formatted samples.

A sample is stored under the SHA-256 of everything that decides its text: the generators' own source (any edit to
`evals/` makes new keys), the task's name and parameters, its config without the grid fields (lengths, depths,
samples), the cell (length, depth, sample id), the content of any file the task reads (haystack, QA file), and the
tokenizer (its serialised model, pre- and post-processing, special tokens and chat template). Same key, same
prompt — so a second run of a grid, another method on the same grid, or lm-eval's glue builds no prompt again.

Files: `$LONGCTX_HOME/prompts/<2 hex>/<sha256>.json` (one sample each, written to a temporary name and renamed, so
a crash leaves no half file and concurrent workers do not collide). `LONGCTX_PROMPT_CACHE=off` turns the cache
off, `LONGCTX_PROMPT_CACHE_DIR` moves it; deleting the folder is always safe.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path

from evals.base import Sample

GRID_FIELDS = ("lengths", "depths", "samples", "documents")
FILE_FIELDS = ("haystack_file", "qa_file")
_TOKENIZERS: dict[int, tuple[object, str]] = {}  # id → (the tokenizer, kept alive so the id stays its own; hash)


def enabled() -> bool:
    return os.environ.get("LONGCTX_PROMPT_CACHE", "on").lower() not in ("off", "0", "false", "no")


def folder() -> Path:
    """$LONGCTX_PROMPT_CACHE_DIR, else the prompts folder of longctx's home."""
    if os.environ.get("LONGCTX_PROMPT_CACHE_DIR"):
        return Path(os.environ["LONGCTX_PROMPT_CACHE_DIR"]).expanduser()
    from harness.paths import longctx_home

    return longctx_home() / "prompts"


@functools.lru_cache(maxsize=1)
def generators_version() -> str:
    """Hash of the source of every module in evals/: an edit to any generator changes every key."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """What decides how a tokenizer splits and wraps text: its serialised fast tokenizer (normaliser, pre-tokeniser,
    model, post-processor with BOS/EOS), else its vocabulary; its special tokens and chat template."""
    got = _TOKENIZERS.get(id(tokenizer))
    if got is not None and got[0] is tokenizer:
        return got[1]
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps([str(getattr(tokenizer, "chat_template", None)), str(getattr(tokenizer, "bos_token", None)),
                         str(getattr(tokenizer, "eos_token", None))]).encode())
    digest = h.hexdigest()
    _TOKENIZERS[id(tokenizer)] = (tokenizer, digest)
    return digest


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, stamp: float, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_digest(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        return "missing"
    st = p.stat()
    return _file_digest(str(p.resolve()), st.st_mtime, st.st_size)


def key(task, tokenizer, length: int, depth, sample_id: int) -> str:
    config = dataclasses.asdict(task.config)
    settings = {k: v for k, v in config.items() if k not in GRID_FIELDS}
    files = {k: file_digest(config[k]) for k in FILE_FIELDS if config.get(k)}
    own = {k: v for k, v in vars(task).items()  # what an instance sets for itself (a preamble built in __init__)
           if isinstance(v, (str, int, float, bool)) and k != "reserve"}
    doc = {"generators": generators_version(), "task": task.name, "class": type(task).__qualname__,
           "params": getattr(task, "params", {}), "own": own, "settings": settings, "files": files,
           "cell": [length, depth, sample_id], "tokenizer": tokenizer_fingerprint(tokenizer)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _path(digest: str) -> Path:
    return folder() / digest[:2] / f"{digest}.json"


def load(digest: str) -> Sample | None:
    try:
        data = json.loads(_path(digest).read_text("utf-8"))
        return Sample(**data)
    except (OSError, ValueError, TypeError):  # absent, torn or from another layout: build it again
        return None


def store(digest: str, sample: Sample) -> None:
    path = _path(digest)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(sample), ensure_ascii=False), "utf-8")
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache costs time, never a run
        pass
