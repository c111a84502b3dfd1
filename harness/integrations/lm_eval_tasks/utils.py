"""lm-eval glue for longctx's tasks: datasets generated on the fly (token-exact, seeded) and our scorers.

lm-eval imports this module when it loads the YAML files beside it (`!function utils.…`), which also registers
the `longctx` model, so `--include_path $(longctx lm-eval-tasks-path)` makes both our tasks and our model known.

Options come through lm-eval's `--metadata` JSON: tokenizer (a longctx model name or checkpoint path used to
measure lengths, default "smollm2"), max_seq_lengths (default [4096]), depths, samples, seed, haystack.
"""
from __future__ import annotations

try:  # registering the model needs lm-eval itself, which is importing us
    import harness.integrations.lm_eval_model  # noqa: F401
except ImportError:  # pragma: no cover - lm-eval missing means nobody is loading these YAMLs
    pass


def _dataset(task_name: str, tokenizer: str = "smollm2", max_seq_lengths=(4096,), depths=(0.25, 0.5, 0.75),
             samples: int = 1, seed: int = 0, haystack: str = "noise", max_new_tokens: int | None = None,
             prompt_format: str = "base", answer_prefix: bool = True, qa_file: str | None = None,
             style: str = "longctx", **_):
    import datasets

    from evals.registry import make_config, make_task
    from harness.experiment import load_tokenizer_and_config
    from harness.models import resolve_model

    tok, _ = load_tokenizer_and_config(resolve_model(tokenizer).path)
    extra = {**({"max_new_tokens": max_new_tokens} if max_new_tokens else {}), **({"qa_file": qa_file} if qa_file else {}),
             **({"style": style} if style != "longctx" else {})}
    cfg = make_config(task_name, {"lengths": tuple(int(n) for n in max_seq_lengths), "depths": tuple(depths),
                                  "samples": samples, "seed": seed, "haystack": haystack, "prompt_format": prompt_format,
                                  "answer_prefix": answer_prefix, **extra}, known_only=True)
    task = make_task(task_name, cfg)
    rows = []
    for s in (task.formatted(tok, *cell) for cell in task.cells()):
        rows.append({"prompt": s.prompt, "target": s.target, "context_length": s.context_length,
                     "depth": s.depth, "sample_id": s.sample_id, "tokens": s.tokens,
                     "references": list(s.meta.get("references", [s.target])), "task": task_name})
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def process_results(doc: dict, results: list[str]) -> dict:
    """Score with the task's own scorer; strict and lenient side by side."""
    from evals.base import Sample
    from evals.registry import make_config, make_task

    pred = results[0]
    task = make_task(doc["task"], make_config(doc["task"], {"lengths": (doc["context_length"],)}))
    sample = Sample(task=doc["task"], context_length=doc["context_length"], depth=doc["depth"],
                    sample_id=doc["sample_id"], seed=0, prompt="", target=doc["target"], tokens=doc["tokens"],
                    max_new_tokens=0, needle_token_offset=None, haystack="",
                    meta={"references": doc["references"]})
    score = task.score(sample, pred)
    return {"score": score.value, "strict": float(score.correct), "lenient": float(score.lenient)}


def task_for(function_name: str) -> str | None:
    """The registered task a YAML's `!function utils.<name>` means: niah_multikey → niah-multikey; the generated
    YAMLs (harness.integrations.lm_eval_tasks.write_task_files) name one function per generation task of the
    registry."""
    from evals.registry import TASKS, task_names

    aliases = {"niah_single": "needle"}
    name = aliases.get(function_name, function_name.replace("_", "-"))
    if name in task_names() and not (name in TASKS and TASKS.get(name).scores_tokens):
        return name
    return None


def __getattr__(function_name: str):
    """`utils.passkey`, `utils.niah_multikey`, ...: the dataset of that task (PEP 562 module attribute)."""
    import functools

    task = task_for(function_name) if not function_name.startswith("__") else None
    if task is None:
        raise AttributeError(function_name)
    return functools.partial(_dataset, task)
