import re

import pytest

from harness.records import RunDir, SampleRecord
from reports.aggregate import accuracy_by_length, wilson_interval
from reports.html import write_report


def test_wilson_interval_known_values():
    # Values from the closed form (Wilson 1927), z = 1.96.
    lo, hi = wilson_interval(0, 3)
    assert lo == 0.0 and hi == pytest.approx(0.5615, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _rec(length, depth, sid, correct, prediction):
    return SampleRecord(task="passkey", model="m", extension="none", extension_params={}, runner="hf",
                        context_length=length, tokens=length - 15, depth=depth, sample_id=sid, seed=0,
                        prediction=prediction, target="12345", correct=correct, lenient=correct, latency_s=1.0,
                        peak_mem_bytes=2**30, model_max_position=8192)


@pytest.fixture
def run_dir(tmp_path):
    rd = RunDir.open(tmp_path / "run", {"task": "passkey"}, {"argv": ["longctx", "passkey", "<b>x</b>"]})
    evil = "<script>alert(1)</script></td></tr></table>"
    for length, ok in ((4096, True), (8192, True), (16384, False)):
        for depth in (0.2, 0.8):
            for sid in range(2):
                rd.append(_rec(length, depth, sid, ok, " 12345." if ok else evil))
    return rd.path


def test_report_escapes_model_output_and_keeps_tables_intact(run_dir, tmp_path):
    out = write_report([str(run_dir)], str(tmp_path / "r.html"))
    text = out.read_text()
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>x</b>" not in text  # command lines are data too
    scripts = re.findall(r"<script>(.*?)</script>", text, flags=re.S)
    assert len(scripts) == 1 and "alert" not in scripts[0]  # only the report's own table sorter
    assert text.count("<table") == text.count("</table>")
    assert text.count("<tr>") == text.count("</tr>")
    assert text.count("<td") == text.count("</td>")
    assert text.count("data:image/png;base64,") == 2  # accuracy-vs-length and one heatmap


def test_accuracy_by_length_counts(run_dir):
    from harness.records import read_records

    rows = {r["context_length"]: r for r in accuracy_by_length(read_records(run_dir))}
    assert rows[8192]["correct"] == 4 and rows[16384]["correct"] == 0 and rows[16384]["n"] == 4
