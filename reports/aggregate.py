"""Aggregation of result records: pure functions over `SampleRecord`s, no I/O and no re-scoring."""
from __future__ import annotations

from collections import defaultdict
from statistics import mean
from typing import Iterable

from harness.records import SampleRecord
from harness.stats import wilson_interval


def config_key(r: SampleRecord) -> tuple:
    """What distinguishes one line of a comparison: model, extension (with params; and heads ablated), runner,
    task."""
    ablated = f" −heads {r.ablation} ({r.ablated_heads})" if r.ablated_heads else ""
    return (r.model, extension_label(r.extension, r.extension_params) + ablated, r.runner, r.task)


def extension_label(extension: str, params: dict) -> str:
    """"yarn(factor=32,...)": the method with its set parameters (None-valued defaults left out)."""
    shown = ",".join(f"{k}={v}" for k, v in sorted(params.items()) if v is not None)
    return extension + (f"({shown})" if shown else "")


def method_label(r: SampleRecord) -> str:
    """The method's short label as its record holds it (the method wrote it: "yarn ×2", "sinks 4+4092"); records
    from before schema 6 have none and keep the full parameters. Reports never recompute a method."""
    return r.method_label or extension_label(r.extension, r.extension_params)


def short_keys(groups: dict[tuple, list[SampleRecord]]) -> dict[tuple, tuple]:
    """config key → the same key with a short method label, unique within the report: where two configurations
    would share one, the full parameters are kept for them."""
    short = {}
    for key, rs in groups.items():
        short[key] = (key[0], method_label(rs[0]), *key[2:])
    counts: dict[tuple, int] = defaultdict(int)
    for v in short.values():
        counts[v] += 1
    return {k: (v if counts[v] == 1 else k) for k, v in short.items()}


def non_monotone(rows: list[dict], threshold: float, key: str = "score") -> int | None:
    """The first length at which the score passes the threshold again after having fallen below it (the effective
    length reads upwards and stops at the first failure, so it would hide this), or None."""
    failed = False
    for row in sorted(rows, key=lambda r: r["context_length"]):
        ok = row[key] is not None and row[key] >= threshold
        if failed and ok:
            return row["context_length"]
        failed = failed or not ok
    return None


def latest(records: Iterable[SampleRecord]) -> list[SampleRecord]:
    """Keep the last record per (configuration, sample key, seed, prompt): a retried sample replaces its failed
    attempt, while runs of one configuration on other prompts (another seed, haystack or prompt format) add
    samples instead of replacing them."""
    out: dict[tuple, SampleRecord] = {}
    for r in records:
        out[(config_key(r), r.key, r.seed, r.prompt_sha)] = r
    return list(out.values())


def sample_score(r: SampleRecord) -> float:
    """The task's primary metric (partial credit where the task gives it; strict correctness otherwise)."""
    return float(r.correct) if r.score is None else float(r.score)


def _cell(rs: list[SampleRecord]) -> dict:
    """Statistics of one cell. Every figure and table reads `score` (the task's metric: strict correctness, or
    partial credit where the task gives it) and its interval; strict and lenient counts stand beside it. The
    interval is Wilson's on the summed score: exact for 0/1 scores, an approximation for partial credit.
    Samples whose request raised (`error`) are counted in `errors` and left out of every other figure; a cell with
    only those has n = 0 and no score (reports show it as errors, never as a miss)."""
    errors = sum(r.error is not None for r in rs)
    rs = [r for r in rs if r.error is None]  # a sample whose request raised is no measurement: not a miss
    n = len(rs)
    k = sum(r.correct for r in rs)
    lo, hi = wilson_interval(sum(sample_score(r) for r in rs), n)
    mems = [r.peak_mem_bytes for r in rs if r.peak_mem_bytes is not None]
    caches = [r.cache_bytes for r in rs if r.cache_bytes is not None]
    return {"n": n, "correct": k, "lenient": sum(r.lenient for r in rs), "accuracy": k / n if n else None,
            "score": mean(sample_score(r) for r in rs) if rs else None,
            "cache_bytes": max(caches) if caches else None,
            "metric": rs[0].metric if rs else None,
            "ci_low": lo, "ci_high": hi, "empty": sum(not r.prediction.strip() for r in rs),
            "errors": errors,
            # the budget ran out (recorded since schema 8), and of those with a thinking budget, the thinking
            # never closed (no answer arrived); None where no record says
            "budget_hit": sum(r.new_tokens >= r.max_new_tokens for r in rs
                              if r.new_tokens is not None and r.max_new_tokens is not None)
            if any(r.max_new_tokens is not None for r in rs) else None,
            "truncated": sum(r.truncated is True for r in rs) if any(r.truncated is not None for r in rs) else None,
            "latency_s": mean(r.latency_s for r in rs) if rs else None,
            "peak_mem_bytes": max(mems) if mems else None,
            "tokens": mean(r.tokens for r in rs) if rs else None}


def accuracy_by_length(records: Iterable[SampleRecord], errored: bool = False) -> list[dict]:
    """One row per context length (of one configuration) that has a measured sample; with errored=True also the
    lengths where every sample raised (n = 0, score None, `errors` > 0)."""
    groups: dict[int, list[SampleRecord]] = defaultdict(list)
    for r in latest(records):
        groups[r.context_length].append(r)
    rows = [{"context_length": n, **_cell(rs)} for n, rs in sorted(groups.items())]
    return rows if errored else [row for row in rows if row["n"]]


def by_config(records: Iterable[SampleRecord]) -> dict[tuple, list[SampleRecord]]:
    groups: dict[tuple, list[SampleRecord]] = defaultdict(list)
    for r in latest(records):
        groups[config_key(r)].append(r)
    return dict(sorted(groups.items()))


def grid(records: Iterable[SampleRecord]) -> dict[tuple[float | None, int], dict]:
    """(depth, length) → cell statistics, for heatmaps."""
    groups: dict[tuple, list[SampleRecord]] = defaultdict(list)
    for r in records:
        groups[(r.depth, r.context_length)].append(r)
    return {k: _cell(v) for k, v in groups.items()}


def effective_length(rows: list[dict], threshold: float, key: str = "score") -> int | None:
    """The longest length up to which every length's score is >= threshold (RULER's effective length, read from
    the shortest length upwards). None when even the shortest length falls below."""
    best = None
    for row in sorted(rows, key=lambda r: r["context_length"]):
        if row[key] is None or row[key] < threshold:
            break
        best = row["context_length"]
    return best


# --- effective length four ways (issue 36) ----------------------------------------------------------------------
#
# RULER (Hsieh et al. 2024): the longest length up to which the score stays >= an absolute threshold (0.856, Llama-2-7B
# at 4k). NoLiMa (Modarressi et al. 2025): the same against 85 % of the model's own short-context ("base") score, so a
# model weak at every length is not called short. 100-LongBench (Yang et al. 2025): LongScore, the mean relative change
# (S_l - base) / base over the lengths past the base lengths (base = the mean score at lengths <= 6k), a number, not a
# length. And per depth: RULER's length for each needle depth alone. Intervals: the same definition read from the 95 %
# Wilson bounds of every length's score (lower bounds: the length this run supports for sure; upper: at most).

BASE_MAX = 6144  # 100-LongBench's base ability: the mean score at 2k, 4k and 6k


def effective_length_interval(rows: list[dict], threshold: float) -> tuple[int | None, int | None, int | None]:
    """(point, low, high): `effective_length` of the scores, of their Wilson lower bounds, of their upper bounds."""
    return (effective_length(rows, threshold), effective_length(rows, threshold, key="ci_low"),
            effective_length(rows, threshold, key="ci_high"))


def base_score(rows: list[dict]) -> float | None:
    """NoLiMa's base: the score at the shortest length tested (None without one)."""
    return rows[0]["score"] if rows else None


def long_score(rows: list[dict], base_max: int = BASE_MAX) -> dict | None:
    """100-LongBench's LongScore over the lengths past `base_max` (base: mean score at lengths <= base_max, else at
    the shortest length); its interval from the Wilson bounds (low: bounds' low ends against the base's high ones).
    None where no length lies past the base or the base is 0."""
    if not rows:
        return None
    base_rows = [r for r in rows if r["context_length"] <= base_max] or rows[:1]
    longer = [r for r in rows if r["context_length"] > base_rows[-1]["context_length"]]
    base = mean(r["score"] for r in base_rows)
    if not longer or not base:
        return None
    b_lo, b_hi = mean(r["ci_low"] for r in base_rows), mean(r["ci_high"] for r in base_rows)
    value = mean((r["score"] - base) / base for r in longer)
    low = mean((r["ci_low"] - b_hi) / b_hi for r in longer) if b_hi else None
    high = mean((r["ci_high"] - b_lo) / b_lo for r in longer) if b_lo else None
    return {"value": value, "low": low, "high": high, "base": base,
            "base_lengths": [r["context_length"] for r in base_rows], "lengths": [r["context_length"] for r in longer]}


def effective_length_by_depth(records: Iterable[SampleRecord], threshold: float) -> dict:
    """depth → (point, low, high) RULER effective length of that depth's samples alone (tasks with depths)."""
    by_depth: dict = defaultdict(list)
    for r in records:
        if r.depth is not None:
            by_depth[r.depth].append(r)
    return {d: effective_length_interval(accuracy_by_length(rs), threshold) for d, rs in sorted(by_depth.items())}
