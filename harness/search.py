"""Effective-length search: where does a method stop finding what is in its context, with a confidence bound, at a
fraction of a grid's cost.

The search bisects on log length between a length that passes and one that fails. At each probed length it draws
samples one at a time (depths stratified, seeded: sample i sits at depth strata[i mod D]) and stops as soon as an
exact (Clopper–Pearson) bound on the success rate lies wholly above the threshold (pass) or wholly below it (fail),
or at the per-length cap (undecided: said, with how close it came; a bisection point left undecided is taken on its
point estimate, and the bracket the bounds decided is kept apart from where the estimates lead). It does not assume
the score falls monotonically with length: after bracketing it probes one length per octave outside the bracket
that it has not probed yet and reports every failure below and every pass above, rather than hiding them; such a
check stops once the decision it looks for is out of reach within the cap ("cannot pass" / "cannot fail").

`Search` is the pure procedure over a `probe(length, i) -> bool` function (tests drive it with scripted accuracy
curves); `run_search` connects it to the experiment loop: ordinary records in an ordinary run directory (resume
reuses every sample already there), plus search.json with the path taken.

Statistics: a decision at one length is wrong with probability at most 1 − `confidence` (5 %): 2.5 % for each
side. It looks only at n = 1, 2, 4, 8, ... and at the cap, and splits each side's 2.5 % over the looks at which that
side can be decided at all (Bonferroni), because looking after every sample at a plain 95 % interval lets a score
near the threshold be decided wrongly far more often (measured in the tests: the bracket then held the true
crossing of a gentle slope in 88 % of seeded trials). The bounds are exact, not Wilson's: Wilson's upper end for
0/2 sits below 0.856 although a model at 0.856 misses twice 2 % of the time. The price at RULER's 0.856 and a cap
of 48: a pass takes 32 straight successes or 47 of 48; a failure is decided after four samples at the earliest.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from harness.errors import UserError
from harness.stats import exact_bounds


@dataclass(frozen=True)
class SearchConfig:
    low: int  # shortest length (tokens) of the range
    high: int  # longest
    threshold: float = 0.856  # RULER's: Llama-2-7B's 4k score
    resolution: float = 1.19  # stop when the bracket's ends are within this ratio
    max_samples: int = 48  # per probed length (at 0.856 a pass takes 32 straight successes or 47 of 48)
    confidence: float = 0.95  # per decision, split over its looks
    step: int = 64  # probed lengths are multiples of this

    def __post_init__(self):
        bad = [k for k in ("threshold", "resolution", "confidence") if not math.isfinite(getattr(self, k))]
        if bad:
            raise UserError(f"search {bad[0]} must be a finite number, got {getattr(self, bad[0])}")
        if not (0 < self.low < self.high):
            raise UserError(f"search range must satisfy 0 < --min < --max, got {self.low} and {self.high}")
        if not 0 < self.threshold < 1:
            raise UserError(f"--threshold must be in (0, 1), got {self.threshold}")
        if not self.resolution > 1:
            raise UserError(f"--resolution must be > 1 (a ratio of lengths), got {self.resolution}")
        if self.max_samples < 1:
            raise UserError(f"--max-samples must be at least 1, got {self.max_samples}")
        if not 0 < self.confidence < 1:
            raise UserError(f"confidence must be in (0, 1), got {self.confidence}")

    @property
    def looks(self) -> list[int]:
        """The sample counts at which a decision may be taken: powers of two, and the cap."""
        out, n = [], 1
        while n < self.max_samples:
            out.append(n)
            n *= 2
        return out + [self.max_samples]

    def alpha(self, side: str) -> float:
        """The error allowed to one decision at one look. Each side ("pass": the interval's lower end above the
        threshold; "fail": its upper end below) may be wrong with probability (1 − confidence) / 2, split evenly
        over the looks at which that side can be decided at all. At RULER's 0.856 and a cap of 48 a pass is
        possible only at n = 32 and 48 (n straight successes must clear the threshold), so its share is split two
        ways, not seven: a pass costs 32 straight successes, or 47 of 48."""
        return _alpha(side, self.threshold, self.confidence, tuple(self.looks))


@functools.lru_cache(maxsize=64)
def _alpha(side: str, threshold: float, confidence: float, looks: tuple[int, ...]) -> float:
    """The per-look error of one side's decisions: SearchConfig.alpha."""
    share = (1 - confidence) / 2

    def possible(n: int, a: float) -> bool:
        return (exact_bounds(n, n, a)[0] > threshold if side == "pass"
                else exact_bounds(0, n, a)[1] < threshold)

    for m in range(1, len(looks) + 1):  # the fewest shares with no more possible looks than shares
        if sum(possible(n, share / m) for n in looks) <= m:
            return share / m
    return share / len(looks)


@dataclass
class Probe:
    length: int
    k: int = 0  # successes
    n: int = 0  # samples
    decision: str | None = None  # "pass", "fail", "undecided" at the cap; checks: "cannot pass" / "cannot fail"
    ci: tuple[float, float] = (0.0, 1.0)
    purpose: str = "bisect"  # "end", "bisect" or "monotonicity"


@dataclass
class SearchResult:
    bracket: tuple[int | None, int | None]  # (longest passing, shortest failing) the bisection established
    status: str  # "bracketed", "passes throughout", "fails at the shortest length", "undecided at L" (an end)
    probes: list[Probe] = field(default_factory=list)
    non_monotone: list[str] = field(default_factory=list)
    # lengths left undecided at the cap: bisection points (taken on their point estimate k/n so the bisection goes
    # on; `bracket` stays what the bounds decided, `estimate` is where the point estimates lead when the decided
    # bracket is wider than the resolution) and octave checks below the bracket
    conditional: list[str] = field(default_factory=list)
    estimate: tuple[int, int] | None = None  # the bracket on those point estimates (narrower, not a claim)
    samples: int = 0  # samples the search looked at (new and reused)
    grid_samples: int = 0  # a grid at the same resolution and per-length cap

    def to_json(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "probes"},
                "probes": [asdict(p) for p in self.probes]}

    def summary(self) -> str:
        lo, hi = self.bracket
        head = f"passes at {lo}, fails at {hi} (ratio {hi / lo:.2f})" if self.status == "bracketed" else self.status
        flags = f"; NON-MONOTONE: {'; '.join(self.non_monotone)}" if self.non_monotone else ""
        if self.status.startswith("undecided at") and lo and hi:
            head += f"; the bounds bracket it between {lo} and {hi} (ratio {hi / lo:.2f})"
        if self.estimate:
            a, b = self.estimate
            head += f"; on point estimates: passes at {a}, fails at {b} (ratio {b / a:.2f}), not a claim"
        if self.conditional:
            flags += f"; UNDECIDED: {'; '.join(self.conditional)}"
        return (f"{head}{flags}. {self.samples} samples over {len(self.probes)} lengths; a grid at the same "
                f"resolution would take {self.grid_samples}")


class Search:
    def __init__(self, probe: Callable[[int, int], bool], config: SearchConfig):
        self.probe_fn, self.cfg = probe, config
        self.probes: dict[int, Probe] = {}

    def _round(self, length: float) -> int:
        return max(self.cfg.step, int(round(length / self.cfg.step)) * self.cfg.step)

    def decide(self, length: int, purpose: str, watch: str | None = None) -> Probe:
        """Sample at `length` until the bounds clear the threshold either way, or the cap. With `watch` ("pass" or
        "fail": what a check outside the bracket is looking for), stop as soon as that decision can no longer be
        reached within the cap ("cannot pass" / "cannot fail"): a length above the bracket that has missed too
        often to pass has answered the only question asked of it. The other side's decisions are untouched, so
        neither side's error grows."""
        p = self.probes.setdefault(length, Probe(length, purpose=purpose))
        c = self.cfg
        a_pass, a_fail, looks = c.alpha("pass"), c.alpha("fail"), set(c.looks)
        while p.decision is None:
            if p.n >= c.max_samples:
                p.decision = "undecided"
                break
            p.k += bool(self.probe_fn(length, p.n))
            p.n += 1
            p.ci = (exact_bounds(p.k, p.n, a_pass)[0], exact_bounds(p.k, p.n, a_fail)[1])
            if p.n in looks and p.ci[0] > c.threshold:
                p.decision = "pass"
            elif p.n in looks and p.ci[1] < c.threshold:
                p.decision = "fail"
            elif watch and not self._reachable(p, watch):
                p.decision = f"cannot {watch}"
        return p

    def _reachable(self, p: Probe, side: str) -> bool:
        """Whether `side` can still be decided at a later look within the cap: for a pass, if every sample left
        succeeds; for a failure, if every one fails."""
        c = self.cfg
        for n in c.looks:
            if n <= p.n:
                continue
            if side == "pass" and exact_bounds(p.k + n - p.n, n, c.alpha("pass"))[0] > c.threshold:
                return True
            if side == "fail" and exact_bounds(p.k, n, c.alpha("fail"))[1] < c.threshold:
                return True
        return False

    def run(self) -> SearchResult:
        c = self.cfg
        grid_lengths = math.ceil(math.log(c.high / c.low) / math.log(c.resolution)) + 1
        result = SearchResult(bracket=(None, None), status="", grid_samples=grid_lengths * c.max_samples)
        first = self.decide(c.low, "end")
        if first.decision != "pass":
            result.status = ("fails at the shortest length" if first.decision == "fail"
                             else f"undecided at the shortest length {c.low}")
            result.bracket = (None, c.low)
            # Not assumed monotone: one length per octave above, and the longest, are probed too; a pass there
            # is reported (a method can fail short and work longer: YaRN x4 on SmolLM2 at 4k vs 8k).
            length = c.low * 2
            while length < c.high:
                self.decide(self._round(length), "monotonicity", watch="pass")
                length *= 2
            self.decide(c.high, "end")
            return self._finish(result)
        last = self.decide(c.high, "end")
        if last.decision == "pass":
            result.status, result.bracket = "passes throughout", (c.high, None)
            return self._finish(result)
        lo, hi = c.low, c.high  # the bisection's ends
        result.status = "bracketed"
        if last.decision == "undecided" and last.k / last.n < c.threshold:
            # Undecided at the longest length with its estimate below the threshold (dynamic NTK x2 on SmolLM2:
            # 36/48 at 32k, every miss at one depth): go on as from an undecided bisection point, as a condition.
            result.conditional.append(f"{c.high} as failing on {last.k}/{last.n} "
                                      f"(interval {last.ci[0]:.2f}-{last.ci[1]:.2f})")
        if last.decision == "undecided" and not result.conditional:
            result.status = f"undecided at {c.high}"
        else:
            while hi / lo > c.resolution:
                mid = self._round(math.sqrt(lo * hi))
                if mid in (lo, hi):
                    break
                p = self.decide(mid, "bisect")
                d = p.decision
                if d == "undecided":
                    # The cap was reached inside the interval (46/48 at 0.856 is undecided): go on with the side the
                    # point estimate is on rather than stop, and keep what the intervals decided apart from it.
                    d = "pass" if p.k / p.n >= c.threshold else "fail"
                    result.conditional.append(f"{mid} as {'passing' if d == 'pass' else 'failing'} on "
                                              f"{p.k}/{p.n} (interval {p.ci[0]:.2f}-{p.ci[1]:.2f})")
                if d == "pass":
                    lo = mid
                else:
                    hi = mid
            if result.conditional:
                # Every pass-side probe is <= lo and every fail-side one >= hi, so the decided ones nearest
                # bracket the crossing with the intervals' confidence; (lo, hi) rests on the point estimates.
                est = (lo, hi)
                lo = max(p.length for p in self.probes.values() if p.decision == "pass" and p.length <= lo)
                hi = min([p.length for p in self.probes.values() if p.decision == "fail" and p.length >= hi],
                         default=c.high)  # no decided failure: the range's end, as for an undecided end
                if hi / lo > c.resolution:  # the decided bracket is wider than asked: say where the estimates lead
                    result.status = "undecided at " + ", ".join(x.split()[0] for x in result.conditional)
                    result.estimate = est
        result.bracket = (lo, hi)
        # Monotonicity: one length per octave outside the bracket, and the range's ends, must agree with it: pass
        # below, fail above. Below costs ~48 samples an octave; above, a failure costs one or two, and a pass there
        # is what a bisection that went down early would otherwise never see (YaRN x4: fails at 4k, finds at 8k).
        length = c.low * 2
        while length < c.high:
            L = self._round(length)
            if L not in self.probes and not lo <= L <= hi:
                self.decide(L, "monotonicity", watch="pass" if L > hi else "fail")
            length *= 2
        return self._finish(result)

    def _finish(self, result: SearchResult) -> SearchResult:
        result.probes = sorted(self.probes.values(), key=lambda p: p.length)
        lo = result.bracket[0] or 0
        passing = [p.length for p in result.probes if p.decision == "pass"]
        for p in result.probes:
            if p.decision == "undecided" and p.purpose == "monotonicity":
                side = "below" if p.length < lo else "above"
                result.conditional.append(f"{p.length} {side} the bracket undecided on {p.k}/{p.n} "
                                          f"(interval {p.ci[0]:.2f}-{p.ci[1]:.2f})")
            if p.decision == "fail" and p.length < lo:
                result.non_monotone.append(f"fails at {p.length} below a pass at {lo}")
            elif p.decision == "fail" and any(L > p.length for L in passing):
                result.non_monotone.append(f"fails at {p.length}, passes again at "
                                           f"{min(L for L in passing if L > p.length)}")
        result.non_monotone = sorted(set(result.non_monotone))
        result.samples = sum(p.n for p in result.probes)
        return result


# ------------------------------------------------------------------------------------------- the experiment side
SEARCH_FILE = "search.json"
STRATA = (0.1, 0.3, 0.5, 0.7, 0.9)  # depths of samples 0, 1, 2 ... at every probed length (cycled)


def search_experiment(exp, config: SearchConfig):
    """The experiment a search runs: its grid replaced by the range's ends, the depth strata and the per-length
    cap (the lengths probed in between are added as they are chosen; a run directory's grid may grow)."""
    import dataclasses

    if not hasattr(exp.task_config, "depths"):
        raise UserError(f"search draws needle depths; task {exp.task!r} has no needle")
    return dataclasses.replace(exp, task_config=dataclasses.replace(
        exp.task_config, lengths=(config.low, config.high), depths=STRATA, samples=config.max_samples))


def run_search(exp, config: SearchConfig, log: Callable[[str], None] = print, runner=None) -> SearchResult:
    """The search over an experiment (its task config's lengths are replaced by the probed ones). Every sample is an
    ordinary record in exp.out; re-running resumes from them; search.json holds the path and the bracket."""
    import dataclasses
    import datetime as dt
    import sys

    from harness.experiment import GRID, identity, new_runner, prepare, record_fields, write_generated
    from harness.manifest import git_sha, machine, package_versions
    from harness.records import RunDir, check_run_dir, read_records, sample_key

    exp = search_experiment(exp, config)
    p = prepare(exp, log=log)
    if p.task.scores_tokens:
        raise UserError(f"search needs a task with a strict score; {exp.task!r} scores tokens")
    exp = p.experiment
    check_run_dir(Path(exp.out), identity(p))
    invocation = {"argv": sys.argv, "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "git_sha": git_sha(), "machine": machine(), "packages": package_versions(),
                  "search": asdict(config),
                  "grid": {k: v for k, v in dataclasses.asdict(exp.task_config).items() if k in GRID}}
    rd = RunDir.open(exp.out, identity(p), invocation)
    done = {r.key: r for r in read_records(rd.path) if r.error is None}
    state: dict = {"runner": runner, "info": None}

    def probe(length: int, i: int) -> bool:
        cell = (length, STRATA[i % len(STRATA)], i // len(STRATA))
        key = sample_key(p.task.name, *cell)
        if key not in done:
            if state["info"] is None:
                state["runner"] = state["runner"] or new_runner(p)
                state["info"] = state["runner"].load(p.model_path, p.extension, p.extension_config,
                                                     max_length=config.high)
                rd.note_load(dataclasses.asdict(state["info"]))
            for r in write_generated(p, state["runner"], rd, [cell], record_fields(p, state["info"]), None, log):
                done[r.key] = r
        if done[key].error is not None:
            # A runner failure (out of memory, a backend error) is not a miss: counting it would decide the length.
            raise UserError(f"the runner failed at {length} tokens (sample {i}): {done[key].error.splitlines()[0]} — "
                            "a failure is not a miss, so the search stops; the records so far are kept and a re-run "
                            "resumes")
        ok = bool(done[key].correct)
        log(f"  {length:>7} tokens, sample {i} (depth {cell[1]}): {'found' if ok else 'missed'}")
        return ok

    try:
        result = Search(probe, config).run()
    finally:
        if state["runner"] is not None:
            state["runner"].close()
    rd.start()
    (rd.path / SEARCH_FILE).write_text(json.dumps({"config": asdict(config), **result.to_json()}, indent=1))
    return result
