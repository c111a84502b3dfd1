"""The extension ↔ task ↔ runner contract: a new method, task and runner are one module each plus one registry line,
and run end to end with no other file of the project touched.

The three modules below are written to a temporary directory (as a user's own package would be), registered by
name, and driven through the ordinary experiment loop, the CLI's listings, hosting checks and the report.
"""
from __future__ import annotations

import textwrap

import pytest

TOY_EXTENSION = '''
"""Scale RoPE's base by `factor` (a toy rope-parameters method)."""
from dataclasses import dataclass

from extensions.base import ExtensionConfig
from extensions.rope import RopeExtension, default_inv_freq, rope_dims


@dataclass(frozen=True)
class ThetaConfig(ExtensionConfig):
    factor: float = 2.0


class ThetaScale(RopeExtension):
    name = "toy-theta"
    config_cls = ThetaConfig

    def rope_parameters(self, config, hf_config):
        _, base = rope_dims(hf_config)
        return {**hf_config.rope_parameters, "rope_type": "default", "rope_theta": base * config.factor}

    def inv_freq(self, config, hf_config, seq_len=None):
        dim, base = rope_dims(hf_config)
        return default_inv_freq(dim, base * config.factor), 1.0
'''

TOY_TASK = '''
"""A colour hidden in the haystack (a toy needle task)."""
from evals.base import Needle, NeedleTask
from evals.scoring import Score

COLOURS = ["teal", "amber", "violet", "ochre"]


class ColourTask(NeedleTask):
    name = "toy-colour"
    preamble = "Remember the secret colour.\\n"

    def make_needle(self, rng):
        c = rng.choice(COLOURS)
        return Needle(text=f"The secret colour is {c}.", question="\\nThe secret colour is", target=c)

    def score(self, sample, prediction):
        words = prediction.strip(" .").split()
        return Score(correct=bool(words) and words[0] == sample.target, lenient=sample.target in prediction,
                     extracted=words[0] if words else None)
'''

TOY_RUNNER = '''
"""transformers' own `generate` (greedy) as a runner: the smallest real backend (a toy)."""
import time

from extensions.base import ROPE_PARAMETERS
from harness.runners.base import Capabilities, Generation, LoadInfo


class GenerateRunner:
    name = "toy-generate"
    capabilities = Capabilities(mechanisms=frozenset({ROPE_PARAMETERS}))

    def __init__(self, device="cpu", dtype="float32"):
        self.device, self.dtype = device, dtype

    def load(self, model_path, extension, extension_config, max_length=None):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        config = AutoConfig.from_pretrained(model_path)
        record = extension.configure(config, extension_config)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, config=config,
                                                          dtype=getattr(torch, self.dtype)).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        return LoadInfo(dtype=self.dtype, device=self.device, model_max_position=config.max_position_embeddings,
                        extension_record=record)

    def generate(self, requests):
        out = []
        for r in requests:
            ids = self.tokenizer(r.prompt, return_tensors="pt")["input_ids"]
            t0 = time.perf_counter()
            new = self.model.generate(ids, max_new_tokens=r.max_new_tokens, do_sample=False)[0, ids.shape[1]:]
            out.append(Generation(text=self.tokenizer.decode(new, skip_special_tokens=True),
                                  prompt_tokens=ids.shape[1], new_tokens=len(new),
                                  latency_s=time.perf_counter() - t0))
        return out

    def close(self):
        self.model = None
'''


TOY_CONFIG_TASK = '''
"""Repeat a word (a toy task with a config class of its own: no depths, no haystack, a `word` setting)."""
from dataclasses import dataclass

from evals.base import Sample, Task
from evals.scoring import Score


@dataclass(frozen=True)
class EchoConfig:
    lengths: tuple[int, ...]
    samples: int = 1
    seed: int = 0
    word: str = "teal"


class EchoTask(Task):
    name = "toy-echo"
    config_cls = EchoConfig

    def __init__(self, config: EchoConfig):
        self.config = config

    def cells(self):
        for n in self.config.lengths:
            for i in range(self.config.samples):
                yield n, None, i

    def sample(self, tokenizer, length, depth, sample_id):
        prompt = f"Say {self.config.word}. " * 8 + "Say"
        tokens = len(tokenizer(prompt)["input_ids"])
        return Sample(task=self.name, context_length=length, depth=None, sample_id=sample_id, seed=self.config.seed,
                      prompt=prompt, target=self.config.word, tokens=tokens, max_new_tokens=4,
                      needle_token_offset=None, haystack=None)

    def score(self, sample, prediction):
        return Score(correct=sample.target in prediction, lenient=sample.target in prediction, extracted=None)
'''

TOY_COMMAND = '''
"""`longctx toy-hello`: a command is a module and one registry line."""
import click


@click.command("toy-hello")
@click.option("--name", default="world")
def hello(name):
    """Say hello (a toy command)."""
    click.echo(f"hello {name}")
'''


@pytest.fixture
def toys(tmp_path, monkeypatch):
    """Write the three modules and register each with one line; the registries are restored afterwards."""
    from extensions import EXTENSIONS
    from evals.registry import TASKS
    from harness.runners import RUNNERS

    pkg = tmp_path / "plugins"
    pkg.mkdir()
    from harness.cli import COMMANDS

    for name, text in (("toy_extension", TOY_EXTENSION), ("toy_task", TOY_TASK), ("toy_runner", TOY_RUNNER),
                       ("toy_config_task", TOY_CONFIG_TASK), ("toy_command", TOY_COMMAND)):
        (pkg / f"{name}.py").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(pkg))
    for registry in (EXTENSIONS, TASKS, RUNNERS, COMMANDS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    EXTENSIONS.register("toy-theta", "toy_extension:ThetaScale")
    TASKS.register("toy-colour", "toy_task:ColourTask")
    TASKS.register("toy-echo", "toy_config_task:EchoTask")
    RUNNERS.register("toy-generate", "toy_runner:GenerateRunner")
    COMMANDS.register("toy-hello", "toy_command:hello")


def test_a_toy_extension_task_and_runner_run_end_to_end(toys, tiny_llama_path, tmp_path):
    import json

    from evals.base import TaskConfig
    from harness.experiment import Experiment, run
    from harness.records import read_records
    from reports.html import write_report

    out = tmp_path / "run"
    exp = Experiment(task="toy-colour", task_config=TaskConfig(lengths=(256, 384), depths=(0.2, 0.8)),
                     model=tiny_llama_path, extension="toy-theta", extension_params={"factor": 4},
                     runner="toy-generate", out=str(out))
    run(exp, log=lambda *_: None, progress=False)
    records = read_records(out)
    assert len(records) == 4
    assert {(r.task, r.extension, r.runner) for r in records} == {("toy-colour", "toy-theta", "toy-generate")}
    assert all(200 < r.tokens <= n for r in records for n in [r.context_length])
    assert all(r.target in ("teal", "amber", "violet", "ochre") for r in records)
    load = json.loads((out / "run.json").read_text())["invocations"][-1]["load"]
    assert load["extension_record"]["rope_parameters"]["rope_theta"] == 4 * 10000.0
    report = tmp_path / "r.html"
    write_report([str(out)], str(report))
    assert "toy-theta" in report.read_text() and "toy-colour" in report.read_text()


def test_hosting_listing_and_refusals_come_from_the_declarations(toys, tiny_llama_path, tmp_path, capsys):
    from harness.cli import main
    from harness.errors import UserError
    from harness.runners import check_hostable, hosts_of

    assert {"hf", "kernel", "vllm", "toy-generate"} <= set(hosts_of("toy-theta"))
    assert "toy-generate" not in hosts_of("sinks")
    with pytest.raises(UserError, match="runner 'toy-generate' cannot host extension 'sinks'"):
        check_hostable("toy-generate", "sinks")
    with pytest.raises(SystemExit):
        main(["tasks"])
    assert "toy-colour" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["extensions", "list"])
    listing = capsys.readouterr().out
    assert "toy-theta" in listing and "toy-generate" in listing
    with pytest.raises(SystemExit) as exit_:  # a misspelt runner option: the toy runner's signature is the check
        main(["retrieval", "-t", "toy-colour", "-m", tiny_llama_path, "-r", "toy-generate", "-R", "dtyp=float32",
              "-l", "256", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2 and "Did you mean 'dtype'?" in capsys.readouterr().err
    # lm-eval's task files come from the registry too: the toy task gets its YAML and its dataset function
    import importlib.util

    from harness.integrations.lm_eval_tasks import write_task_files

    names = write_task_files(tmp_path / "lm_eval")
    assert "longctx_toy_colour" in names and "longctx_passkey" in names
    assert "max_gen_toks: 12" in (tmp_path / "lm_eval" / "longctx_toy_colour.yaml").read_text()
    spec = importlib.util.spec_from_file_location("glue", tmp_path / "lm_eval" / "utils.py")
    glue = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(glue)
    ds = glue.toy_colour(tokenizer=tiny_llama_path, max_seq_lengths=[300], depths=[0.5])["test"]
    assert ds[0]["task"] == "toy-colour" and ds[0]["target"] in ("teal", "amber", "violet", "ochre")


def test_a_task_with_its_own_config_runs_from_an_experiment_file(toys, tiny_llama_path, tmp_path, capsys):
    """A task's experiment-file entry takes its config class's settings (checked by key and type); the file's grid
    keys reach the tasks that have them; --dump-config-style round trip through `dump`."""
    from harness.errors import UserError
    from harness.records import read_records
    from harness.sweep import dump, load, run_sweep

    f = tmp_path / "echo.yaml"
    f.write_text(f"out: {tmp_path / 'sweep'}\nmodels: [{tiny_llama_path}]\n"
                 "tasks: [{name: toy-echo, word: amber}, passkey]\nlengths: [256]\nsamples: 2\ndepths: [0.5]\n")
    _, cells = load(str(f))
    echo, passkey = (c.experiment.task_config for c in cells)
    assert type(echo).__name__ == "EchoConfig" and (echo.word, echo.samples, echo.lengths) == ("amber", 2, (256,))
    assert passkey.depths == (0.5,) and passkey.samples == 2
    assert "word: amber" in dump(cells[0].experiment) and "depths" not in dump(cells[0].experiment)
    run_sweep(str(f), log=lambda *_: None, progress=False)
    records = [r for d in (tmp_path / "sweep").iterdir() if d.name.startswith("toy-echo") for r in read_records(d)]
    assert len(records) == 2 and {r.target for r in records} == {"amber"}
    for entry, needle in (("{name: toy-echo, colour: red}", "tasks[0].colour: not a setting of this task"),
                          ("{name: toy-echo, word: 3}", "tasks[0].word: expected str")):
        f.write_text(f"out: o\nmodels: [m]\ntasks: [{entry}]\nlengths: [256]\n")
        with pytest.raises(UserError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            load(str(f))
    f.write_text("out: o\nmodels: [m]\ntasks: [toy-echo]\nlengths: [256]\ndepths: [0.5]\n")
    with pytest.raises(UserError, match="depths: no task of this file has this setting"):
        load(str(f))


def test_a_command_is_a_module_and_a_registry_line(toys, capsys):
    from harness.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["toy-hello", "--name", "longctx"])
    assert exit_.value.code == 0 and capsys.readouterr().out == "hello longctx\n"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "toy-hello" in capsys.readouterr().out

