"""The experiment loop, driven with the scripted fake runner (a caller test: no evidence about models)."""
import pytest

from evals.base import TaskConfig
from harness.errors import UserError
from harness.experiment import Experiment, run
from harness.records import read_records
from harness.runners.fake import ScriptedRunner


def _exp(tmp_path, **kw):
    cfg = TaskConfig(lengths=kw.pop("lengths", (512, 1024)), depths=(0.25, 0.75), samples=2)
    return Experiment(task=kw.pop("task", "passkey"), task_config=cfg, model=kw.pop("model"), runner="fake",
                      out=str(tmp_path / "run"), **kw)


def test_loop_writes_one_scored_record_per_sample(tmp_path, tiny_llama_path):
    # The fake "finds" the key only in prompts up to 3000 characters: 512-token prompts pass, 1024 fail.
    runner = ScriptedRunner(reach=3000)
    path = run(_exp(tmp_path, model=tiny_llama_path), log=lambda *_: None, progress=False, runner=runner)
    records = read_records(path)
    assert len(records) == 8
    assert {r.context_length: r.correct for r in records} == {512: True, 1024: False}
    assert all(r.prediction and r.target in r.prediction for r in records if r.correct)
    assert all(r.extension == "none" and r.runner == "fake" for r in records)


def test_rerun_resumes_and_grows_the_grid(tmp_path, tiny_llama_path):
    run(_exp(tmp_path, model=tiny_llama_path, lengths=(512,)), log=lambda *_: None, progress=False,
        runner=ScriptedRunner())
    runner = ScriptedRunner()
    run(_exp(tmp_path, model=tiny_llama_path, lengths=(512, 1024)), log=lambda *_: None, progress=False,
        runner=runner)
    assert len(runner.calls) == 4  # only the new length ran
    assert len(read_records(tmp_path / "run")) == 8
    idle = ScriptedRunner()
    run(_exp(tmp_path, model=tiny_llama_path, lengths=(512, 1024)), log=lambda *_: None, progress=False,
        runner=idle)
    assert idle.loaded is None and not idle.calls  # nothing left: the model is never loaded


def test_unknown_extension_parameter_is_refused_before_loading(tmp_path, tiny_llama_path):
    runner = ScriptedRunner()
    with pytest.raises(UserError, match="unknown parameter"):
        run(_exp(tmp_path, model=tiny_llama_path, extension_params={"factor": 2}), runner=runner,
            log=lambda *_: None, progress=False)
    assert runner.loaded is None and not (tmp_path / "run").exists()


def test_unknown_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown model"):
        run(_exp(tmp_path, model="no-such-model"), log=lambda *_: None, progress=False)


def test_a_failing_request_is_recorded_and_retried_on_resume(tmp_path, tiny_llama_path):
    def answer(prompt):
        if len(prompt) > 3000:
            raise RuntimeError("out of memory (simulated)\nsecond line")
        return " 1."

    from harness.errors import RunFailed

    with pytest.raises(RunFailed, match="every sample at .* tokens failed"):  # every long sample raised: exit 1
        run(_exp(tmp_path, model=tiny_llama_path), log=lambda *_: None, progress=False,
            runner=ScriptedRunner(answer=answer))
    path = tmp_path / "run"
    records = read_records(path)
    failed = [r for r in records if r.error]
    assert len(records) == 8 and len(failed) == 4
    assert all(r.error == "RuntimeError: out of memory (simulated)" and not r.correct for r in failed)
    retry = ScriptedRunner()
    run(_exp(tmp_path, model=tiny_llama_path), log=lambda *_: None, progress=False, runner=retry)
    assert len(retry.calls) == 4  # only the failed ones ran again
