"""lm-eval integration: our model against lm-eval's own HF model (golden), and the `lm_eval` command end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")


def _instances(kind, args_list):
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args_list)]


def test_loglikelihoods_equal_lm_evals_own_hf_model(tiny_llama_path):
    from lm_eval.models.huggingface import HFLM

    from harness.integrations.lm_eval_model import LongctxLM

    ours = LongctxLM(model=tiny_llama_path, device="cpu")
    ref = HFLM(pretrained=tiny_llama_path, device="cpu", dtype="float32", batch_size=1)
    pairs = [("The lake is calm. The road is", " long."), ("A pass key is 12345. The pass key is ", "12345"),
             ("Up the hill", " and down again.")]
    got = ours.loglikelihood(_instances("loglikelihood", pairs))
    want = ref.loglikelihood(_instances("loglikelihood", pairs))
    for (a, ga), (b, gb) in zip(got, want):
        assert a == pytest.approx(b, abs=1e-3)
        assert ga == gb
    texts = [("The lake is calm. " * 30,), ("One sentence only.",)]
    got = ours.loglikelihood_rolling(_instances("loglikelihood_rolling", texts))
    want = ref.loglikelihood_rolling(_instances("loglikelihood_rolling", texts))
    assert got == pytest.approx(want, abs=1e-2)


def test_generate_until_cuts_at_stop_strings(tiny_llama_path):
    from harness.integrations.lm_eval_model import LongctxLM

    lm = LongctxLM(model=tiny_llama_path, device="cpu")
    (full,) = lm.generate_until(_instances("generate_until", [("The lake is", {"until": [], "max_gen_toks": 8})]))
    assert full
    stop = full.strip()[:2]
    (cut,) = lm.generate_until(_instances("generate_until", [("The lake is", {"until": [stop], "max_gen_toks": 8})]))
    assert stop not in cut and full.startswith(cut)


def test_unknown_extension_parameter_is_refused(tiny_llama_path, capsys):
    from harness.integrations.lm_eval_model import LongctxLM

    with pytest.raises(SystemExit) as exit_:
        LongctxLM(model=tiny_llama_path, extension="yarn", factorr=2)
    assert exit_.value.code == 2 and "unknown parameter(s) factorr" in capsys.readouterr().err


def test_a_method_the_model_cannot_take_is_refused_like_every_command(tmp_path, smollm2_tokenizer, capsys):
    """yarn on a RoPE scaled in training (llama3) is refused through lm-eval's --model_args as on the CLI."""
    from harness import zoo
    from harness.integrations.lm_eval_model import LongctxLM

    path = zoo.save(zoo.family("llama3-scaled"), smollm2_tokenizer, tmp_path / "llama3")
    with pytest.raises(SystemExit) as exit_:
        LongctxLM(model=path, extension="yarn", factor=2)
    assert exit_.value.code == 2 and "scaled in training (llama3)" in capsys.readouterr().err


def test_lm_eval_command_runs_our_task_and_model_end_to_end(tiny_llama_path, tmp_path):
    """`lm_eval --model longctx ... --include_path $(longctx lm-eval-tasks-path)` with --limit, on a tiny model."""
    bindir = Path(sys.executable).parent
    subprocess.run([str(bindir / "longctx"), "lm-eval-register"], check=True, capture_output=True)
    tasks_path = subprocess.run([str(bindir / "longctx"), "lm-eval-tasks-path"], check=True, capture_output=True,
                                text=True).stdout.strip()
    res = subprocess.run(
        [str(bindir / "lm_eval"), "--model", "longctx",
         "--model_args", f"model={tiny_llama_path},extension=yarn,factor=2,runner=hf",
         "--include_path", tasks_path, "--tasks", "longctx_passkey", "--limit", "2",
         "--metadata", json.dumps({"tokenizer": tiny_llama_path, "max_seq_lengths": [600]}),
         "--output_path", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    (result_file,) = list((tmp_path / "out").rglob("results_*.json"))
    results = json.loads(result_file.read_text())
    metrics = results["results"]["longctx_passkey"]
    assert {"score,none", "strict,none", "lenient,none"} <= set(metrics)
    assert results["config"]["longctx_extension"] == "yarn"
    assert results["config"]["longctx_extension_params"]["factor"] == 2


@pytest.mark.parametrize("fn", ["passkey", "needle", "niah_multikey", "niah_multivalue", "niah_multiquery", "kv",
                                "phonebook", "vt", "mqar", "mqar_keyed", "vt_8hops"])
def test_task_datasets_score_their_own_targets_as_correct(fn, smollm2_path):
    """The lm-eval glue: generated docs are token-exact and the reference answer scores 1 (a wrong one 0)."""
    import importlib.util

    from harness.cli import main  # noqa: F401  (the package must import without lm-eval state)

    path = Path(__file__).resolve().parents[2] / "harness" / "integrations" / "lm_eval_tasks" / "utils.py"
    spec = importlib.util.spec_from_file_location("longctx_lm_eval_utils", path)
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    ds = getattr(utils, fn)(tokenizer=smollm2_path, max_seq_lengths=[1024], depths=[0.5])["test"]
    assert len(ds) == 1
    doc = ds[0]
    assert doc["tokens"] <= 1024
    right = utils.process_results(doc, [" " + ", ".join(doc["references"]) + "."])
    wrong = utils.process_results(doc, [" I do not know."])
    assert right["score"] == 1.0 and right["lenient"] == 1.0
    assert wrong["score"] == 0.0 and wrong["strict"] == 0.0
