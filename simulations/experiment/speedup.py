"""Speed-up with a confidence interval: when a run reaches a target, and how much sooner.

Issue 18's primary metric. A run's answer loss is measured at a few points (rounds, or
local steps); the point at which it first reaches a target is interpolated linearly
between the two measurements around the crossing, so that it is continuous rather than an
integer round. Two variants run on the same seeds are compared by the paired ratio
``reference / variant`` of those points: its geometric mean over seeds and a 95% Student-t
interval on the mean of the log ratios (a ratio's log is what is symmetric). An interval
that excludes 1 is an effect the seeds can see.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A mean and its two-sided confidence interval over ``count`` paired seeds."""

    mean: float  # the estimate: a mean, or a geometric mean for ratios
    low: float  # lower end of the interval (``mean`` itself when count is 1)
    high: float  # upper end
    count: int  # seeds that entered

    def text(self, digits: int = 3) -> str:
        """``1.21 [1.08, 1.35]``; the bare estimate for one seed."""
        if self.count < 2:
            return f"{self.mean:.{digits}g} (1 seed)"
        return f"{self.mean:.{digits}g} [{self.low:.{digits}g}, {self.high:.{digits}g}]"

    def excludes(self, value: float) -> bool:
        """Whether ``value`` lies outside the interval (an effect the seeds can see)."""
        return self.count >= 2 and not self.low <= value <= self.high


def crossing_point(
    *, positions: Sequence[float], values: Sequence[float | None], target: float
) -> float | None:
    """The first position at which ``values`` falls to ``target``, linearly interpolated.

    ``values[k]`` is measured at ``positions[k]`` (increasing). Lower is better: the
    crossing lies between the last measurement above ``target`` and the first at or below
    it. None if no measurement reaches it (the run is censored); the first position if the
    first value already does.
    """
    if len(positions) != len(values):
        raise ValueError(f"{len(positions)} positions but {len(values)} values; they must match")
    previous: tuple[float, float] | None = None
    for position, value in zip(positions, values, strict=True):
        if value is None or not math.isfinite(value):
            continue
        if value <= target:
            if previous is None:
                return float(position)
            last_position, last_value = previous
            share = (last_value - target) / (last_value - value)  # in (0, 1]
            return last_position + share * (position - last_position)
        previous = (float(position), float(value))
    return None


def mean_interval(values: Sequence[float], *, confidence: float = 0.95) -> Interval:
    """The mean of ``values`` with its Student-t confidence interval."""
    data = np.asarray(values, dtype=np.float64)  # (n,)
    if data.size == 0:
        raise ValueError("a confidence interval needs at least one value")
    mean = float(data.mean())
    if data.size < 2:
        return Interval(mean, mean, mean, 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, data.size - 1) * stats.sem(data))
    return Interval(mean, mean - half, mean + half, int(data.size))


def ratio_interval(
    *, reference: Sequence[float], variant: Sequence[float], confidence: float = 0.95
) -> Interval:
    """Paired ``reference / variant`` over seeds: geometric mean and its t-interval.

    With reaching-points as inputs, a ratio above 1 means the variant gets there sooner.
    """
    if len(reference) != len(variant):
        raise ValueError(f"{len(reference)} reference but {len(variant)} variant values")
    if any(value <= 0 for value in [*reference, *variant]):
        raise ValueError("ratios need positive values: a run reached the target at position 0")
    logs = np.log(np.asarray(reference, dtype=np.float64) / np.asarray(variant))  # (n,)
    interval = mean_interval(logs.tolist(), confidence=confidence)
    return Interval(
        math.exp(interval.mean), math.exp(interval.low), math.exp(interval.high), interval.count
    )


def area_under_curve(*, positions: Sequence[float], values: Sequence[float | None]) -> float:
    """The trapezoidal mean of ``values`` over ``positions`` (area divided by the span).

    Missing values are left out; a curve with fewer than two measured points has no area.
    """
    points = [
        (float(p), float(v))
        for p, v in zip(positions, values, strict=True)
        if v is not None and math.isfinite(v)
    ]
    if len(points) < 2 or points[-1][0] == points[0][0]:
        raise ValueError("an area under the curve needs two measured, distinct positions")
    xs, ys = np.array(points).T  # (k,), (k,)
    area = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))
    return area / float(xs[-1] - xs[0])
