"""simulations.experiment.speedup: crossing points, ratio intervals, areas, by brute force."""

import math

import numpy as np
import pytest
from scipy import stats

from simulations.experiment.speedup import (
    Interval,
    area_under_curve,
    crossing_point,
    mean_interval,
    ratio_interval,
)


def dense_crossing(positions: list[float], values: list[float], target: float) -> float | None:
    """The first point of a fine grid where the piecewise-linear curve is <= target."""
    grid = np.linspace(positions[0], positions[-1], 200_001)
    curve = np.interp(grid, positions, values)
    below = np.nonzero(curve <= target + 1e-12)[0]
    return float(grid[below[0]]) if below.size else None


@pytest.mark.parametrize("seed", range(20))
def test_crossing_point_matches_a_dense_scan_of_a_falling_curve(seed: int) -> None:
    rng = np.random.default_rng(seed)
    positions = np.cumsum(rng.uniform(0.5, 2.0, size=8)).tolist()
    values = (3.0 - np.cumsum(rng.uniform(0.0, 0.5, size=8))).tolist()
    target = float(rng.uniform(min(values), max(values)))
    found = crossing_point(positions=positions, values=values, target=target)
    assert found == pytest.approx(dense_crossing(positions, values, target), abs=1e-3)


def test_crossing_point_takes_the_first_crossing_and_skips_missing_values() -> None:
    positions = [0, 1, 2, 3, 4]
    values = [2.0, None, 1.0, 3.0, 0.5]  # falls through 1.5 between 0 and 2, not at 4
    assert crossing_point(positions=positions, values=values, target=1.5) == pytest.approx(1.0)
    assert crossing_point(positions=positions, values=values, target=2.5) == 0.0
    assert crossing_point(positions=positions, values=values, target=0.1) is None


def test_crossing_point_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="3 positions but 2 values"):
        crossing_point(positions=[0, 1, 2], values=[1.0, 0.5], target=0.7)


def test_mean_interval_is_the_t_interval() -> None:
    values = [1.0, 1.4, 0.9, 1.2, 1.1]
    interval = mean_interval(values)
    half = stats.t.ppf(0.975, 4) * np.std(values, ddof=1) / math.sqrt(5)
    assert interval.mean == pytest.approx(np.mean(values))
    assert (interval.low, interval.high) == pytest.approx(
        (np.mean(values) - half, np.mean(values) + half)
    )
    assert interval.count == 5
    assert mean_interval([2.0]) == Interval(2.0, 2.0, 2.0, 1)
    with pytest.raises(ValueError, match="at least one value"):
        mean_interval([])


def test_ratio_interval_is_the_geometric_mean_of_paired_ratios() -> None:
    reference, variant = [12.0, 10.0, 9.0, 11.0], [10.0, 8.0, 8.0, 9.5]
    ratios = [r / v for r, v in zip(reference, variant, strict=True)]
    interval = ratio_interval(reference=reference, variant=variant)
    assert interval.mean == pytest.approx(math.prod(ratios) ** (1 / 4))
    logs = np.log(ratios)
    half = stats.t.ppf(0.975, 3) * np.std(logs, ddof=1) / 2
    assert interval.low == pytest.approx(math.exp(logs.mean() - half))
    assert interval.high == pytest.approx(math.exp(logs.mean() + half))
    assert interval.excludes(1.0) and not interval.excludes(interval.mean)


def test_ratio_interval_refuses_zero_and_unpaired_values() -> None:
    with pytest.raises(ValueError, match="positive"):
        ratio_interval(reference=[1.0, 0.0], variant=[1.0, 1.0])
    with pytest.raises(ValueError, match="2 reference but 1 variant"):
        ratio_interval(reference=[1.0, 2.0], variant=[1.0])


def test_area_under_curve_is_the_mean_height_of_the_linear_curve() -> None:
    positions, values = [0, 1, 3, 4], [0.0, 1.0, 1.0, None]
    grid = np.linspace(0, 3, 300_001)
    brute = float(np.interp(grid, [0, 1, 3], [0.0, 1.0, 1.0]).mean())
    assert area_under_curve(positions=positions, values=values) == pytest.approx(brute, abs=1e-4)
    with pytest.raises(ValueError, match="two measured"):
        area_under_curve(positions=[0, 1], values=[1.0, None])
