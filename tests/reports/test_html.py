import dataclasses
import re

import pytest

from harness.records import RunDir, SampleRecord
from harness.stats import wilson_interval
from reports.aggregate import accuracy_by_length
from reports.html import write_report


def test_wilson_interval_known_values():
    # Values from the closed form (Wilson 1927), z = 1.96.
    lo, hi = wilson_interval(0, 3)
    assert lo == 0.0 and hi == pytest.approx(0.5615, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # all right / all wrong: the ends are exact (rounding had left 48/48's upper end 1e-16 under 1.0, and the
    # accuracy plot's error bar negative: `longctx report` crashed on the effective-length search's run)
    assert all(wilson_interval(n, n)[1] == 1.0 and wilson_interval(0, n)[0] == 0.0 for n in range(1, 200))


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
    assert text.count("data:image/png;base64,") == 3  # accuracy-vs-length, one heatmap, cost curves


def test_accuracy_by_length_counts(run_dir):
    from harness.records import read_records

    rows = {r["context_length"]: r for r in accuracy_by_length(read_records(run_dir))}
    assert rows[8192]["correct"] == 4 and rows[16384]["correct"] == 0 and rows[16384]["n"] == 4


def test_a_retry_replaces_its_attempt_but_another_seed_adds_samples():
    """Two runs of one configuration on other prompts (seed 1 beside seed 0, same cells) are 2n samples; the same
    prompt measured again (a retried error) is one."""
    failed = dataclasses.replace(_rec(4096, 0.5, 0, False, ""), prompt_sha="a", error="RuntimeError: oom")
    retried = dataclasses.replace(_rec(4096, 0.5, 0, True, " 12345."), prompt_sha="a")
    other_seed = dataclasses.replace(_rec(4096, 0.5, 0, False, " 54321."), prompt_sha="b", seed=1)
    (row,) = accuracy_by_length([failed, retried, other_seed], errored=True)
    assert row["n"] == 2 and row["correct"] == 1 and row["errors"] == 0


def test_effective_length_reads_upwards_from_the_shortest_length():
    from reports.aggregate import effective_length

    rows = [{"context_length": n, "score": s} for n, s in ((1024, 1.0), (2048, 0.9), (4096, 0.5), (8192, 0.95))]
    assert effective_length(rows, 0.856) == 2048  # 8k recovers, but 4k already failed
    assert effective_length(rows, 0.4) == 8192
    assert effective_length(rows, 1.01) is None


def test_report_states_effective_lengths_and_thresholds(run_dir, tmp_path):
    out = write_report([str(run_dir)], str(tmp_path / "r.html"), threshold=0.5, relative=0.85,
                       save_figures=str(tmp_path / "figs"))
    text = out.read_text()
    assert "effective length (score ≥ 0.5)" in text
    row = re.search(r"<tr><td>m</td><td>none</td><td>hf</td><td>passkey</td><td>exact</td>(.*?)</tr>", text).group(1)
    assert ">8k<" in row  # 4k and 8k pass, 16k fails
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "accuracy_passkey.png", "cost.png", "heatmap_m_none_hf_passkey.png"]


def test_bad_threshold_is_a_user_error(run_dir, tmp_path):
    from harness.errors import UserError

    with pytest.raises(UserError, match="thresholds are fractions"):
        write_report([str(run_dir)], str(tmp_path / "r.html"), threshold=85.6)


@pytest.mark.skipif(__import__("shutil").which("chromium") is None, reason="needs Debian's chromium package")
def test_report_renders_in_chromium_without_js_errors(run_dir, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    out = write_report([str(run_dir)], str(tmp_path / "r.html"))
    script = Path(__file__).resolve().parents[2] / "scripts" / "check_report.py"
    res = subprocess.run([sys.executable, str(script), str(out), "--screenshot", str(tmp_path / "r.png")],
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r.png").stat().st_size > 20_000


def test_report_of_perplexity_runs_has_the_curve(tmp_path):
    rd = RunDir.open(tmp_path / "ppl", {"task": "perplexity"}, {"argv": ["longctx", "perplexity"]})
    for doc in (0, 1):
        for a, b, nll in ((0, 4096, 2.0), (4096, 8192, 2.1), (8192, 16384, 6.0)):
            rd.append(SampleRecord(task="perplexity", model="m", extension="none", extension_params={},
                                   runner="hf", context_length=b, tokens=16384, depth=None, sample_id=doc, seed=0,
                                   mode="one-pass", position_start=a, scored_tokens=b - a, nll=nll,
                                   ppl=2.718 ** nll, forward_length=16384, model_max_position=8192))
    text = write_report([str(rd.path)], str(tmp_path / "r.html")).read_text()
    assert "Perplexity vs length" in text and text.count("data:image/png;base64,") == 1
    assert "403.43" in text  # exp(6.0), mean over the two documents


def test_a_partial_credit_task_reads_the_same_everywhere(tmp_path):
    """niah-multivalue-style records: every answer half right (score 0.5, strict miss). The summary, the
    interval, the heatmap's colour and the effective length all use the score, with strict beside it."""
    import dataclasses

    from reports.aggregate import effective_length, grid

    rd = RunDir.open(tmp_path / "run", {"task": "niah-multivalue"}, {"argv": ["longctx"]})
    recs = [dataclasses.replace(_rec(n, 0.5, sid, False, " 1 2"), task="niah-multivalue", score=0.5,
                                metric="all-references") for n in (4096, 8192) for sid in range(4)]
    for r in recs:
        rd.append(r)
    rows = accuracy_by_length(recs)
    assert [(r["score"], r["correct"]) for r in rows] == [(0.5, 0), (0.5, 0)]
    assert rows[0]["ci_low"] < 0.5 < rows[0]["ci_high"] and rows[0]["ci_low"] > 0  # an interval around the score
    assert grid(recs)[(0.5, 4096)]["score"] == 0.5
    assert effective_length(rows, 0.4) == 8192 and effective_length(rows, 0.6) is None
    text = write_report([str(rd.path)], str(tmp_path / "r.html")).read_text()
    assert '0.50 <span class="muted">all-references</span>' in text and "0/4" in text


def test_method_labels_name_only_what_differs_from_the_defaults():
    """The method writes its short label (into every record); the report shows it, or, for a record from before
    schema 6, the full parameters."""
    from extensions import EXTENSIONS
    from reports.aggregate import method_label as shown

    def method_label(name, params):
        return EXTENSIONS.get(name)().short_label(params)

    yarn = {"factor": 2, "beta_fast": 32.0, "beta_slow": 1.0, "original_max_position_embeddings": 8192,
            "attention_factor": None}
    assert method_label("yarn", yarn) == "yarn ×2"
    old = SampleRecord(task="passkey", model="m", extension="yarn", extension_params=yarn, runner="hf",
                       context_length=1, tokens=1, depth=None, sample_id=0, seed=0)
    assert shown(old) == "yarn(beta_fast=32.0,beta_slow=1.0,factor=2,original_max_position_embeddings=8192)"
    assert shown(dataclasses.replace(old, method_label="yarn ×2")) == "yarn ×2"
    assert method_label("yarn", yarn | {"factor": 4, "beta_fast": 16.0}) == "yarn ×4 beta_fast=16"
    assert method_label("sinks", {"sink_tokens": 4, "window": 4092, "chunk": 512}) == "sinks 4+4092"
    assert method_label("selfextend", {"group": 4, "window": 1024}) == "selfextend G4 W1024"
    assert method_label("alibi", {"max_bias": 8.0, "slope_scale": "none", "train_length": 8192}) == "alibi"
    assert method_label("none", {}) == "none"


def _yarn_run(tmp_path, name, factor, scores):
    """A YaRN run whose passkey is found (1) or missed (0) at 4k / 8k / 16k, two samples per length."""
    import dataclasses

    rd = RunDir.open(tmp_path / name, {"task": "passkey", "f": factor}, {"argv": ["longctx"]})
    params = {"factor": factor, "beta_fast": 32.0, "beta_slow": 1.0, "original_max_position_embeddings": 8192,
              "attention_factor": None}
    for n, ok in zip((4096, 8192, 16384), scores):
        for sid in range(2):
            rd.append(dataclasses.replace(_rec(n, 0.5, sid, bool(ok), " 12345." if ok else " no"), extension="yarn",
                                          extension_params=params, method_label=f"yarn ×{factor}", score=float(ok),
                                          metric="exact"))
    return rd.path


def test_the_headline_table_compares_methods_by_length_and_says_the_surprise(tmp_path):
    """The first table: one row per method with short labels, one column per length; YaRN ×4 failing at 4k and
    passing at 8k is flagged instead of hidden behind "< 4k"."""
    runs = [_yarn_run(tmp_path, "y2", 2, (1, 1, 0)), _yarn_run(tmp_path, "y4", 4, (0, 1, 0))]
    text = write_report([str(p) for p in runs], str(tmp_path / "r.html")).read_text()
    head = text[text.index('<table class="sortable headline">'):]
    head = head[:head.index("</table>")]
    assert head.index("<th>4k</th>") < head.index("<th>8k</th>") < head.index("<th>16k</th>")
    assert ">yarn ×2<" in head and ">yarn ×4<" in head and "beta_fast" not in head.split("title=")[0]
    assert "non-monotone: passes again at 8k" in head
    assert text.index("headline") < text.index("<h2>Effective length</h2>") < text.index("<h2>Appendix</h2>")
    assert "<details><summary>every configuration at every length" in text
    assert text.count('<div class="scroll"><table') == text.count("<table")  # every table scrolls in its own box


@pytest.mark.skipif(__import__("shutil").which("chromium") is None, reason="needs Debian's chromium package")
@pytest.mark.parametrize("width", [1000, 1200, 1400])
def test_a_comparison_report_fits_the_page_in_chromium(tmp_path, width):
    """Seven methods and the long default labels of old: at 1000-1400 px nothing is cut and the headline table
    fits whole (the check fails on a scroll box or figure past the viewport, or a headline wider than its box)."""
    import dataclasses
    import subprocess
    import sys
    from pathlib import Path

    methods = [("none", {}), ("pi", {"factor": 2}), ("ntk", {"factor": 2}), ("dynamic-ntk", {"factor": 2}),
               ("yarn", {"factor": 2, "beta_fast": 32.0, "beta_slow": 1.0, "original_max_position_embeddings": 8192}),
               ("selfextend", {"group": 4, "window": 1024}), ("sinks", {"sink_tokens": 4, "window": 4092})]
    from extensions import EXTENSIONS

    runs = []
    for i, (name, params) in enumerate(methods):
        label = EXTENSIONS.get(name)().short_label(params)  # as the experiment writes it into every record
        rd = RunDir.open(tmp_path / name, {"i": i}, {"argv": ["longctx"]})
        for n in (2048, 4096, 8192, 16384):
            for sid in range(3):
                ok = (n <= 8192) != (sid == 2 and i % 2 == 0)
                rd.append(dataclasses.replace(_rec(n, 0.5, sid, ok, " 12345." if ok else " no"), extension=name,
                                              extension_params=params, method_label=label,
                                              model="runs/ckpt/SmolLM2-135M-Instruct"))
        runs.append(str(rd.path))
    out = write_report(runs, str(tmp_path / "r.html"))
    script = Path(__file__).resolve().parents[2] / "scripts" / "check_report.py"
    res = subprocess.run([sys.executable, str(script), str(out), "--screenshot", str(tmp_path / "r.png"),
                          "--width", str(width)], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr


def test_the_cost_legend_names_the_task_when_the_runs_hold_several():
    from reports.html import cost_labels

    one = {("runs/bl/alibi", "none", "kernel", "passkey"): [], ("runs/bl/alibi", "yarn", "kernel", "passkey"): []}
    assert cost_labels(one) == {k: f"{k[1]} · kernel · alibi" for k in one}  # one task: said once, in the section
    two = {("runs/bl/alibi", "none", "kernel", "passkey"): [], ("runs/bl/alibi", "none", "kernel", "mqar-keyed"): []}
    labels = cost_labels(two)
    assert len(set(labels.values())) == 2 and labels[next(iter(two))] == "none · kernel · alibi · passkey"


def test_the_training_table_names_the_recipe_and_a_moving_average():
    from reports.html import _recipe

    assert _recipe({}) == "mixed"  # a record from before recipes
    assert _recipe({"recipe": "recall", "ema_decay": 0.0}) == "recall"
    assert _recipe({"recipe": "recall", "ema_decay": 0.995}) == "recall, EMA 0.995"
    assert _recipe({"recipe": "recall", "ema_decay": 0.995, "init_from": "runs/bl6/rope-conv"}) == \
        "recall, EMA 0.995, continued from bl6/rope-conv"


def test_models_sharing_a_folder_name_are_told_apart():
    from reports.html import model_names

    names = model_names(["runs/bl5/alibi", "runs/bl6-ema/alibi", "runs/bl6/rope-conv", "smollm2"])
    assert names == {"runs/bl5/alibi": "bl5/alibi", "runs/bl6-ema/alibi": "bl6-ema/alibi",
                     "runs/bl6/rope-conv": "rope-conv", "smollm2": "smollm2"}


def test_errored_samples_are_counted_apart_from_misses(tmp_path):
    """A sample whose request raised is no measurement: it is left out of the score and shown as an error, and a
    length where every sample raised reads "errors", never 0.00."""
    import dataclasses

    rd = RunDir.open(tmp_path / "run", {"task": "passkey"}, {"argv": ["longctx"]})
    for sid in range(4):
        rd.append(_rec(4096, 0.5, sid, sid < 3, " 12345."))  # 3 right, 1 wrong
    rd.append(dataclasses.replace(_rec(4096, 0.5, 4, False, ""), error="RuntimeError: out of memory"))
    for sid in range(2):
        rd.append(dataclasses.replace(_rec(8192, 0.5, sid, False, ""), error="RuntimeError: out of memory"))
    from harness.records import read_records

    rows = accuracy_by_length(read_records(rd.path), errored=True)
    assert [(r["context_length"], r["n"], r["correct"], r["errors"]) for r in rows] == [(4096, 4, 3, 1),
                                                                                       (8192, 0, 0, 2)]
    assert rows[0]["score"] == 0.75 and rows[1]["score"] is None
    text = write_report([str(rd.path)], str(tmp_path / "r.html")).read_text()
    assert "+1 errors" in text and 'class="cell error"' in text
    assert text.count("<td") == text.count("</td>") and text.count("<tr>") == text.count("</tr>")


def test_the_why_sections_read_answer_likelihoods_and_diagnostics(tmp_path):
    """Records with answer log-probabilities and diagnostics lines beside them: the report states the means and
    draws, per length, the pass / fail heatmaps, the top heads across lengths and a drill-down per failure."""
    import json

    import torch

    from harness.records import DIAGNOSTICS
    from harness.runners.diagnostics import encode

    rd = RunDir.open(tmp_path / "run", {"task": "passkey"}, {"argv": ["longctx"]})
    for length, ok, lp in ((4096, True, -0.5), (16384, False, -7.5)):
        for sid in range(2):
            r = dataclasses.replace(_rec(length, 0.5, sid, ok, " 12345." if ok else " 99"), answer_logprob=lp - sid,
                                    answer_tokens=6)
            mass = torch.zeros(2, 3)
            mass[1, 2] = 0.8 if ok else 0.05  # head 1.2 finds the needle at 4k and loses it at 16k
            rd.append_diagnostics(r.key, {"mode": "first", "layers": 2, "heads": 3, "needle": [10, 16],
                                          **{f: encode(mass if f == "needle_mass" else (mass > 0.5).float()
                                                       if f == "retrieval" else torch.zeros(2, 3))
                                             for f in ("needle_mass", "retrieval", "sink_mass", "recent_mass",
                                                       "entropy")}})
            rd.append(r)
    text = write_report([str(rd.path)], str(tmp_path / "r.html")).read_text()
    assert "The answer&#x27;s likelihood" in text or "The answer's likelihood" in text
    assert "<td class=\"num\">-1.00</td>" in text and "<td class=\"num\">-8.00</td>" in text  # means at 4k, 16k
    assert "Why: attention diagnostics" in text and "failed samples, one by one (2 shown)" in text
    # accuracy, one accuracy heatmap, cost, answer log p, 2 lengths' pass/fail heatmaps, top heads, 2 drill-downs
    assert text.count("data:image/png;base64,") == 3 + 1 + 2 + 1 + 2
    assert len((tmp_path / "run" / DIAGNOSTICS).read_text().splitlines()) == 4
    assert json.loads((tmp_path / "run" / DIAGNOSTICS).read_text().splitlines()[0])["key"][0] == "passkey"


def test_the_causal_check_sets_each_ablation_beside_no_ablation(tmp_path):
    rd = RunDir.open(tmp_path / "run", {"task": "passkey"}, {"argv": ["longctx"]})
    for ablation, heads, found in ((None, None, 4), ("top:2", "3.1,7.4", 1), ("random:2", "0.2,5.5", 4)):
        for sid in range(4):
            ok = sid < found
            rd.append(dataclasses.replace(_rec(4096, 0.5, sid, ok, " 12345." if ok else " 99"), ablation=ablation,
                                          ablated_heads=heads, answer_logprob=-0.5 if ok else -6.0,
                                          method_label="none" + (f" −heads {ablation}" if ablation else ""),
                                          prompt_sha=f"p{sid}"))
    other = RunDir.open(tmp_path / "other-seed", {"task": "passkey", "seed": 1}, {"argv": ["longctx"]})
    other.append(dataclasses.replace(_rec(4096, 0.5, 0, False, " 99"), seed=1, prompt_sha="q0"))  # not the check's
    text = write_report([str(rd.path), str(other.path)], str(tmp_path / "r.html")).read_text()
    section = text.split("Causal check: heads removed")[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>.*?</tr>", section)
    assert [re.findall(r'<td title="[^"]*">([^<]*)</td>', r)[0] for r in rows] == ["none removed", "top:2", "random:2"]
    assert ["4/4" in rows[0], "1/4" in rows[1], "4/4" in rows[2]] == [True] * 3
    assert 'title="3.1,7.4"' in rows[1] and "-4.62" in rows[1]  # (−0.5 − 3 × 6) / 4


def test_effective_length_four_ways_with_their_ranges():
    """Scores 1.0 / 0.9 / 0.5 at 2k / 4k / 8k (n = 20): RULER 4k (the 4k Wilson bounds straddle 0.856), NoLiMa 4k,
    LongScore over 8k alone against the mean of 2k and 4k, per depth from each depth's samples."""
    from reports.aggregate import (accuracy_by_length, effective_length_by_depth, effective_length_interval,
                                   long_score)

    recs = []
    for n, k in ((2048, 20), (4096, 18), (8192, 10)):
        for i in range(20):
            recs.append(_rec(n, 0.25 if i % 2 else 0.75, i, i < k, "x"))
    rows = accuracy_by_length(recs)
    point, low, high = effective_length_interval(rows, 0.856)
    # even 20/20's Wilson lower bound (0.84) is below 0.856: this run cannot vouch for 2k; 10/20's upper end is 0.70
    assert (point, low, high) == (4096, None, 4096)
    assert effective_length_interval(rows, 0.85 * rows[0]["score"])[0] == 4096
    ls = long_score(rows)
    assert ls["base"] == pytest.approx(0.95) and ls["lengths"] == [8192]
    assert ls["value"] == pytest.approx((0.5 - 0.95) / 0.95) and ls["low"] < ls["value"] < ls["high"]
    by_depth = effective_length_by_depth(recs, 0.856)
    assert set(by_depth) == {0.25, 0.75} and all(v[0] in (2048, 4096) for v in by_depth.values())


def test_the_report_draws_scores_against_relative_length_when_windows_differ(tmp_path):
    rd = RunDir.open(tmp_path / "run", {"task": "passkey"}, {"argv": ["longctx"]})
    for model, window in (("a", 2048), ("b", 8192)):
        for n in (2048, 4096, 8192):
            rd.append(dataclasses.replace(_rec(n, 0.5, 0, n <= window, "x"), model=model, model_max_position=window))
    text = write_report([str(rd.path)], str(tmp_path / "r.html"), save_figures=str(tmp_path / "f")).read_text()
    assert (tmp_path / "f" / "relative_passkey.png").exists()
    assert "LongScore" in text and "of base" in text
