"""Binomial statistics the rooms share (the floor: imports nothing of ours): Wilson's score interval for the
reports' error bars, exact one-sided Clopper–Pearson bounds for the effective-length search's decisions."""
from __future__ import annotations

import functools
import math


def wilson_interval(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval for k successes in n trials (Wilson 1927); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exact at the edges, where rounding left 1 - 1e-16 below a score of 1.0 (k = n = 48) and broke error bars
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


@functools.lru_cache(maxsize=4096)  # few distinct (k, n) at the looks: simulations reuse them
def exact_bounds(k: int, n: int, alpha: float) -> tuple[float, float]:
    """One-sided Clopper–Pearson bounds (Clopper & Pearson 1934), each wrong with probability at most alpha:
    the lower bound p with P(X >= k | p) = alpha, the upper with P(X <= k | p) = alpha (bisection on the binomial
    tail). Exact where Wilson's interval is not: at n = 2, 0/2 puts Wilson's upper end below 0.856 although a
    model at 0.856 misses twice 2 % of the time, which made the fail side wrong more often than it claimed."""
    if n == 0:
        return 0.0, 1.0

    def solve(f, target: float) -> float:  # f increasing in p: the p where it reaches target
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else solve(lambda p: 1 - binom_cdf(k - 1, n, p), alpha)  # P(X >= k | p) = alpha
    upper = 1.0 if k == n else solve(lambda p: 1 - binom_cdf(k, n, p), 1 - alpha)  # P(X <= k | p) = alpha
    return lower, upper
