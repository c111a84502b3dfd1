"""Every user mistake is one line on stderr and exit code 2 — no traceback — and nothing on disk is written or
changed. Table-driven over all commands (and lm-eval's --model_args); each case runs the real entry point
(`harness.cli.main`) in a fresh working directory holding a few prepared files, and compares the directory's tree
before and after."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

M = "{model}"  # replaced by the tiny checkpoint's path
RUN = ["passkey", "-m", M, "-l", "512", "--no-progress"]

CASES = [
    # (id, argv, a fragment of the one-line message)
    ("length-word", ["passkey", "-m", M, "-l", "abc"], "bad length 'abc'"),
    ("length-zero", ["passkey", "-m", M, "-l", "0"], "bad length '0'"),
    ("length-arabic-digits", ["passkey", "-m", M, "-l", "٤k"], "bad length"),
    ("length-fraction", ["passkey", "-m", M, "-l", "1.5"], "positive whole number"),
    ("length-too-short", ["passkey", "-m", M, "-l", "16"], "16"),
    ("depth-above-1", RUN + ["-d", "1.5"], "bad depth '1.5'"),
    ("depth-word", RUN + ["-d", "half"], "bad depth 'half'"),
    ("depth-nan", RUN + ["-d", "nan"], "bad depth 'nan'"),
    ("samples-zero", RUN + ["-n", "0"], "--samples must be at least 1"),
    ("samples-negative", RUN + ["-n", "-2"], "--samples must be at least 1"),
    ("haystack-typo", RUN + ["--haystack", "esay"], "unknown haystack 'esay'"),
    ("haystack-file-without-essay", RUN + ["--haystack-file", "text.txt"], "add --haystack essay"),
    ("haystack-file-missing", RUN + ["--haystack", "essay", "--haystack-file", "missing.txt"], "does not exist"),
    ("haystack-file-directory", RUN + ["--haystack", "essay", "--haystack-file", "adir"], "is a directory"),
    ("haystack-file-empty", RUN + ["--haystack", "essay", "--haystack-file", "empty.txt"], "usable sentences"),
    ("haystack-file-binary", RUN + ["--haystack", "essay", "--haystack-file", "blob.bin"], "binary"),
    ("haystack-file-latin1", RUN + ["--haystack", "essay", "--haystack-file", "latin1.txt"], "not UTF-8"),
    ("budget-zero", RUN + ["--max-new-tokens", "0"], "max_new_tokens must be at least 1"),
    ("budget-above-length", RUN + ["--max-new-tokens", "5000"], "--max-new-tokens 5000 leaves no room"),
    ("budget-too-small-for-answers", ["retrieval", "-t", "niah-multivalue", "-m", M, "-l", "1k",
                                      "--max-new-tokens", "4"], "raise --max-new-tokens"),
    ("runner-typo", RUN + ["-r", "hff"], "unknown runner 'hff'"),
    ("runner-fake-is-not-for-users", RUN + ["-r", "fake2"], "unknown runner"),
    ("extension-typo", RUN + ["-e", "yarm"], "Did you mean 'yarn'?"),
    ("param-nan", RUN + ["-e", "yarn", "-E", "factor=nan"], "finite"),
    ("param-inf", RUN + ["-e", "yarn", "-E", "factor=inf"], "finite"),
    ("param-arabic-digits", RUN + ["-e", "yarn", "-E", "factor=٢"], "ASCII"),
    ("param-typo", RUN + ["-e", "yarn", "-E", "factr=2"], "unknown parameter(s) factr"),
    ("param-twice", RUN + ["-e", "yarn", "-E", "factor=2", "-E", "factor=3"], "given twice"),
    ("param-without-value", RUN + ["-e", "yarn", "-E", "factor"], "use KEY=VALUE"),
    ("param-below-one", RUN + ["-e", "yarn", "-E", "factor=0.5"], "factor must be >= 1"),
    ("param-wrong-type", RUN + ["-e", "selfextend", "-E", "group=two"], "group must be a positive integer"),
    ("window-beyond-context", RUN + ["-e", "sinks", "-E", "window=100000"], "exceeds the model's context"),
    ("runner-opt-typo", RUN + ["-R", "dtyp=float32"], "Did you mean 'dtype'?"),
    ("runner-opt-wrong-kind", RUN + ["-r", "mamba", "-R", "chunk=big"], "expected int"),
    ("runner-opt-twice", RUN + ["-R", "dtype=float32", "--dtype", "float32"], "given twice"),
    ("dtype-typo", RUN + ["--dtype", "flaot32"], "unknown dtype 'flaot32'"),
    ("device-cuda-without-gpu", RUN + ["--device", "cuda"], "no CUDA device"),
    ("device-unknown", RUN + ["--device", "tpu"], "device"),
    ("kernel-impl-typo", RUN + ["-r", "kernel", "-R", "impl=trition"], "Did you mean 'triton'?"),
    ("kernel-sdpa-for-sinks", RUN + ["-r", "kernel", "-R", "impl=sdpa", "-e", "sinks"], "plain causal"),
    ("not-hostable", RUN + ["-r", "vllm", "-e", "sinks"], "cannot host extension 'sinks'"),
    ("model-unknown", ["passkey", "-m", "smolm2", "-l", "512"], "Did you mean 'smollm2'?"),
    ("model-bare-hub-id", ["passkey", "-m", "org/name", "-l", "512"], "write hf:org/name"),
    ("model-bad-hub-id", ["passkey", "-m", "hf:name", "-l", "512"], "bad hub id"),
    ("model-dir-without-config", ["passkey", "-m", "adir", "-l", "512"], "no config.json"),
    ("out-is-a-file", RUN + ["--out", "afile"], "is a file, not a directory"),
    ("out-under-a-file", RUN + ["--out", "afile/run"], "is a file, so no directory"),
    ("out-holds-another-experiment", RUN + ["--out", "done-run", "-e", "yarn"], "holds a different experiment"),
    ("out-corrupt-run-json", RUN + ["--out", "corrupt-run"], "unreadable"),
    ("retrieval-task-typo", ["retrieval", "-t", "niah-multikye", "-m", M, "-l", "1k"], "Did you mean"),
    ("retrieval-kv-with-haystack", ["retrieval", "-t", "kv", "-m", M, "-l", "1k", "--haystack", "essay"],
     "builds its own context"),
    ("retrieval-perplexity", ["retrieval", "-t", "perplexity", "-m", M, "-l", "1k"], "its own command"),
    ("needle-depth-out-of-range", ["needle", "-m", M, "-l", "512", "-d", "-0.1"], "bad depth"),
    ("perplexity-length-one", ["perplexity", "-m", M, "-l", "1"], "at least 2 tokens"),
    ("perplexity-documents-zero", ["perplexity", "-m", M, "-l", "256", "--documents", "0"], "--documents"),
    ("perplexity-stride-zero", ["perplexity", "-m", M, "-l", "256", "--stride", "0"], "--stride"),
    ("perplexity-runner-cannot-score", ["perplexity", "-m", M, "-l", "256", "-r", "vllm"], "scores tokens"),
    ("perplexity-haystack-missing", ["perplexity", "-m", M, "-l", "256", "--haystack-file", "missing.txt"],
     "does not exist"),
    ("unknown-option", RUN + ["--lenghts", "1k"], "No such option"),
    ("option-needs-number", RUN + ["-n", "three"], "is not a valid integer"),
    ("report-no-dir", ["report", "nowhere"], "no run directory at nowhere"),
    ("report-dir-without-runs", ["report", "adir"], "holds no run"),
    ("report-output-is-a-directory", ["report", "done-run", "-o", "adir"], "is a directory"),
    ("report-output-under-a-file", ["report", "done-run", "-o", "afile/r.html"], "is a file"),
    ("report-threshold-above-1", ["report", "done-run", "--threshold", "1.5"], "thresholds are fractions"),
    ("report-threshold-nan", ["report", "done-run", "--threshold", "nan"], "not a finite number"),
    ("report-corrupt-run-json", ["report", "corrupt-run"], "unreadable"),
    ("report-mistyped-record", ["report", "mistyped-run"], "results.jsonl:1:"),
    ("report-figures-at-a-file", ["report", "done-run", "--save-figures", "afile"], "is a file"),
    ("extensions-show-typo", ["extensions", "show", "yarm"], "Did you mean 'yarn'?"),
    ("extensions-show-nan", ["extensions", "show", "yarn", "-E", "factor=nan", "-m", M], "finite"),
    ("extensions-show-bad-length", ["extensions", "show", "yarn", "-m", M, "--length", "long"], "bad length"),
    ("models-import-typo", ["models", "import", "smolm2"], "smollm2"),
    ("train-out-is-a-file", ["train-baselines", "--out", "afile", "--quick"], "is a file"),
    ("train-arch-typo", ["train-baselines", "--out", "b", "--arch", "ropee", "--quick"], "rope"),
    ("command-typo", ["pasky", "-l", "4k"], "No such command"),
    ("sweep-missing-file", ["run", "nosuch.yaml"], "no such experiment file"),
    ("sweep-bad-yaml", ["run", "bad.yaml"], "is not valid YAML"),
    ("sweep-unknown-key", ["run", "typo.yaml"], "extensions[0].parms: unknown key"),
    ("sweep-misspelt-extension", ["run", "ext.yaml"], "Did you mean 'yarn'?"),
    ("sweep-bad-shard", ["run", "ext.yaml", "--shard", "2/2"], "bad --shard"),
    ("sweep-ray-zero-cpus", ["run", "ext.yaml", "--executor", "ray", "--cpus-per-worker", "0"],
     "--cpus-per-worker must be > 0"),
    ("max-memory-word", RUN + ["--max-memory", "lots"], "bad memory size 'lots'"),
    ("max-memory-zero", RUN + ["--max-memory", "0"], "it must be a positive amount"),
    ("max-memory-negative", RUN + ["--max-memory", "-1GB"], "bad memory size '-1GB'"),
    ("max-memory-unknown-unit", RUN + ["--max-memory", "8XB"], "bad memory size '8XB'"),
    ("max-memory-below-every-length", ["passkey", "-m", M, "-l", "256,512", "--max-memory", "1MB"],
     "no length of this grid fits (the shortest, 256, needs"),
    ("max-memory-with-dump-config", RUN + ["--max-memory", "lots", "--dump-config"], "bad memory size"),
    ("perplexity-max-memory-bad", ["perplexity", "-m", M, "-l", "256", "--max-memory", "1e9"], "bad memory size"),
    ("perplexity-above-max-memory", ["perplexity", "-m", M, "-l", "256", "--max-memory", "10MiB"],
     "above --max-memory 10 MiB"),
    ("search-max-memory-bad", ["search", "-m", M, "--max-memory", "nan"], "bad memory size 'nan'"),
    ("sweep-max-memory-bad", ["run", "ok.yaml", "--max-memory", "much"], "bad memory size 'much'"),
    ("tensor-parallel-not-vllm", RUN + ["--tensor-parallel", "2"], "--tensor-parallel shards a vLLM engine"),
    ("tensor-parallel-zero", RUN + ["-r", "vllm", "--tensor-parallel", "0"], "must be a positive integer"),
    ("sweep-tensor-parallel-no-vllm", ["run", "ok.yaml", "--tensor-parallel", "2"], "this sweep has no vllm runner"),
    ("sweep-ray-address-garbage", ["run", "ok.yaml", "--executor", "ray", "--ray-address", "nowhere"],
     "give HOST:PORT"),
    ("bench-config-typo", ["bench", "--quick", "--configs", "hf,kernal"], "Did you mean 'kernel'?"),
    ("bench-mamba-without-checkpoint", ["bench", "--configs", "mamba"], "needs a checkpoint: --mamba PATH"),
    ("bench-mamba-not-mamba", ["bench", "--quick", "--mamba", M], "checkpoint, not a Mamba one"),
    ("sweep-cell-above-max-memory", ["run", "ok.yaml", "--max-memory", "1MB"], "no length of this grid fits"),
    ("search-bad-range", ["search", "-m", M, "--min", "8k", "--max", "4k"], "0 < --min < --max"),
    ("search-bad-resolution", ["search", "-m", M, "--resolution", "1"], "--resolution must be > 1"),
    # the second round (issue 37): data that would be lost or changed, nonsense, hangs, environment and disk
    ("report-over-its-records", ["report", "done-run", "-o", "done-run/results.jsonl"], "which it reads"),
    ("report-into-a-run", ["report", "done-run", "-o", "done-run/report.html"], "which it reads"),
    ("report-figures-into-a-run", ["report", "done-run", "--save-figures", "done-run/figures"], "which it reads"),
    ("report-utf16-records", ["report", "utf16-run"], "not UTF-8"),
    ("report-records-are-a-directory", ["report", "dir-run"], "cannot be read"),
    ("out-records-without-run-json", RUN + ["--out", "orphan-run"], "but no run.json"),
    ("out-at-a-sweep", RUN + ["--out", "a-sweep"], "holds 1 run directory"),
    ("out-at-foreign-files", RUN + ["--out", "papers"], "files longctx did not write"),
    ("param-overflows-to-inf", RUN + ["-e", "yarn", "-E", "factor=1e400"], "too large for a number"),
    ("length-twenty-digits", ["passkey", "-m", M, "-l", "12345678901234567890"], "at most 16m tokens"),
    ("length-1m-above-memory", ["passkey", "-m", M, "-l", "1m", "--max-memory", "100MB"],
     "predicted peak memory at 1048576 tokens"),
    ("mamba-runner-on-attention", RUN + ["-r", "mamba"], "has attention layers"),
    ("sweep-duplicate-key", ["run", "dup.yaml"], "key 'lengths' is given twice (lines 4 and 5)"),
    ("sweep-duplicate-key-in-an-entry", ["run", "dup-entry.yaml"], "key 'max_new_tokens' is given twice"),
    ("sweep-out-at-a-run", ["run", "into-run.yaml"], "is a run directory, not a sweep's"),
    ("sweep-task-setting-typo", ["run", "task-typo.yaml"], "tasks[0].documnets: not a setting of this task"),
    ("samples-astronomical", RUN + ["-n", "1000000000000000000000000"], "a run holds at most 10,000,000"),
    ("perplexity-documents-astronomical", ["perplexity", "-m", M, "-l", "256", "--documents", "99999999999"],
     "samples a run holds"),
    ("haystack-file-device", RUN + ["--haystack", "essay", "--haystack-file", "/dev/zero"], "not a regular file"),
    ("report-threshold-overflows", ["report", "done-run", "--threshold", "1e400"], "not a finite number"),
    ("train-lr-nan", ["train-baselines", "--out", "b", "--lr", "nan", "--quick"], "not a finite number"),
    ("train-over-a-trained-model", ["train-baselines", "--out", "trained", "--arch", "rope", "--quick"],
     "already holds a trained rope model; add --overwrite"),
    # issue 36: QA files, thinking budgets
    ("qa-file-missing", ["retrieval", "-t", "qa", "-m", M, "-l", "512", "--qa-file", "nope.json"], "no such file"),
    ("qa-file-wrong-kind", ["retrieval", "-t", "qa", "-m", M, "-l", "512", "--qa-file", "papers/notes.txt"],
     "a .json, .jsonl or .parquet file is needed"),
    ("qa-file-on-passkey", RUN + ["--qa-file", "nope.json"], "has no qa_file"),
    ("thinking-budget-negative", RUN + ["--thinking-budget", "-1"], "--thinking-budget must be"),
    ("thinking-budget-fills-the-length", RUN + ["--thinking-budget", "600"], "leaves no room for a prompt"),
    ("ruler-style-on-passkey", RUN + ["--style", "ruler"], "--style ruler is not available for this task"),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_llama_path):
    """A working directory with the files the mistakes point at: a run with records, a corrupt run, ..."""
    from harness.records import RunDir, SampleRecord

    (tmp_path / "text.txt").write_text("A short text. " * 50)
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 au lait. ".encode("latin-1") * 50)
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("not a directory")
    rec = SampleRecord(task="passkey", model="m", extension="none", extension_params={}, runner="hf",
                       context_length=512, tokens=500, depth=0.5, sample_id=0, seed=0, prediction=" 1.",
                       target="1", correct=True, lenient=True, latency_s=1.0)
    from harness.experiment import Experiment, identity, prepare
    from evals.base import TaskConfig

    exp = Experiment(task="passkey", task_config=TaskConfig(lengths=(512,)), model=tiny_llama_path,
                     out=str(tmp_path / "done-run"))
    rd = RunDir.open(exp.out, identity(prepare(exp, log=lambda *_: None)), {"argv": ["setup"]})
    rd.append(rec)
    (tmp_path / "corrupt-run").mkdir()
    (tmp_path / "corrupt-run" / "run.json").write_text("{ not json")
    (tmp_path / "corrupt-run" / "results.jsonl").write_text(rec.to_json() + "\n")
    (tmp_path / "mistyped-run").mkdir()
    (tmp_path / "mistyped-run" / "run.json").write_text(json.dumps({"identity": {}, "invocations": []}))
    bad = json.loads(rec.to_json()) | {"context_length": "512"}
    (tmp_path / "mistyped-run" / "results.jsonl").write_text(json.dumps(bad) + "\n" + rec.to_json() + "\n")
    (tmp_path / "bad.yaml").write_text("models: [m\n")
    (tmp_path / "typo.yaml").write_text(f"out: s\nmodels: [{tiny_llama_path}]\ntasks: [passkey]\nlengths: [1k]\n"
                                        "extensions: [{name: yarn, parms: {factor: 2}}]\n")
    (tmp_path / "ok.yaml").write_text(f"out: s\nmodels: [{tiny_llama_path}]\ntasks: [passkey]\nlengths: [256, 512]\n")
    (tmp_path / "ext.yaml").write_text(f"out: s\nmodels: [{tiny_llama_path}]\ntasks: [passkey]\nlengths: [1k]\n"
                                       "extensions: [yarm]\n")
    (tmp_path / "utf16-run").mkdir()
    (tmp_path / "utf16-run" / "run.json").write_text(json.dumps({"identity": {}, "invocations": []}))
    (tmp_path / "utf16-run" / "results.jsonl").write_bytes((rec.to_json() + "\n").encode("utf-16"))
    (tmp_path / "dir-run" / "results.jsonl").mkdir(parents=True)
    (tmp_path / "dir-run" / "run.json").write_text(json.dumps({"identity": {}, "invocations": []}))
    (tmp_path / "orphan-run").mkdir()
    (tmp_path / "orphan-run" / "results.jsonl").write_text(rec.to_json() + "\n{\"torn")
    (tmp_path / "a-sweep" / "cell").mkdir(parents=True)
    (tmp_path / "a-sweep" / "cell" / "run.json").write_text(json.dumps({"identity": {}, "invocations": []}))
    (tmp_path / "papers").mkdir()
    (tmp_path / "papers" / "notes.txt").write_text("mine")
    (tmp_path / "trained" / "rope").mkdir(parents=True)
    (tmp_path / "trained" / "rope" / "config.json").write_text("{}")
    (tmp_path / "dup.yaml").write_text(f"out: s\nmodels: [{tiny_llama_path}]\ntasks: [passkey]\nlengths: [1k]\n"
                                       "lengths: [2k]\n")
    (tmp_path / "dup-entry.yaml").write_text(f"out: s\nmodels: [{tiny_llama_path}]\nlengths: [1k]\n"
                                             "tasks: [{name: passkey, max_new_tokens: 4, max_new_tokens: 8}]\n")
    (tmp_path / "into-run.yaml").write_text(f"out: done-run\nmodels: [{tiny_llama_path}]\ntasks: [passkey]\n"
                                            "lengths: [256]\n")
    (tmp_path / "task-typo.yaml").write_text(f"out: s\nmodels: [{tiny_llama_path}]\nlengths: [256]\n"
                                             "tasks: [{name: perplexity, documnets: 2}]\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    return tmp_path


def _tree(root: Path) -> dict:
    """Every path under root with its kind, size, mtime and (files) a checksum of its bytes."""
    import hashlib

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.stat()
            digest = None if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            out[str(p.relative_to(root))] = (p.is_dir(), st.st_size, None if p.is_dir() else st.st_mtime_ns, digest)
    return out


def test_the_table_is_long_enough():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


def test_the_readme_counts_this_table():
    """The README says how many mistakes are held here; the count is checked, not remembered."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    said = re.search(r"test_mistakes\.py` holds (\d+) of them", readme)
    assert said and int(said.group(1)) == len(CASES) + len(LM_EVAL_CASES)


@pytest.mark.parametrize("argv,needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_mistake_is_one_line_exit_2_and_nothing_written(workdir, tiny_llama_path, capsys, argv, needle):
    from harness.cli import main

    argv = [tiny_llama_path if a == M else a for a in argv]
    before = _tree(workdir)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_.value.code == 2, err
    assert len(err) == 1 and err[0].startswith(("longctx: error: ", "Error: ")), err
    assert needle in err[0], err[0]
    assert "Traceback" not in err[0]
    assert _tree(workdir) == before


LM_EVAL_CASES = [
    ("model-typo", {"model": "smolm2"}, "Did you mean 'smollm2'?"),
    ("extension-typo", {"extension": "yarm"}, "Did you mean 'yarn'?"),
    ("param-typo", {"extension": "yarn", "factr": "2"}, "unknown parameter(s) factr"),
    ("param-nan", {"extension": "yarn", "factor": "nan"}, "finite"),
    ("runner-typo", {"runner": "hff"}, "unknown runner 'hff'"),
    ("not-hostable", {"runner": "vllm", "extension": "sinks"}, "cannot host extension 'sinks'"),
    ("dtype-typo", {"dtype": "flaot32"}, "unknown dtype"),
]


@pytest.mark.parametrize("args,needle", [c[1:] for c in LM_EVAL_CASES], ids=[c[0] for c in LM_EVAL_CASES])
def test_a_model_args_mistake_is_one_line_exit_2(tiny_llama_path, capsys, args, needle):
    from harness.integrations.lm_eval_model import LongctxLM

    with pytest.raises(SystemExit) as exit_:
        LongctxLM(**{"model": tiny_llama_path, "device": "cpu", **args})
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_.value.code == 2 and len(err) == 1 and needle in err[0], err


@pytest.mark.parametrize("home,needle", [("afile", "is a file, not a directory"),
                                         ("readonly/home", "cannot be written")])
def test_an_unusable_longctx_home_is_one_line(workdir, monkeypatch, capsys, home, needle):
    """LONGCTX_HOME at a file, or under a folder this user cannot write, when the default model must be imported."""
    from harness.cli import main

    (workdir / "readonly").mkdir()
    (workdir / "readonly").chmod(0o555)
    if home.startswith("readonly") and os.access(workdir / "readonly", os.W_OK):
        pytest.skip("this user writes into read-only folders (root)")
    monkeypatch.setenv("LONGCTX_HOME", str(workdir / home))
    before = _tree(workdir)
    with pytest.raises(SystemExit) as exit_:
        main(["passkey", "-m", "smollm2", "-l", "512"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_.value.code == 2 and len(err) == 1 and needle in err[0] and "LONGCTX_HOME" in err[0], err
    assert _tree(workdir) == before


def test_ctrl_c_says_how_to_resume(workdir, tiny_llama_path, monkeypatch, capsys):
    import harness.experiment
    from harness.cli import main

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.experiment, "run", interrupted)
    with pytest.raises(SystemExit) as exit_:
        main(["passkey", "-m", tiny_llama_path, "-l", "512", "--out", "r"])
    assert exit_.value.code == 130 and "re-run the same command to resume" in capsys.readouterr().err


def test_a_full_disk_mid_run_is_one_line_exit_1_and_keeps_what_was_written(workdir, tiny_llama_path, monkeypatch,
                                                                           capsys):
    import errno

    from harness.cli import main
    from harness.records import RunDir, read_records

    real, calls = RunDir.append, []

    def append(self, record):
        calls.append(record)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path / "results.jsonl"))
        real(self, record)

    monkeypatch.setattr(RunDir, "append", append)
    with pytest.raises(SystemExit) as exit_:
        main(["passkey", "-m", tiny_llama_path, "-l", "256", "-d", "0.2,0.8", "--out", "r", "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("longctx")]
    assert exit_.value.code == 1 and len(err) == 1 and "No space left" in err[0] and "resume" in err[0], err
    assert len(read_records(workdir / "r")) == 1
    monkeypatch.setattr(RunDir, "append", real)  # room again: the same command resumes and finishes
    with pytest.raises(SystemExit) as exit_:
        main(["passkey", "-m", tiny_llama_path, "-l", "256", "-d", "0.2,0.8", "--out", "r", "--no-progress"])
    assert exit_.value.code == 0 and len(read_records(workdir / "r")) == 2


def test_a_large_grid_says_its_estimate_and_starts_only_if_agreed(workdir, tiny_llama_path):
    from evals.base import TaskConfig
    from harness.errors import UserError
    from harness.experiment import Experiment, open_run

    exp = Experiment(task="passkey", task_config=TaskConfig(lengths=(256,), samples=100_000), model=tiny_llama_path,
                     out=str(workdir / "big"))
    asked = []
    with pytest.raises(UserError, match="not started: this grid has 100,000 samples to do"):
        open_run(exp, log=lambda *_: None, confirm=lambda m: asked.append(m) or False)
    assert len(asked) == 1 and not (workdir / "big").exists()
    said = []
    open_run(exp, log=said.append, confirm=None)  # nobody to ask: it says so and goes on
    assert said[0].startswith("this grid has 100,000 samples to do") and not (workdir / "big").exists()


def test_a_refused_or_finished_resume_leaves_run_json_as_it_was(workdir, tiny_llama_path):
    """The run directory is written at the runner's load, not at opening: a check that fails after opening (or a
    resume with nothing to do) changes nothing."""
    from harness.records import RunDir

    before = _tree(workdir)
    rd = RunDir.open(workdir / "new-run", {"task": "passkey"}, {"argv": ["x"]})
    assert _tree(workdir) == before and not (workdir / "new-run").exists()
    meta = (workdir / "done-run" / "run.json").read_text()
    RunDir.open(workdir / "done-run", json.loads(meta)["identity"], {"argv": ["again"]})
    assert (workdir / "done-run" / "run.json").read_text() == meta
    rd.note_load({"dtype": "float32"})
    assert json.loads((workdir / "new-run" / "run.json").read_text())["invocations"][0]["argv"] == ["x"]


def test_a_dumped_config_runs_as_written(workdir, tiny_llama_path, capsys):
    """--dump-config with --out NAME (no folder): the file's out is not '.', so `longctx run` takes it."""
    from harness.cli import main
    from harness.sweep import load

    with pytest.raises(SystemExit):
        main(["passkey", "-m", tiny_llama_path, "-l", "256", "--out", "pk", "--dump-config"])
    (workdir / "pk.yaml").write_text(capsys.readouterr().out)
    sweep_dir, (cell,) = load(str(workdir / "pk.yaml"))
    assert str(sweep_dir) == "pk-sweep" and cell.experiment.task_config.lengths == (256,)

