"""The command line: user mistakes end as one line on stderr and exit code 2."""
import subprocess
import sys

import pytest

from harness.cli import main


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, **kw)


@pytest.mark.parametrize("args,needle", [
    (["passkey", "--lengths", "4kb", "--out", "x"], "bad length"),
    (["passkey", "--model", "nope", "--out", "x"], "unknown model"),
    (["passkey", "--runner", "nope", "--out", "x"], "unknown runner"),
    (["passkey", "--extension", "nonee", "--out", "x"], "Did you mean 'none'"),
    (["passkey", "-E", "factor", "--out", "x"], "bad extension parameter"),
    (["passkey", "--depths", "2", "--out", "x"], "bad depth"),
    (["passkey", "--samples", "x", "--out", "x"], "samples"),
    (["perplexity", "--lengths", "1"], "at least 2 tokens"),
    (["report", "/no/such/run"], "no run directory"),
    (["models", "import", "gpt5"], "unknown model"),
    (["nonsense"], "No such command"),
])
def test_user_mistakes_exit_2_with_one_line(args, needle, tmp_path):
    res = _cli(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_missing_haystack_file_exits_2(tmp_path, tiny_llama_path):
    res = _cli("passkey", "--model", tiny_llama_path, "--haystack", "essay", "--haystack-file", "nope.txt",
               "--lengths", "512", "--runner", "fake", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert res.returncode == 2 and "nope.txt does not exist" in res.stderr


@pytest.mark.parametrize("damage", ["truncated", "missing"])
@pytest.mark.parametrize("checkpoint", ["tiny_llama_path", "tiny_mamba2_path"])
def test_unreadable_weights_exit_2_with_one_line(damage, checkpoint, tmp_path, request):
    import shutil
    from pathlib import Path

    src = Path(request.getfixturevalue(checkpoint))
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    weights = bad / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        weights.unlink()
    res = _cli("passkey", "--model", str(bad), "--lengths", "512", "--no-progress", "--out", str(tmp_path / "r"))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert f"longctx: error: cannot load the weights of {bad}" in res.stderr.splitlines()[-1]


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("passkey", "needle", "report", "models", "extensions"):
        assert cmd in out


def test_fake_run_and_report_from_the_cli(tmp_path, tiny_llama_path):
    run_dir = tmp_path / "r"
    res = _cli("needle", "--model", tiny_llama_path, "--lengths", "512,1k", "--runner", "fake", "--no-progress",
               "--out", str(run_dir), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "512 tokens: 3/3 correct" in res.stdout
    res = _cli("report", str(run_dir), "-o", str(tmp_path / "r.html"), cwd=tmp_path)
    assert res.returncode == 0 and (tmp_path / "r.html").stat().st_size > 10_000


@pytest.mark.parametrize("task", ["niah-multikey", "niah-multivalue-words", "kv", "phonebook", "vt", "mqar"])
def test_retrieval_command_runs_each_task_family(task, tmp_path, tiny_llama_path):
    res = _cli("retrieval", "--task", task, "--model", tiny_llama_path, "--lengths", "1k", "--runner", "fake",
               "--max-new-tokens", "48", "--no-progress", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "1024 tokens: 0/1 correct" in res.stdout  # the fake never knows these answers


def test_retrieval_with_an_unknown_task_names_the_nearest():
    res = _cli("retrieval", "--task", "niah-multikee", "--out", "x")
    assert res.returncode == 2 and "Did you mean 'niah-multikey'" in res.stderr
