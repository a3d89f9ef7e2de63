"""Paired effects of a variant against a reference, over seeds (issue 18's design).

- the **speed-up**: the round at which the fact answer loss first reaches a target every
  run reaches by mid-run, interpolated (``simulations.experiment.speedup``), as the paired
  ratio of the reference's round to the variant's, with the recall AUC and its gain;
- **forgetting at matched recall**: the loss on the base model's held-out prose when fact
  recall first reaches a level every run reaches, paired to the reference; and each run's
  (recall gained, prose loss lost), the points of ``plane.png``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulations.experiment.runner import RunResult
from simulations.experiment.speedup import (
    Interval,
    area_under_curve,
    crossing_point,
    mean_interval,
    ratio_interval,
)
from simulations.experiment.statistics import Stat, curve

SPEEDUP_KEY = "fact-answer-loss"  # issue 18's primary metric: the loss of the facts' answers


@dataclass(frozen=True)
class SpeedupRow:
    """A variant's speed-up to the answer-loss target and recall AUC, paired to a reference."""

    variant: str
    rounds_to_target: Stat  # interpolated rounds at which the answer loss reaches the target
    speedup: Interval | None  # reference rounds / variant rounds, over seeds both reached
    recall_auc: Stat  # mean fact recall over the run (trapezoidal area / rounds)
    recall_auc_gain: Interval | None  # variant minus reference, paired


def speedup_target(results: Sequence[RunResult], key: str = SPEEDUP_KEY) -> float | None:
    """The highest ``key`` of any run at mid-run: a target every run reaches by then."""
    middle = [curve(r, "central", key)[len(r.metrics["rounds"]) // 2] for r in results]
    known = [value for value in middle if value is not None and math.isfinite(value)]
    return max(known) if known else None


def speedup_rows(
    results: Sequence[RunResult], reference: str, target: float, key: str = SPEEDUP_KEY
) -> list[SpeedupRow]:
    """Every variant's rounds to ``target`` and recall AUC, and their ratio/gain to
    ``reference`` on the same seeds (``simulations.experiment.speedup``)."""
    reached: dict[tuple[str, int], float | None] = {}
    auc: dict[tuple[str, int], float | None] = {}
    for result in results:
        rounds = [record["round"] for record in result.metrics["rounds"]]
        name = (result.spec.variant, result.spec.seed)
        reached[name] = crossing_point(
            positions=rounds, values=curve(result, "central", key), target=target
        )
        recall = curve(result, "central", "fact-recall")
        has_recall = sum(value is not None for value in recall) >= 2
        auc[name] = area_under_curve(positions=rounds, values=recall) if has_recall else None
    variants = list(dict.fromkeys(variant for variant, _ in reached))
    seeds = sorted({seed for _, seed in reached})
    rows = []
    for variant in variants:
        mine = [reached.get((variant, seed)) for seed in seeds]
        pairs = [
            (theirs, ours)
            for seed, ours in zip(seeds, mine, strict=True)
            if ours is not None and (theirs := reached.get((reference, seed))) is not None
        ]
        gains = [
            ours - theirs
            for seed in seeds
            if (ours := auc.get((variant, seed))) is not None
            and (theirs := auc.get((reference, seed))) is not None
        ]
        compared = variant != reference
        rows.append(
            SpeedupRow(
                variant=variant,
                rounds_to_target=Stat.of(mine),
                speedup=(
                    ratio_interval(reference=[p[0] for p in pairs], variant=[p[1] for p in pairs])
                    if compared and pairs and all(min(p) > 0 for p in pairs)
                    else None
                ),
                recall_auc=Stat.of([auc.get((variant, seed)) for seed in seeds]),
                recall_auc_gain=mean_interval(gains) if compared and gains else None,
            )
        )
    return rows


PROSE_KEY = "prose-perplexity"  # the base's held-out prose (fedaso central --prose-eval)


@dataclass(frozen=True)
class ForgettingRow:
    """A variant's forgetting of the base's prose at a fact recall every run reaches."""

    variant: str
    loss_at_match: Stat  # prose loss (log perplexity) when recall first reaches the target
    loss_lost: Stat  # that minus the run's initial prose loss
    versus_reference: Interval | None  # prose loss at the match minus the reference's, paired


def matched_recall(results: Sequence[RunResult]) -> float | None:
    """The highest fact recall that every run reaches: the lowest of the runs' best."""
    best = []
    for result in results:
        recalls = [r for r in curve(result, "central", "fact-recall") if r is not None]
        if not recalls:
            return None
        best.append(max(recalls))
    return min(best) if best and min(best) > 0 else None


def forgetting_rows(
    results: Sequence[RunResult], reference: str, recall: float
) -> list[ForgettingRow]:
    """The prose loss (log perplexity, nats per token) at the round where each run's recall
    first reaches ``recall`` (interpolated between evaluations), and its paired difference
    to ``reference``. Logs, because a fine-tune can multiply a perplexity a thousandfold."""
    at_match: dict[tuple[str, int], tuple[float, float]] = {}  # (at the match, initial)
    for result in results:
        rounds = [float(record["round"]) for record in result.metrics["rounds"]]
        prose = [None if p is None else math.log(p) for p in curve(result, "central", PROSE_KEY)]
        recalls = curve(result, "central", "fact-recall")
        negated = [None if r is None else -r for r in recalls]  # crossing_point wants falling
        reached = crossing_point(positions=rounds, values=negated, target=-recall)
        known = [(x, y) for x, y in zip(rounds, prose, strict=True) if y is not None]
        if reached is None or len(known) < 2:
            continue
        xs, ys = zip(*known, strict=True)
        at_match[(result.spec.variant, result.spec.seed)] = (
            float(np.interp(reached, xs, ys)),
            float(ys[0]),
        )
    variants = list(dict.fromkeys(result.spec.variant for result in results))
    seeds = sorted({result.spec.seed for result in results})
    rows = []
    for variant in variants:
        mine = [at_match.get((variant, seed)) for seed in seeds]
        differences = [
            ours[0] - theirs[0]
            for seed, ours in zip(seeds, mine, strict=True)
            if ours is not None and (theirs := at_match.get((reference, seed))) is not None
        ]
        rows.append(
            ForgettingRow(
                variant=variant,
                loss_at_match=Stat.of([m[0] if m else None for m in mine]),
                loss_lost=Stat.of([m[0] - m[1] if m else None for m in mine]),
                versus_reference=(
                    mean_interval(differences) if variant != reference and differences else None
                ),
            )
        )
    return rows


def recall_and_forgetting(results: Sequence[RunResult]) -> dict[str, list[tuple[float, float]]]:
    """Per variant, each run's (final - initial fact recall, final - initial prose loss):
    the points of ``plane.png``."""
    points: dict[str, list[tuple[float, float]]] = {}
    for result in results:
        recalls = [r for r in curve(result, "central", "fact-recall") if r is not None]
        prose = [p for p in curve(result, "central", PROSE_KEY) if p is not None]
        if len(recalls) >= 2 and len(prose) >= 2:
            point = (recalls[-1] - recalls[0], math.log(prose[-1] / prose[0]))
            points.setdefault(result.spec.variant, []).append(point)
    return points
