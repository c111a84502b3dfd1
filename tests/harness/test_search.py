"""Effective-length search: the bisection and its sequential decisions on scripted accuracy curves (seeded), and
the command end to end on a tiny model."""
from __future__ import annotations

import math
import random

import pytest

from harness.search import Search, SearchConfig


def _curve(acc, seed):
    """probe(length, i): a Bernoulli draw with probability acc(length), seeded per (length, i)."""
    def probe(length, i):
        return random.Random(f"{seed}|{length}|{i}").random() < acc(length)
    return probe


def cliff(at, high=0.98, low=0.02):
    return lambda n: high if n < at else low


def test_a_clean_cliff_is_bracketed_to_the_resolution_in_fewer_samples_than_a_grid():
    cfg = SearchConfig(low=2048, high=131072, threshold=0.5, resolution=1.19, max_samples=24)
    r = Search(_curve(cliff(11000), 0), cfg).run()
    lo, hi = r.bracket
    assert r.status == "bracketed" and lo < 11000 <= hi and hi / lo <= 1.19 * 1.02  # lengths rounded to 64
    assert not r.non_monotone
    assert r.samples < r.grid_samples / 3, (r.samples, r.grid_samples)


@pytest.mark.parametrize("name,acc,crossing", [
    ("cliff", cliff(20000), 20000),
    ("slope", lambda n: min(1.0, max(0.0, 1.6 - 0.3 * math.log2(n / 1024))), 1024 * 2 ** (1.1 / 0.3)),
    ("noisy-cliff", cliff(9000, high=0.9, low=0.1), 9000),
])
def test_the_bracket_contains_the_true_crossing_as_often_as_claimed(name, acc, crossing):
    """Over 200 seeded trials: the bracket [a length decided "pass", a length decided "fail"] contains the length
    where the accuracy curve crosses the threshold in at least 95 % of the trials (the per-look 95 % Wilson interval
    is the claim). Near a gentle slope the search may stop "undecided" between its ends: the bracket still holds."""
    cfg = SearchConfig(low=1024, high=65536, threshold=0.5, resolution=1.3, max_samples=40)
    hits = 0
    for seed in range(200):
        r = Search(_curve(acc, seed), cfg).run()
        assert r.status == "bracketed" or r.status.startswith("undecided at"), r.status
        lo, hi = r.bracket
        hits += lo <= crossing <= hi
    assert hits / 200 >= 0.95, (name, hits)


def test_a_method_that_fails_below_its_bracket_is_reported_non_monotone():
    """YaRN x4 on SmolLM2 missed at 4k and found at 8k: a search from 2k must say so, not hide it."""
    acc = lambda n: 0.0 if 3500 < n < 5000 else (0.98 if n < 12000 else 0.0)  # noqa: E731
    cfg = SearchConfig(low=2048, high=32768, threshold=0.5, resolution=1.19, max_samples=24)
    r = Search(_curve(acc, 1), cfg).run()
    assert any("fails at 4096" in s for s in r.non_monotone), r.non_monotone


def test_a_pass_above_the_bracket_is_found_and_reported():
    """When the bisection goes down early (fails at 5.8k), the octaves above the bracket are probed too: a method
    that fails at 4k-6k and finds again at 8k is reported, not hidden by a bracket near 3k."""
    acc = lambda n: 0.0 if 3000 < n < 6500 else (0.98 if n < 12000 else 0.0)  # noqa: E731
    r = Search(_curve(acc, 1), SearchConfig(low=2048, high=16384, threshold=0.5, max_samples=24)).run()
    lo, hi = r.bracket
    assert r.status == "bracketed" and lo < 3000 <= hi < 4096
    assert any(p.length == 8192 and p.decision == "pass" and p.purpose == "monotonicity" for p in r.probes)
    assert any("passes again at 8192" in x for x in r.non_monotone), r.non_monotone


def test_a_check_outside_the_bracket_stops_once_it_can_no_longer_contradict_it():
    """YaRN x4 on SmolLM2 found 9 of its first 12 passkeys at 16k, above a bracket near 3k: after two misses a pass
    there is out of reach at a cap of 48 (it takes 47/48), so the check stops instead of drawing 48 samples of
    two minutes each. Below the bracket, a length at 0.93 stops once a failure is out of reach."""
    cfg = SearchConfig(low=2048, high=32768)
    yarn = lambda n: 0.75 if n == 16384 else (0.995 if n < 3000 else 0.0)  # noqa: E731
    r = Search(_curve(yarn, 0), cfg).run()
    assert r.status == "bracketed" and r.bracket == (2880, 3136), r.summary()
    above = next(p for p in r.probes if p.length == 16384)
    assert above.purpose == "monotonicity" and above.decision == "cannot pass" and above.n - above.k == 2, above
    assert above.n < 16 and not r.non_monotone and not r.conditional, (above, r.non_monotone, r.conditional)
    shaky = lambda n: 0.93 if n == 4096 else (0.995 if n < 9000 else 0.0)  # noqa: E731
    r = Search(_curve(shaky, 0), cfg).run()
    below = next(p for p in r.probes if p.length == 4096)
    assert below.purpose == "monotonicity" and below.decision == "cannot fail" and below.n < 48, below
    # a check still says "pass" when the samples allow it, and the bisection's own lengths never stop early
    assert Search(lambda L, i: True, cfg).decide(4096, "monotonicity", watch="pass").decision == "pass"
    bis = Search(_curve(lambda n: 0.75, 0), cfg).decide(4096, "bisect")
    assert bis.decision in ("fail", "undecided") and (bis.decision == "fail" or bis.n == 48)


def test_a_method_that_fails_at_the_shortest_length_is_still_probed_above_it():
    """A failure at --min does not end the search: one length per octave and the longest are probed, and a pass
    among them is reported (YaRN x4: misses at 4k, finds at 8k)."""
    acc = lambda n: 0.98 if 6000 < n < 12000 else 0.0  # noqa: E731
    cfg = SearchConfig(low=4096, high=32768, threshold=0.5, max_samples=24)
    r = Search(_curve(acc, 2), cfg).run()
    assert r.status == "fails at the shortest length"
    # the octave checks look for a pass: once enough misses put one out of reach, the check stops
    assert [(p.length, p.decision) for p in r.probes] == [(4096, "fail"), (8192, "pass"), (16384, "cannot pass"),
                                                          (32768, "fail")]
    assert r.non_monotone == ["fails at 4096, passes again at 8192"]
    flat = Search(_curve(lambda n: 0.0, 2), cfg).run()
    assert not flat.non_monotone and [(p.decision, p.n) for p in flat.probes] == [
        ("fail", 8), ("cannot pass", 6), ("cannot pass", 6), ("fail", 8)]


def test_each_side_is_decided_wrongly_no_more_often_than_claimed():
    """A model exactly at RULER's 0.856 at one length: over 2,000 seeded sequences of samples, "pass" and "fail"
    are each said in at most 2.5 % of them (exact bounds, each side's share split over the looks where that side
    can be decided); a perfect model passes after 32 samples, a hopeless one fails after 4."""
    c = SearchConfig(low=2048, high=16384)
    said = {"pass": 0, "fail": 0, "undecided": 0}
    for seed in range(2000):
        draw = random.Random(seed)
        said[Search(lambda L, i: draw.random() < 0.856, c).decide(4096, "bisect").decision] += 1
    assert said["pass"] <= 50 and said["fail"] <= 50, said
    assert Search(lambda L, i: True, c).decide(4096, "bisect").n == 32
    assert Search(lambda L, i: False, c).decide(4096, "bisect").n == 4
    ok_47 = Search(lambda L, i: i != 5, c).decide(4096, "bisect")  # one miss in 48
    assert (ok_47.k, ok_47.n, ok_47.decision) == (47, 48, "pass")


def test_ends_of_the_range_and_undecided_lengths_are_said():
    cfg = SearchConfig(low=1024, high=8192, threshold=0.5, max_samples=8)
    assert Search(_curve(lambda n: 0.0, 0), cfg).run().status == "fails at the shortest length"
    assert Search(_curve(lambda n: 1.0, 0), cfg).run().status == "passes throughout"
    r = Search(_curve(lambda n: 0.5, 0), cfg).run()  # a coin: 8 samples cannot decide
    assert r.status.startswith("undecided") and r.probes[0].decision == "undecided" and r.probes[0].n == 8


def test_an_undecided_bisection_point_does_not_end_the_search(tmp_path):
    """SmolLM2 without scaling found 46/48 passkeys at 5.8k: undecided at RULER's 0.856 with a cap of 48. The search
    goes on with the side the point estimate is on, and keeps the decided bracket apart from where estimates lead."""
    acc = lambda n: 1.0 if n < 4000 else (0.95 if n < 8300 else 0.0)  # noqa: E731
    r = Search(_curve(acc, 2), SearchConfig(low=2048, high=16384)).run()
    # 5824 undecided (45/48), taken as passing; 7552 then passes outright (32/32): the decided bracket reaches 1.19
    assert r.status == "bracketed" and r.bracket == (7552, 8576) and r.estimate is None
    assert r.conditional[0].startswith("5824 as passing on 45/48")
    four = next(p for p in r.probes if p.length == 4096)  # the octave check below: at 0.95 it cannot fail
    assert four.purpose == "monotonicity" and four.decision == "cannot fail", four
    assert r.samples < r.grid_samples / 3
    # When no decided pass follows, the decided bracket stays wide and the estimate is said, not claimed.
    r = Search(_curve(acc, 3), SearchConfig(low=2048, high=16384)).run()  # 46/48 at 5824, 45/48 at 7552
    assert r.status == "undecided at 5824, 7552" and r.bracket == (2048, 8576) and r.estimate == (7552, 8576)
    assert "on point estimates: passes at 7552, fails at 8576" in r.summary() and "not a claim" in r.summary()
    # ... and the report says the same
    import json
    from dataclasses import asdict

    from reports.html import search_section

    (tmp_path / "search.json").write_text(json.dumps({"config": asdict(SearchConfig(low=2048, high=16384)),
                                                      **r.to_json()}))
    html = search_section([tmp_path])
    assert "undecided: 5824 as passing on 46/48" in html, html
    assert "passes at 7552, fails at 8576 — where the estimates lead" in html, html
    # an undecided length is coloured as neither a pass nor a failure
    assert '<td class="undecided">undecided</td>' in html and '<td class="bad">undecided</td>' not in html, html


def test_search_command_writes_ordinary_records_and_resumes(tiny_llama_path, tmp_path):
    """On the scripted runner (finds the key only in prompts up to 2,500 characters): the command brackets the
    reach, records are ordinary passkey records, and a re-run decides from them without new samples."""
    import json

    from evals.base import TaskConfig
    from harness.experiment import Experiment
    from harness.records import read_records
    from harness.runners.fake import ScriptedRunner
    from harness.search import run_search

    exp = Experiment(task="passkey", task_config=TaskConfig(lengths=(256,)), model=tiny_llama_path, runner="fake",
                     out=str(tmp_path / "s"))
    cfg = SearchConfig(low=256, high=4096, threshold=0.5, resolution=1.25, max_samples=8)
    r = run_search(exp, cfg, log=lambda *_: None, runner=ScriptedRunner(reach=2500))
    lo, hi = r.bracket
    assert r.status == "bracketed" and hi / lo <= 1.25 * 1.1
    records = read_records(tmp_path / "s")
    assert len(records) == r.samples and {x.task for x in records} == {"passkey"}
    saved = json.loads((tmp_path / "s" / "search.json").read_text())
    assert saved["bracket"] == [lo, hi] and len(saved["probes"]) == len(r.probes)
    again = run_search(exp, cfg, log=lambda *_: None, runner=ScriptedRunner(reach=0))  # would fail everything
    assert again.bracket == r.bracket and len(read_records(tmp_path / "s")) == len(records)
    from reports.html import write_report

    text = write_report([str(tmp_path / "s")], str(tmp_path / "r.html")).read_text()
    assert "Effective-length search" in text and f"{r.samples} samples" in text


def test_a_runner_failure_stops_the_search_instead_of_counting_as_a_miss(tiny_llama_path, tmp_path):
    """An out-of-memory error at the long end once decided that length as failing (0/4, errors scored 0). Now the
    search stops with a one-line error, keeps what it measured, and a re-run on a runner that works resumes."""
    from evals.base import TaskConfig
    from harness.errors import UserError
    from harness.experiment import Experiment
    from harness.records import read_records
    from harness.runners.fake import ScriptedRunner
    from harness.search import run_search

    class RunsOutOfMemory(ScriptedRunner):
        def generate(self, requests):
            if any(len(r.prompt) > 3000 for r in requests):
                raise RuntimeError("CUDA out of memory. Tried to allocate 35.97 GiB")
            return super().generate(requests)

    exp = Experiment(task="passkey", task_config=TaskConfig(lengths=(256,)), model=tiny_llama_path, runner="fake",
                     out=str(tmp_path / "s"))
    cfg = SearchConfig(low=256, high=4096, threshold=0.5, resolution=1.25, max_samples=8)
    with pytest.raises(UserError, match="runner failed at 4096 tokens .*out of memory.*not a miss"):
        run_search(exp, cfg, log=lambda *_: None, runner=RunsOutOfMemory())
    kept = read_records(tmp_path / "s")
    assert kept and all(r.context_length == 256 or r.error for r in kept)
    r = run_search(exp, cfg, log=lambda *_: None, runner=ScriptedRunner(reach=2500))
    assert r.status == "bracketed" and r.bracket[0] < 4096


def test_an_undecided_longest_length_with_a_low_estimate_is_bisected_as_a_condition():
    """Dynamic NTK x2 on SmolLM2 found 36/48 passkeys at 32k (every miss at depth 0.1): undecided at 0.856 with a
    cap of 48, and the search used to stop there with a 16x bracket. Below the threshold on its estimate, the end
    is now taken as failing, as a condition: the estimates lead to the crossing, the decided bracket stays wide."""
    acc = lambda n: 0.99 if n < 20000 else 0.78  # noqa: E731  (one depth in five lost past 20k)
    cfg = SearchConfig(low=2048, high=32768, max_samples=48)
    r = Search(_curve(acc, 0), cfg).run()
    assert r.status.startswith("undecided at") and "32768" in r.status and r.conditional[0].startswith("32768 as failing")
    a, b = r.estimate
    assert b / a <= 1.19 * 1.02 and a < 20000 * 1.2 and b > 20000 / 1.2, r.estimate
    assert r.bracket[1] == 32768 or any(p.decision == "fail" and p.length == r.bracket[1] for p in r.probes)
    # An undecided end whose estimate is above the threshold is not bisected: nothing there points to a failure.
    r = Search(_curve(lambda n: 0.99 if n < 20000 else 0.88, 0), cfg).run()
    assert r.status == "undecided at 32768" and r.estimate is None and len(r.probes) == 2
