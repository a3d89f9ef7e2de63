"""FedASO's server-side math: relevance-weighted model averaging and anchor merging.

Model updates are averaged with the report's Eq. 7 (docs/SPEC.md section 6),

    theta_next = sum_k w_k theta_k / sum_k w_k,   w_k = mean relevance of client k's tokens,

or with ``w_k = sum_i s_i`` ("relevance-x-examples"), ``w_k = n_k`` ("examples", FedAvg) or
``w_k = 1`` ("uniform", the data-independent weights that DP-FedAvg's accounting assumes).
Anchor sets are merged per partition (docs/SPEC.md section 5): the server keeps each partition's
latest report and the round it came from, and the next global set is their weighted average
with weights decayed by ``gamma ** age``, so partitions not sampled this round still count.
Both averages can cap any one contributor's share of the result (``capped_average``,
``fedaso.aso.robust.capped_shares``): what a cap leaves over stays with the previous state.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedaso.aso.robust import capped_shares

# The weights w_k that client_weight knows (run-config ``aggregation-weight``).
AGGREGATION_WEIGHTS = ("relevance", "relevance-x-examples", "examples", "uniform")


def client_weight(*, kind: str, mean_relevance: float, num_tokens: int, num_examples: int) -> float:
    """Return the aggregation weight ``w_k`` of one client's update."""
    if kind == "relevance":
        return float(mean_relevance)
    if kind == "relevance-x-examples":
        return float(mean_relevance) * num_tokens
    if kind == "examples":
        return float(num_examples)
    if kind == "uniform":
        return 1.0
    raise ValueError(f"aggregation-weight={kind!r} must be one of {', '.join(AGGREGATION_WEIGHTS)}")


def is_usable_weight(weight: float) -> bool:
    """A weight is usable when it is finite and positive."""
    return math.isfinite(weight) and weight > 0


def weighted_average(
    arrays: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]
) -> dict[str, np.ndarray]:
    """Return ``sum_k w_k x_k / sum_k w_k`` key by key, in the key order of ``arrays[0]``.

    Accumulates in float64 so that many clients do not lose precision, and returns each
    array in its original dtype. Weights are first divided by the largest one, so that
    finite weights near the float maximum cannot overflow their sum.
    """
    if not arrays or len(arrays) != len(weights):
        raise ValueError(f"need one weight per array set, got {len(arrays)} and {len(weights)}")
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"the weights {list(weights)} must all be finite")
    largest = max(weights)
    scaled = [w / largest for w in weights] if largest > 0 else list(weights)
    total = float(sum(scaled))
    if not is_usable_weight(total):
        raise ValueError(f"the weights sum to {float(sum(weights))}; it must be finite and > 0")
    averaged = {}
    for key, first in arrays[0].items():
        accumulator = np.zeros(first.shape, dtype=np.float64)
        for client_arrays, weight in zip(arrays, scaled, strict=True):
            accumulator += (weight / total) * client_arrays[key]
        averaged[key] = accumulator.astype(first.dtype, copy=False)
    return averaged


def capped_average(
    arrays: Sequence[Mapping[str, np.ndarray]],
    weights: Sequence[float],
    *,
    max_share: float,
    previous: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The weighted average of ``arrays`` in which none holds more than ``max_share``.

    The shares come from :func:`fedaso.aso.robust.capped_shares`; when the arrays are too few
    to carry the whole result under the cap, ``previous`` (the state before this round)
    holds the share left over.
    """
    shares, leftover = capped_shares(weights, max_share)
    if leftover > 0:
        return weighted_average([*arrays, previous], [*shares, leftover])
    return weighted_average(arrays, list(shares))


@dataclass(frozen=True)
class AnchorReport:
    """A partition's latest anchor set, the weight of its update and its round."""

    anchors: np.ndarray  # (M, d)
    weight: float
    server_round: int


class PartitionAnchorStore:
    """Latest anchor report of every partition, merged with staleness decay.

    Parameters
    ----------
    staleness_decay : float
        ``gamma`` in [0, 1]: a report ``age`` rounds old weighs ``gamma ** age`` times its
        weight; 0 keeps only reports of the current round.
    """

    def __init__(self, staleness_decay: float) -> None:
        if not 0.0 <= staleness_decay <= 1.0:
            raise ValueError(f"anchor-staleness-decay={staleness_decay} must be in [0, 1]")
        self.staleness_decay = staleness_decay
        self.reports: dict[Hashable, AnchorReport] = {}

    def record(self, partition: Hashable, report: AnchorReport) -> None:
        """Keep ``report`` as the partition's latest."""
        self.reports[partition] = report

    def accumulate(self, key: Hashable, anchors: np.ndarray, server_round: int) -> None:
        """Fold ``anchors`` (weight 1) into the running decayed average stored under ``key``.

        The stored entry is the weighted mean of every set folded in so far, each weighing
        ``gamma ** age``, with their total weight: exactly what :meth:`merge` would make of
        one entry per set, in constant memory (central mode: one release per round).
        """
        previous = self.reports.get(key)
        weight, mean = 1.0, np.asarray(anchors, dtype=np.float64)
        if previous is not None:
            decayed = previous.weight * self.decay(server_round - previous.server_round)
            if decayed > 0:
                weight = decayed + 1.0
                mean = (decayed * np.asarray(previous.anchors, dtype=np.float64) + mean) / weight
        self.reports[key] = AnchorReport(mean, weight, server_round)

    def decay(self, age: int) -> float:
        """``gamma ** age``, with a report of this round (age 0) weighing 1 even for gamma 0."""
        return 1.0 if age == 0 else self.staleness_decay**age

    def decayed_weights(self, server_round: int) -> dict[Hashable, float]:
        """Return each stored partition's weight at ``server_round`` (zero weights omitted)."""
        weights = {}
        for partition, report in self.reports.items():
            decay = self.decay(server_round - report.server_round)
            if decay * report.weight > 0:
                weights[partition] = decay * report.weight
        return weights

    def merge(
        self, server_round: int, *, max_share: float = 1.0, previous: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Return the decayed weighted average of stored anchor sets, or None if none count.

        With ``max_share < 1`` no partition holds more than that share of the result, and
        ``previous`` (the global set before this round) holds what the cap leaves over.
        """
        weights = self.decayed_weights(server_round)
        if not weights:
            return None
        anchor_sets = [{"anchors": self.reports[p].anchors} for p in weights]
        if max_share < 1.0:
            if previous is None:
                raise ValueError(f"max_share={max_share} < 1 needs the previous anchor set")
            kept = {"anchors": previous}
            merged = capped_average(
                anchor_sets, list(weights.values()), max_share=max_share, previous=kept
            )
            return merged["anchors"]
        return weighted_average(anchor_sets, list(weights.values()))["anchors"]

    def state_dict(self) -> dict[str, Any]:
        """The stored reports, in insertion order, for a checkpoint (see load_state_dict)."""
        return {
            "partitions": list(self.reports),
            "anchors": [r.anchors for r in self.reports.values()],
            "weights": [r.weight for r in self.reports.values()],
            "rounds": [r.server_round for r in self.reports.values()],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the stored reports with those of ``state`` (from :meth:`state_dict`)."""
        columns = ("partitions", "anchors", "weights", "rounds")
        lengths = {len(state[c]) for c in columns}
        if len(lengths) != 1:
            raise ValueError(f"anchor store state has columns of unequal lengths {lengths}")
        self.reports = {
            partition: AnchorReport(np.asarray(anchors), float(weight), int(server_round))
            for partition, anchors, weight, server_round in zip(
                *(state[c] for c in columns), strict=True
            )
        }
