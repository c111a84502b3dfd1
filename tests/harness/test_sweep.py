"""Sweeps from experiment files: every cell checked before any runs, cells as ordinary run directories, shards
that partition the sweep, --dump-config that round-trips, and the example files in experiments/ valid."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.records import read_records

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path, text: str) -> str:
    f = tmp_path / "sweep.yaml"
    f.write_text(text)
    return str(f)


def _sweep(model: str, out: Path) -> str:
    return f"""
out: {out}
models: [{model}]
tasks: [passkey, {{name: niah-multikey, max_new_tokens: 16}}]
extensions: [none, {{name: yarn, params: {{factor: 2}}}}]
runners: [hf]
lengths: [512, 1k]
depths: [0.2, 0.8]
"""


def _all(sweep_dir: Path) -> set:
    return {(d.name, r.key, r.prediction) for d in sweep_dir.iterdir() if d.is_dir() for r in read_records(d)}


def test_a_sweep_runs_every_cell_and_two_shards_give_the_same_records(tiny_llama_path, tmp_path):
    from harness.sweep import run_sweep

    whole = run_sweep(_write(tmp_path, _sweep(tiny_llama_path, tmp_path / "whole")), log=lambda *_: None,
                      progress=False)
    cells = sorted(d.name for d in whole.iterdir())
    assert len(cells) == 4 and all((whole / c / "run.json").exists() for c in cells)  # 2 tasks x 2 extensions
    records = _all(whole)
    assert len(records) == 4 * 2 * 2  # cells x lengths x depths
    f = _write(tmp_path, _sweep(tiny_llama_path, tmp_path / "sharded"))
    for i in (0, 1):
        run_sweep(f, shard=(i, 2), log=lambda *_: None, progress=False)
    assert _all(tmp_path / "sharded") == records
    run_sweep(f, log=lambda *_: None, progress=False)  # everything done: resumes to nothing new
    assert len([r for d in (tmp_path / "sharded").iterdir() for r in read_records(d)]) == len(records)


def test_dump_config_round_trips(tiny_llama_path, tmp_path, capsys):
    from harness.cli import main
    from harness.sweep import load

    with pytest.raises(SystemExit) as exit_:
        main(["passkey", "-m", tiny_llama_path, "-l", "512,1k", "-d", "0.3", "-e", "yarn", "-E", "factor=2",
              "-R", "dtype=float32", "--out", str(tmp_path / "one" / "pk"), "--dump-config"])
    assert exit_.value.code == 0
    _, cells = load(_write(tmp_path, capsys.readouterr().out))
    (cell,) = cells
    e = cell.experiment
    assert (e.task, e.extension, e.extension_params, e.runner, e.runner_options) == (
        "passkey", "yarn", {"factor": 2}, "hf", {"dtype": "float32"})
    assert e.task_config.lengths == (512, 1024) and e.task_config.depths == (0.3,)


@pytest.mark.parametrize("text,needle", [
    ("models: [m]\ntasks: [passkey]\nlengths: [1k]\nextensions: [none, {name: yarn, parms: {}}]\nout: o",
     "extensions[1].parms: unknown key"),
    ("models: [m]\ntasks: [passkey]\nlengths: [1k, 4q]\nout: o", "lengths[1]: bad length"),
    ("models: [m]\ntasks: [passkey]\nlengths: [1k]\nsamples: many\nout: o", "samples: expected int"),
    ("models: [m]\ntasks: [passkey]\nlengths: [1k]\nextension: [none]\nout: o", "Did you mean 'extensions'?"),
    ("models: [m]\ntasks: [passkey]\nlengths: [1k]\nextensions: [{name: yarn, params: {factor: .nan}}]\nout: o",
     "extensions[0].params.factor: numbers must be finite"),
    ("models: [m]\ntasks: [passkey\n", "is not valid YAML"),
    ("- just a list", "expected a mapping"),
    ("models: [m]\nlengths: [1k]\nout: o", "tasks: required"),
])
def test_a_bad_experiment_file_is_one_line_naming_the_key(tmp_path, text, needle):
    from harness.errors import UserError
    from harness.sweep import load

    with pytest.raises(UserError) as err:
        load(_write(tmp_path, text))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_bad_cell_stops_the_sweep_before_anything_is_written(tiny_llama_path, tmp_path):
    from harness.errors import UserError
    from harness.sweep import run_sweep

    text = _sweep(tiny_llama_path, tmp_path / "s").replace("runners: [hf]", "runners: [hf, {name: hf, "
                                                                              "options: {impl: cpu}}]")
    with pytest.raises(UserError, match="unknown option of runner 'hf' 'impl'"):
        run_sweep(_write(tmp_path, text), log=lambda *_: None)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "experiments").glob("*.yaml")))
def test_example_experiment_files_are_valid(name, smollm2_path):
    from harness.experiment import prepare
    from harness.sweep import load

    _, cells = load(str(REPO / "experiments" / name))
    assert cells
    for c in cells:
        prepare(c.experiment, log=lambda *_: None)  # names, parameters, hosting, first prompts: all resolve


@pytest.mark.skipif(__import__("importlib").util.find_spec("ray") is None, reason="Ray is an optional extra")
def test_the_same_sweep_on_a_local_ray_instance_writes_the_same_records(tiny_llama_path, tmp_path):
    """Cells as Ray actors (one model load each), records streamed back and written by the driver: identical to
    the local run's records (everything but timings)."""
    from harness.sweep import run_sweep

    text = _sweep(tiny_llama_path, tmp_path / "OUT").replace("tasks: [passkey, {name: niah-multikey, "
                                                             "max_new_tokens: 16}]", "tasks: [passkey]")
    local = run_sweep(_write(tmp_path, text.replace("OUT", "local")), log=lambda *_: None, progress=False)
    on_ray = run_sweep(_write(tmp_path, text.replace("OUT", "ray")), log=lambda *_: None, progress=False,
                       executor="ray", cpus_per_worker=0.5)

    def fields(sweep_dir):
        return {(d.name, r.key, r.prediction, r.tokens, r.correct, r.prompt_sha) for d in sweep_dir.iterdir()
                for r in read_records(d)}

    assert fields(on_ray) == fields(local) and len(fields(local)) == 2 * 2 * 2
