"""lm-eval task files, generated from the task registry: one YAML per generation task and preset (its generation
budget from the task itself) and the glue module `utils.py` they call. `longctx lm-eval-tasks-path` writes them and prints
the directory for `lm_eval --include_path`."""
from __future__ import annotations

import shutil
from pathlib import Path

DEFAULT_BUDGET = 32  # generation budget of a task that declares none
ALIASES = {"needle": "niah_single"}  # lm-eval names kept from before the files were generated

TEMPLATE = """task: longctx_{fn}
custom_dataset: !function utils.{fn}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{target}}}}"
target_delimiter: ""
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: {budget}
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: score
    aggregation: mean
    higher_is_better: true
  - metric: strict
    aggregation: mean
    higher_is_better: true
  - metric: lenient
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_task_files(dest: Path) -> list[str]:
    """Write utils.py and one longctx_<task>.yaml per registered generation task and per preset of one (mqar-keyed,
    niah-multikey-words, ...) into dest; returns task names."""
    from evals.registry import TASKS, make_config, make_task, presets, task_names

    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("longctx_*.yaml"):
        old.unlink()
    shutil.copyfile(Path(__file__).with_name("utils.py"), dest / "utils.py")
    names = []
    for name in task_names():
        if TASKS.get(presets().get(name, name)).scores_tokens:
            continue
        fn = ALIASES.get(name, name.replace("-", "_"))
        task = make_task(name, make_config(name, {"lengths": (4096,)}))
        budget = getattr(task, "max_new_tokens", None) or DEFAULT_BUDGET  # a preset's own (keyed: 40)
        (dest / f"longctx_{fn}.yaml").write_text(TEMPLATE.format(fn=fn, budget=budget))
        names.append(f"longctx_{fn}")
    return names
