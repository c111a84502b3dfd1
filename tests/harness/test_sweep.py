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
    from harness.sweep import compare  # the check docs/RESULTS.md §9 runs on SmolLM2 (scripts/compare_sweeps.py)

    assert compare([str(whole), str(tmp_path / "sharded")])[0]
    results = next((tmp_path / "sharded").glob("passkey-*")) / "results.jsonl"
    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:-1]) + "\n")  # one record lost
    ok, lines = compare([str(whole), str(tmp_path / "sharded")])
    assert not ok and "1 of" in lines[0] and "records missing" in lines[0]


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
    ("models: [m]\ntasks: [passkey, passkey]\nlengths: [1k]\nout: o", "two cells would share the run directory"),
    ("models: [m]\ntasks: [passkey]\nout: o", "lengths: required and non-empty (or give a search: mapping)"),
    ("models: [m]\ntasks: [passkey]\nsearch: {min: 1k}\nout: o", "search.max: required"),
    ("models: [m]\ntasks: [passkey]\nsearch: {min: 1k, max: 8k, treshold: 0.5}\nout: o",
     "search.treshold: unknown key"),
    ("models: [m]\ntasks: [passkey]\nsearch: {min: 8k, max: 1k}\nout: o", "search: search range must satisfy"),
    ("models: [m]\ntasks: [passkey]\nsearch: {min: 1k, max: 8k, max_samples: 4.5}\nout: o",
     "search.max_samples: expected int"),
    ("models: [m]\ntasks: [passkey]\nlengths: [1k]\nsearch: {min: 1k, max: 8k}\nout: o",
     "lengths: a search chooses its own lengths"),
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


@pytest.fixture(scope="module")
def quick_baselines(tmp_path_factory):
    """Seconds-long `train-baselines --quick` checkpoints of all four architectures, standing in for the trained
    ones that the baselines' experiment files name (runs/<run>/<architecture>): same architectures, same hosting."""
    from harness.baselines import ARCHITECTURES, QUICK, train_baselines

    import dataclasses

    out = tmp_path_factory.mktemp("bl")  # real vocabulary and length: mqar-64 fits 512 tokens under it, not 512
    train_baselines(dataclasses.replace(QUICK, vocab_size=2048, train_length=512), str(out), ARCHITECTURES,
                    log=lambda *_: None)
    return out


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "experiments").glob("*.yaml")))
def test_example_experiment_files_are_valid(name, smollm2_path, request):
    import dataclasses

    from harness.experiment import prepare
    from harness.sweep import load

    _, cells = load(str(REPO / "experiments" / name))
    assert cells
    for c in cells:
        exp = c.experiment
        if exp.model.startswith("runs/"):  # a training output (runs/<run>/<architecture>): a quick checkpoint of it
            quick = request.getfixturevalue("quick_baselines") / Path(exp.model).name
            exp = dataclasses.replace(exp, model=str(quick))
        prepare(exp, log=lambda *_: None)  # names, parameters, hosting, first prompts: all resolve


@pytest.mark.skipif(__import__("importlib").util.find_spec("ray") is None, reason="Ray is an optional extra")
def test_the_same_sweep_on_a_local_ray_instance_writes_the_same_records(tiny_llama_path, tmp_path):
    """Cells as Ray actors (one model load each), records streamed back and written by the driver: identical to
    the local run's records (everything but timings). The instance has one CPU and each actor takes one, so the
    second cell's actor can start only once the first cell's is done with (a sweep with more cells than slots
    once waited forever here: finished actors kept their slots)."""
    import signal

    import ray

    from harness.sweep import run_sweep

    text = _sweep(tiny_llama_path, tmp_path / "OUT").replace("tasks: [passkey, {name: niah-multikey, "
                                                             "max_new_tokens: 16}]", "tasks: [passkey]")
    local = run_sweep(_write(tmp_path, text.replace("OUT", "local")), log=lambda *_: None, progress=False)

    def hung(*_):
        raise TimeoutError("the Ray sweep did not finish in 240 s: cells waiting for slots never got one")

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")  # run_sweep's init
    previous = signal.signal(signal.SIGALRM, hung)  # joins this one-slot instance, and shuts it down at the end
    signal.alarm(240)
    try:
        on_ray = run_sweep(_write(tmp_path, text.replace("OUT", "ray")), log=lambda *_: None, progress=False,
                           executor="ray", cpus_per_worker=1)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        ray.shutdown()

    def fields(sweep_dir):
        return {(d.name, r.key, r.prediction, r.tokens, r.correct, r.prompt_sha) for d in sweep_dir.iterdir()
                for r in read_records(d)}

    assert fields(on_ray) == fields(local) and len(fields(local)) == 2 * 2 * 2


_RAY = pytest.mark.skipif(__import__("importlib").util.find_spec("ray") is None, reason="Ray is an optional extra")


@_RAY
def test_a_killed_ray_actor_is_restarted_and_its_cell_finished(tiny_llama_path, tmp_path):
    """The first actor to answer a request dies (os._exit, as a SIGKILL or the OOM killer would leave it): Ray
    restarts it, it loads again, the unfinished samples are retried; the records equal a local run's."""
    from harness.sweep import run_sweep

    text = f"""
out: OUT
models: [{tiny_llama_path}]
tasks: [passkey]
runners: [{{name: fake, options: {{die_once: DIE}}}}]
lengths: [512, 1k]
depths: [0.2, 0.5, 0.8]
"""
    local = run_sweep(_write(tmp_path, text.replace("OUT", str(tmp_path / "local")).replace("DIE", "''")),
                      log=lambda *_: None, progress=False)
    marker = tmp_path / "died"
    on_ray = run_sweep(_write(tmp_path, text.replace("OUT", str(tmp_path / "ray")).replace("DIE", str(marker))),
                       log=lambda *_: None, progress=False, executor="ray", cpus_per_worker=0.5)
    assert marker.exists()  # an actor did die
    got = {(r.key, r.prediction) for d in on_ray.iterdir() for r in read_records(d)}
    assert got == {(r.key, r.prediction) for d in local.iterdir() for r in read_records(d)} and len(got) == 6


def test_an_unanswering_ray_address_is_one_line_within_the_timeout():
    import socket
    import time

    from harness.errors import UserError
    from harness.sweep import check_ray_address

    with socket.socket() as s:  # bound, not listening: refused at once
        s.bind(("127.0.0.1", 0))
        with pytest.raises(UserError, match="no answer within"):
            check_ray_address(f"127.0.0.1:{s.getsockname()[1]}", timeout_s=2)
    with socket.socket() as s:  # listening (connections complete in the backlog) but never replying
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        t0 = time.perf_counter()
        with pytest.raises(UserError, match="no answer within 2 s"):
            check_ray_address(f"ray://127.0.0.1:{s.getsockname()[1]}", timeout_s=2)
        assert time.perf_counter() - t0 < 5
    with pytest.raises(UserError, match="HOST:PORT"):
        check_ray_address("not an address")


def test_sweep_progress_counts_cells_and_samples(tiny_llama_path, tmp_path):
    from harness.sweep import run_sweep

    lines = []
    text = _sweep(tiny_llama_path, tmp_path / "p").replace("runners: [hf]", "runners: [fake]")
    run_sweep(_write(tmp_path, text.replace(", {name: yarn, params: {factor: 2}}", "")), log=lines.append,
              progress=False)
    marks = [ln for ln in lines if ln.startswith("[sweep:")]
    assert marks[0].startswith("[sweep: cells 0/2, samples 0/8]") and "ETA" not in marks[0]
    assert "cells 1/2, samples 4/8, ETA" in marks[1]
    assert marks[-1].startswith("[sweep: cells 2/2, samples 8/8")


def test_a_sweep_killed_mid_way_resumes_without_loss_or_duplicates(tiny_llama_path, tmp_path):
    """`longctx run` killed with SIGKILL inside its second cell, then run again: every record once."""
    import signal
    import subprocess
    import sys
    import time

    text = _sweep(tiny_llama_path, tmp_path / "k").replace("runners: [hf]",
                                                            "runners: [{name: fake, options: {delay_s: 0.5}}]")
    text = text.replace(", {name: yarn, params: {factor: 2}}", "")  # 2 cells (tasks) x 4 samples
    f = _write(tmp_path, text)
    cmd = [sys.executable, "-m", "harness.cli", "run", f, "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sweep = tmp_path / "k"
    deadline = time.time() + 120
    while time.time() < deadline and sum(1 for _ in sweep.glob("*/run.json")) < 2:  # the second cell has begun
        time.sleep(0.05)
    time.sleep(0.5)  # inside its batch of four 0.5 s answers
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {d.name: len(read_records(d)) for d in sweep.iterdir()}
    assert 4 <= sum(before.values()) < 8, before  # killed mid-way, with the first cell finished
    subprocess.run(cmd, check=True, capture_output=True)
    keys = [(d.name, r.key) for d in sweep.iterdir() for r in read_records(d)]
    assert len(keys) == len(set(keys)) == 8


def test_a_sweep_can_search_each_cell_instead_of_running_a_grid(tiny_llama_path, tmp_path):
    """`search:` replaces the grid: each cell is an effective-length search (scripted runner: finds the key in
    prompts up to `reach` characters), with the bracket of a single `longctx search` on the same cell; shards split
    the search cells; Ray refuses them in one line."""
    import json

    from evals.base import TaskConfig
    from harness.errors import UserError
    from harness.experiment import Experiment
    from harness.runners.fake import ScriptedRunner
    from harness.search import SearchConfig, run_search
    from harness.sweep import run_sweep

    text = f"""
out: {tmp_path / "sweep"}
models: [{tiny_llama_path}]
tasks: [passkey]
runners: [{{name: fake, options: {{reach: 2500}}}}, {{name: fake, options: {{reach: 1200}}}}]
search: {{min: 256, max: 4k, threshold: 0.5, resolution: 1.25, max_samples: 8}}
"""
    f = _write(tmp_path, text)
    for i in (0, 1):
        run_sweep(f, shard=(i, 2), log=lambda *_: None, progress=False)
    cells = sorted((tmp_path / "sweep").iterdir())
    assert len(cells) == 2
    brackets = [json.loads((c / "search.json").read_text())["bracket"] for c in cells]
    single = run_search(Experiment(task="passkey", task_config=TaskConfig(lengths=(256,)), model=tiny_llama_path,
                                   runner="fake", runner_options={"reach": 2500}, out=str(tmp_path / "one")),
                        SearchConfig(low=256, high=4096, threshold=0.5, resolution=1.25, max_samples=8),
                        log=lambda *_: None, runner=ScriptedRunner(reach=2500))
    assert list(single.bracket) in brackets
    assert brackets[0] != brackets[1]  # the two reaches are bracketed apart
    with pytest.raises(UserError, match="search cells run with the local executor"):
        run_sweep(f, executor="ray", log=lambda *_: None)
