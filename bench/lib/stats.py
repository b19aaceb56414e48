"""Percentiles and baseline ratios, as every bench reports them."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def ratio(baseline: float, ours: float, digits: int = 1) -> float:
    """How many times `ours` goes into `baseline` (e.g. the baseline's CPU over ours),
    rounded; a zero `ours` counts as tiny rather than failing the whole run."""
    return round(baseline / max(ours, 1e-9), digits)
