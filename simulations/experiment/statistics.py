"""Reduce finished runs to figures: per-round rows, final figures, statistics over seeds.

:func:`metrics_rows` flattens the runs into one row per variant, seed and round
(``metrics.csv``); :func:`summarize` reduces each variant to mean and standard deviation
over seeds; :func:`paired_differences` compares each variant with a reference on the
same seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulations.experiment.runner import RunResult

# (section of a round record in metrics.json, metric key): the columns of metrics.csv.
ROUND_COLUMNS: tuple[tuple[str, str], ...] = (
    ("central", "loss"),
    ("central", "accuracy"),
    ("central", "perplexity"),
    ("central", "fact-recall"),
    ("central", "fact-answer-loss"),
    ("central", "relevance-fact"),
    ("central", "relevance-filler"),
    ("central", "relevance-auroc"),
    ("central", "prose-perplexity"),
    ("central", "extra-loss"),
    ("central", "extra-accuracy"),
    ("central", "extra-fact-recall"),
    ("central", "extra-fact-answer-loss"),
    ("train", "train-loss"),
    ("train", "mean-relevance"),
    ("train", "high-relevance-fraction"),
    ("train", "client-relevance-min"),
    ("train", "client-relevance-max"),
    ("train", "client-relevance-std"),
    ("train", "anchor-drift"),
    ("traffic", "model-bytes"),
    ("traffic", "anchor-bytes"),
    ("traffic", "local-steps"),
    ("traffic", "replies"),
    ("central", "round-seconds"),
)
FINAL_KEYS = ("loss", "accuracy", "fact-recall", "fact-answer-loss")


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation and count of a figure over seeds (n-1 in the std)."""

    mean: float | None
    std: float | None
    count: int  # seeds with a value
    total: int  # seeds

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stat:
        """The statistic of ``values``; None and NaN entries count as missing."""
        present = [v for v in values if v is not None and math.isfinite(v)]
        if not present:
            return cls(None, None, 0, len(values))
        std = float(np.std(present, ddof=1)) if len(present) > 1 else 0.0
        return cls(float(np.mean(present)), std, len(present), len(values))

    def text(self, digits: int = 4) -> str:
        """``mean ± std``, with ``(k/n)`` when only k of n seeds have a value; '-' if none."""
        if self.mean is None:
            return f"- (0/{self.total})" if self.total else "-"
        text = (
            f"{self.mean:.{digits}g} ± {self.std:.2g}"
            if self.total > 1
            else f"{self.mean:.{digits}g}"
        )
        return text if self.count == self.total else f"{text} ({self.count}/{self.total})"


@dataclass(frozen=True)
class VariantSummary:
    """A variant's figures over seeds."""

    variant: str
    figures: dict[str, Stat] = field(default_factory=dict)


def reported_keys(summaries: Sequence[VariantSummary], keys: Iterable[str]) -> list[str]:
    """The ``keys`` that at least one of ``summaries`` has a value for, in their order.

    A figure that no run measured (fact recall on a text dataset) gets no row or column.
    """
    return [
        key
        for key in keys
        if any(key in s.figures and s.figures[key].mean is not None for s in summaries)
    ]


def metrics_rows(results: Iterable[RunResult]) -> list[dict[str, Any]]:
    """One row per variant, seed and round with every ``ROUND_COLUMNS`` metric present."""
    rows = []
    for result in results:
        for record in result.metrics["rounds"]:
            row: dict[str, Any] = {
                "variant": result.spec.variant,
                "seed": result.spec.seed,
                "round": record["round"],
            }
            for section, key in ROUND_COLUMNS:
                row[key] = record.get(section, {}).get(key)
            rows.append(row)
    used = [key for _, key in ROUND_COLUMNS if any(row[key] is not None for row in rows)]
    return [{k: row[k] for k in ("variant", "seed", "round", *used)} for row in rows]


def rounds_to_target(
    losses: Sequence[float | None], target: float, *, higher_is_better: bool = False
) -> int | None:
    """The first round whose loss is at or below ``target``; None if none is.

    ``losses[r]`` is the central loss after round ``r`` (``losses[0]``: the initial model).
    With ``higher_is_better`` (e.g. fact recall), the first round at or above ``target``.
    """
    sign = -1.0 if higher_is_better else 1.0
    for server_round, loss in enumerate(losses):
        if loss is not None and math.isfinite(loss) and sign * loss <= sign * target:
            return server_round
    return None


def steps_to_target(
    losses: Sequence[float | None], steps: Sequence[float], target: float
) -> int | None:
    """Local steps (summed over clients) taken until the loss first reaches ``target``.

    ``steps[r]`` is the number of local steps all clients took in round ``r``.
    """
    if len(steps) != len(losses):
        raise ValueError(f"{len(losses)} losses but {len(steps)} step counts; they must match")
    reached = rounds_to_target(losses, target)
    return None if reached is None else int(sum(steps[: reached + 1]))


def curve(result: RunResult, section: str, key: str) -> list[float | None]:
    """Per-round values of ``section``/``key`` of one run (None where absent)."""
    return [record.get(section, {}).get(key) for record in result.metrics["rounds"]]


def final_figures(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The last round's central evaluation and the run's cost per round.

    ``seconds-per-round`` leaves out round 1 when there are more, since round 1 also pays
    for the simulation engine's start-up (which ``wall-seconds`` includes).
    """
    rounds = metrics["rounds"]
    last = rounds[-1]
    trained = [r for r in rounds if r["round"] > 0]
    figures = {key: last["central"].get(key) for key in FINAL_KEYS}
    figures["initial-loss"] = rounds[0]["central"].get("loss")
    figures["mean-relevance"] = last["train"].get("mean-relevance")
    for key in ("relevance-fact", "relevance-filler", "relevance-auroc"):
        figures[key] = last["central"].get(key)
    timed = trained[1:] or trained
    seconds = [r["central"].get("round-seconds", 0.0) for r in timed]
    figures["seconds-per-round"] = sum(seconds) / max(len(seconds), 1)
    figures["wall-seconds"] = metrics.get("wall-seconds")
    for kind in ("model-bytes", "anchor-bytes"):
        sent = [r.get("traffic", {}).get(kind) for r in trained]
        known = [value for value in sent if value is not None]
        figures[f"{kind}-per-round"] = sum(known) / len(known) if known else None
    return figures


def _mean_finals(results: Sequence[RunResult], key: str) -> list[float]:
    """Each variant's mean final central ``key`` (variants without one are left out)."""
    finals: dict[str, list[float]] = {}
    for result in results:
        final = curve(result, "central", key)[-1]
        if final is not None and math.isfinite(final):
            finals.setdefault(result.spec.variant, []).append(final)
    return [float(np.mean(values)) for values in finals.values()]


def default_target(results: Sequence[RunResult]) -> float:
    """The highest mean final central loss among the variants."""
    return max(_mean_finals(results, "loss"))


def default_recall_target(results: Sequence[RunResult]) -> float | None:
    """The lowest mean final fact recall among the variants; None if it is 0 or absent."""
    finals = _mean_finals(results, "fact-recall")
    return min(finals) if finals and min(finals) > 0 else None


def summarize(
    results: Sequence[RunResult], target: float, recall_target: float | None = None
) -> list[VariantSummary]:
    """Each variant's final figures and rounds/steps to ``target``, over seeds.

    With ``recall_target``, also the first round whose fact recall reaches it.
    """
    per_variant: dict[str, list[dict[str, float | None]]] = {}
    for result in results:
        figures = final_figures(result.metrics)
        losses = curve(result, "central", "loss")
        steps = [value or 0 for value in curve(result, "traffic", "local-steps")]
        figures["rounds-to-target"] = rounds_to_target(losses, target)
        figures["steps-to-target"] = steps_to_target(losses, steps, target)
        if recall_target is not None:
            recalls = curve(result, "central", "fact-recall")
            figures["rounds-to-recall"] = rounds_to_target(
                recalls, recall_target, higher_is_better=True
            )
        per_variant.setdefault(result.spec.variant, []).append(figures)
    summaries = []
    for variant, runs in per_variant.items():
        keys = list(runs[0])
        stats = {key: Stat.of([run[key] for run in runs]) for key in keys}
        summaries.append(VariantSummary(variant, stats))
    return summaries


DIFFERENCE_COLUMNS = (
    ("loss", "Δ final loss"),
    ("accuracy", "Δ final accuracy"),
    ("fact-recall", "Δ fact recall"),
    ("fact-answer-loss", "Δ fact answer loss"),
)


def paired_differences(results: Sequence[RunResult], reference: str) -> list[VariantSummary]:
    """Per variant, its final figures minus ``reference``'s on the same seed, over seeds.

    One seed gives both runs the same data, initial model and sampled clients, so the
    paired difference isolates what the variant changes; its std over seeds says how
    much of it is noise. Empty if ``reference`` did not run.
    """
    finals = {(r.spec.variant, r.spec.seed): final_figures(r.metrics) for r in results}
    return differences_to(finals, reference, [key for key, _ in DIFFERENCE_COLUMNS])


def differences_to(
    figures: Mapping[tuple[str, int], Mapping[str, float | None]],
    reference: str,
    keys: Sequence[str],
) -> list[VariantSummary]:
    """``figures[(variant, seed)][key]`` minus the reference's on the same seed, as Stats."""
    return [
        VariantSummary(variant, {key: Stat.of(values) for key, values in by_key.items()})
        for variant, by_key in paired_values(figures, reference, keys).items()
    ]


def paired_values(
    figures: Mapping[tuple[str, int], Mapping[str, float | None]],
    reference: str,
    keys: Sequence[str],
) -> dict[str, dict[str, list[float | None]]]:
    """``{variant: {key: [its figure minus the reference's, seed by seed]}}``.

    A seed where either run lacks the figure gives None. Empty if ``reference`` did not run.
    """
    variants = list(dict.fromkeys(variant for variant, _ in figures))
    seeds = sorted({seed for _, seed in figures})
    if reference not in variants:
        return {}
    values: dict[str, dict[str, list[float | None]]] = {}
    for variant in (v for v in variants if v != reference):
        values[variant] = {}
        for key in keys:
            differences = []
            for seed in seeds:
                ours = figures.get((variant, seed), {}).get(key)
                theirs = figures.get((reference, seed), {}).get(key)
                differences.append(None if ours is None or theirs is None else ours - theirs)
            values[variant][key] = differences
    return values


def training_warnings(results: Sequence[RunResult]) -> list[str]:
    """A line per run that did not train as it should: failed replies, or no progress.

    A run whose clients' replies failed, or whose final central loss is no lower than
    its initial one, is named, so that a summary never presents it as a valid result.
    """
    warnings = []
    for result in results:
        rounds = result.metrics["rounds"]
        name = f"{result.spec.variant} seed {result.spec.seed}"
        failed = sum(int(r.get("train", {}).get("num-failures", 0) or 0) for r in rounds)
        replies = sum(int(r.get("train", {}).get("num-replies", 0) or 0) for r in rounds)
        if failed:
            warnings.append(f"{name}: {failed} training replies failed (of {replies + failed})")
        losses = [loss for loss in curve(result, "central", "loss") if loss is not None]
        if len(losses) > 1 and not losses[-1] < losses[0]:
            warnings.append(
                f"{name}: the central loss did not fall ({losses[0]:.4g} -> {losses[-1]:.4g})"
            )
    return warnings
