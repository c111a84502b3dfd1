import json

import pytest

from harness.errors import UserError
from harness.records import RESULTS, RunDir, SampleRecord, read_records


def _record(length=4096, sample_id=0, error=None, prediction=" 12345."):
    return SampleRecord(task="passkey", model="m", extension="none", extension_params={}, runner="fake",
                        context_length=length, tokens=length - 20, depth=0.5, sample_id=sample_id, seed=0,
                        prediction=prediction, target="12345", correct=error is None, lenient=True,
                        latency_s=0.1, peak_mem_bytes=None, error=error)


def test_records_round_trip_through_jsonl(tmp_path):
    rd = RunDir.open(tmp_path, {"task": "passkey"}, {"argv": ["x"]})
    rd.append(_record())
    (back,) = read_records(tmp_path)
    assert back == _record()
    line = json.loads((tmp_path / RESULTS).read_text())
    assert line["schema_version"] == 8 and line["depth"] == 0.5


def test_resume_knows_finished_samples_and_records_invocations(tmp_path):
    rd = RunDir.open(tmp_path, {"task": "passkey"}, {"argv": ["first"]})
    rd.append(_record(sample_id=0))
    rd.append(_record(sample_id=1, error="boom"))
    again = RunDir.open(tmp_path, {"task": "passkey"}, {"argv": ["second"]})
    assert _record(sample_id=0).key in again.done
    assert _record(sample_id=1).key not in again.done  # failed requests are retried
    meta = json.loads((tmp_path / "run.json").read_text())
    assert [i["argv"] for i in meta["invocations"]] == [["first"]]  # opening writes nothing ...
    again.note_load({"dtype": "float32"})  # ... the first write (the runner's load) records the invocation
    meta = json.loads((tmp_path / "run.json").read_text())
    assert [i["argv"] for i in meta["invocations"]] == [["first"], ["second"]]
    assert meta["invocations"][-1]["load"] == {"dtype": "float32"}


def test_resume_with_a_different_experiment_is_refused(tmp_path):
    rd = RunDir.open(tmp_path, {"task": "passkey", "extension": "none"}, {})
    rd.append(_record())
    with pytest.raises(UserError, match="differs in: extension"):
        RunDir.open(tmp_path, {"task": "passkey", "extension": "yarn"}, {})


def test_a_directory_without_records_does_not_lock_its_experiment(tmp_path):
    """A command that stopped before its first sample (a typo found late, a crash in loading) leaves run.json but
    no record: the corrected command takes the directory over instead of being refused."""
    RunDir.open(tmp_path, {"task": "passkey", "extension": "yarn", "dtype": "flaot32"}, {"argv": ["typo"]}).start()
    rd = RunDir.open(tmp_path, {"task": "passkey", "extension": "yarn", "dtype": "float32"}, {"argv": ["fixed"]})
    rd.start()
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["identity"]["dtype"] == "float32" and [i["argv"] for i in meta["invocations"]] == [["typo"],
                                                                                                  ["fixed"]]
    assert rd.done == set()


def test_a_garbage_last_line_is_set_aside_not_appended_behind(tmp_path):
    rd = RunDir.open(tmp_path, {"task": "passkey"}, {})
    rd.append(_record(sample_id=0))
    with (tmp_path / RESULTS).open("a") as f:
        f.write("#### not a record ####\n")  # complete line, garbage
    RunDir.open(tmp_path, {"task": "passkey"}, {}).append(_record(sample_id=1))
    assert [r.sample_id for r in read_records(tmp_path)] == [0, 1]
    assert (tmp_path / (RESULTS + ".torn")).read_text() == "#### not a record ####\n"


def test_records_of_the_wrong_type_are_one_line_naming_file_and_line(tmp_path):
    bad = json.loads(_record().to_json()) | {"context_length": "4k"}
    (tmp_path / RESULTS).write_text(json.dumps(bad) + "\n" + _record().to_json() + "\n")
    with pytest.raises(UserError, match=r"results.jsonl:1: .*'context_length' = '4k' is not int"):
        read_records(tmp_path)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_a_corrupt_run_json_is_one_line(tmp_path, content):
    (tmp_path / "run.json").write_text(content)
    with pytest.raises(UserError, match="run.json is unreadable"):
        RunDir.open(tmp_path, {"task": "passkey"}, {})


def test_torn_last_line_is_dropped_and_appending_continues(tmp_path):
    rd = RunDir.open(tmp_path, {"task": "passkey"}, {})
    rd.append(_record(sample_id=0))
    with (tmp_path / RESULTS).open("a") as f:
        f.write('{"task": "passkey", "context_le')  # a crash in the middle of a write
    with pytest.warns(UserWarning):
        assert len(read_records(tmp_path)) == 1
    rd = RunDir.open(tmp_path, {"task": "passkey"}, {})
    rd.append(_record(sample_id=1))
    assert [r.sample_id for r in read_records(tmp_path)] == [0, 1]


def test_corrupt_line_in_the_middle_is_an_error(tmp_path):
    (tmp_path / RESULTS).write_text("not json\n" + _record().to_json() + "\n")
    with pytest.raises(UserError, match=":1:"):
        read_records(tmp_path)


def test_version_1_records_still_read(tmp_path):
    """Schema 1 had no score/metric: those fields read as None."""
    import dataclasses

    d = dataclasses.asdict(_record())
    d.pop("score"), d.pop("metric")
    d["schema_version"] = 1
    (tmp_path / RESULTS).write_text(json.dumps(d) + "\n")
    (r,) = read_records(tmp_path)
    assert r.schema_version == 1 and r.score is None and r.correct


def test_perplexity_from_before_schema_4_reads_as_ordinary_records_through_the_same_reader(tmp_path):
    """Old run directories kept perplexity in perplexity.jsonl (document, tokens = scored tokens); the one reader
    returns them as SampleRecords and treats a torn last line there exactly as in results.jsonl."""
    old = {"task": "perplexity", "model": "m", "extension": "none", "extension_params": {}, "runner": "hf",
           "document": 1, "seed": 0, "mode": "one-pass", "context_length": 4096, "position_start": 2048,
           "tokens": 2048, "nll": 2.5, "ppl": 12.18, "forward_length": 8192, "schema_version": 2}
    (tmp_path / "perplexity.jsonl").write_text(json.dumps(old) + "\n" + '{"task": "perpl')
    with pytest.warns(UserWarning, match="incomplete last line"):
        (r,) = read_records(tmp_path)
    assert r.scores_tokens and (r.sample_id, r.scored_tokens, r.tokens, r.depth) == (1, 2048, 8192, None)
    (tmp_path / "perplexity.jsonl").write_text("garbage\n" + json.dumps(old) + "\n")
    with pytest.raises(UserError, match="perplexity.jsonl:1:"):
        read_records(tmp_path)


def test_a_run_directory_has_one_writing_process_at_a_time(tmp_path):
    """Two processes appending to one run directory would duplicate samples (it happened with two searches on one
    sweep cell): the second is refused in one line while the first lives; a dead writer's claim is taken over,
    and a process may reopen its own run directory."""
    import os
    import subprocess
    import sys

    from harness.records import WRITER

    RunDir.open(tmp_path, {"task": "passkey"}, {})
    RunDir.open(tmp_path, {"task": "passkey"}, {})  # this process again: fine
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / WRITER).write_text(str(other.pid))  # as if that process had opened it
        with pytest.raises(UserError, match=f"being written by another process \\(pid {other.pid}\\)") as err:
            RunDir.open(tmp_path, {"task": "passkey"}, {})
        assert "\n" not in str(err.value)
    finally:
        other.kill()
        other.wait()
    RunDir.open(tmp_path, {"task": "passkey"}, {}).start()  # the writer is gone: its claim is stale
    assert (tmp_path / WRITER).read_text() == str(os.getpid())


def test_the_readme_names_the_schema_version_the_code_writes():
    import re
    from pathlib import Path

    from harness.records import SCHEMA_VERSION

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert re.findall(r"schema version (\d+)", readme) == [str(SCHEMA_VERSION)]
