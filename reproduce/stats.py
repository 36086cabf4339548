"""Statistics over seeds for the reproductions: mean, sample std, Student t intervals, paired differences.

Pure Python (no scipy on this machine): the t quantile inverts the exact closed form of the t
distribution for integer degrees of freedom (Abramowitz & Stegun 26.7.3-26.7.4), which is all a
t interval over n seeds needs (df = n - 1).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values)


def sample_std(values: Sequence[float]) -> float | None:
    """The n - 1 standard deviation; None for fewer than two values (it does not exist)."""
    return statistics.stdev(values) if len(values) >= 2 else None


def t_central(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer df >= 1 (A&S 26.7.3 odd df, 26.7.4 even df)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, not {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 0:  # sin(theta) * (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ... up to c^(df-2))
        term = total = 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return math.sin(theta) * total
    series = 0.0
    if df > 1:  # 1 + 2/3 c^2 + 2*4/(3*5) c^4 + ... up to c^(df-3)
        term = series = 1.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            series += term
    return 2.0 / math.pi * (theta + math.sin(theta) * math.cos(theta) * series)


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with integer df (p in (0, 1)), by bisection on t_central.

    Bisection to 1e-12 relative: 200 halvings at most, exact enough for any table.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), not {p}")
    if p == 0.5:
        return 0.0
    central = abs(2.0 * p - 1.0)
    lo, hi = 0.0, 1.0
    while t_central(hi, df) < central:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_central(mid, df) < central:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    t = (lo + hi) / 2.0
    return t if p > 0.5 else -t


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """The two-sided `level` t interval of the mean; None with fewer than two values."""
    sd = sample_std(values)
    if sd is None:
        return None
    half = t_quantile(0.5 + level / 2.0, len(values) - 1) * sd / math.sqrt(len(values))
    m = mean(values)
    return (m - half, m + half)


def describe(by_seed: Mapping[int, float], digits: int = 2, level: float = 0.95) -> dict:
    """seeds, per-seed values, n, mean, sample std and the t interval of the mean (rounded to `digits`)."""
    seeds = sorted(by_seed)
    values = [by_seed[s] for s in seeds]
    sd = sample_std(values)
    interval = t_interval(values, level)
    return {"seeds": seeds, "values": [round(v, digits) for v in values], "n": len(values),
            "mean": round(mean(values), digits) if values else None,
            "std": None if sd is None else round(sd, digits + 1),
            "interval": None if interval is None else [round(x, digits + 1) for x in interval]}


def paired(a: Mapping[int, float], b: Mapping[int, float], digits: int = 2, level: float = 0.95) -> dict:
    """describe() of a - b over the seeds both have, and where its interval lies against 0."""
    diffs = {s: a[s] - b[s] for s in sorted(set(a) & set(b))}
    out = describe(diffs, digits, level)
    out["sign"] = sign_of(t_interval(list(diffs.values()), level))  # the unrounded interval decides
    return out


def sign_of(interval: Sequence[float] | None) -> str:
    """'below 0' or 'above 0' when the interval excludes 0, else 'inconclusive' (also without an interval)."""
    if interval is None:
        return "inconclusive"
    if interval[1] < 0:
        return "below 0"
    if interval[0] > 0:
        return "above 0"
    return "inconclusive"


def moved(sign: str, baseline: float, target: float) -> str:
    """Which way a change moved a cell, from the sign of its paired difference against the baseline: 'towards'
    or 'away' from target (the paper's number), or 'not distinguishable' (the interval holds 0; or no gap)."""
    gap = target - baseline
    if sign == "inconclusive" or gap == 0:
        return "not distinguishable"
    return "towards" if (sign == "above 0") == (gap > 0) else "away"
