"""Per-round curves of an experiment: a line per variant, a band of one std over seeds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PLOTS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("central", (("loss", "central loss"), ("accuracy", "next-byte accuracy"))),
    ("facts", (("fact-recall", "fact recall"), ("fact-answer-loss", "fact answer loss"))),
    ("forgetting", (("prose-perplexity", "held-out prose perplexity (the base's text)"),)),
    ("retention", (("extra-loss", "loss on the first domain"),
                   ("extra-fact-answer-loss", "fact answer loss on the first domain"),
                   ("extra-fact-recall", "fact recall on the first domain"))),
    ("aso", (("mean-relevance", "mean relevance"),
             ("client-relevance-std", "std of client relevance"),
             ("anchor-drift", "anchor drift"),
             ("high-relevance-fraction", "tokens with relevance > 0.5"))),
    ("traffic", (("model-bytes", "model bytes / round (both ways)"),
                 ("anchor-bytes", "anchor bytes / round (both ways)"),
                 ("local-steps", "local steps / round (all clients)"))),
)  # fmt: skip


def band(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rounds, mean and std over seeds of ``key`` in ``rows`` (one variant's rows)."""
    by_round: dict[int, list[float]] = {}
    for row in rows:
        value = row.get(key)
        if value is not None and math.isfinite(value):
            by_round.setdefault(row["round"], []).append(float(value))
    rounds = np.array(sorted(by_round), dtype=np.int64)
    means = np.array([np.mean(by_round[r]) for r in rounds])
    stds = np.array([np.std(by_round[r], ddof=1) if len(by_round[r]) > 1 else 0.0 for r in rounds])
    return rounds, means, stds


def plot_curves(rows: Sequence[Mapping[str, Any]], out: Path) -> list[Path]:
    """One PNG per group of ``PLOTS`` whose metrics appear in ``rows``; returns the paths.

    Each panel has a line per variant (mean over seeds) and a band of +- one std; a
    variant keeps its colour in every panel and file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    variants = list(dict.fromkeys(row["variant"] for row in rows))
    colors = {variant: f"C{index % 10}" for index, variant in enumerate(variants)}
    written = []
    for name, panels in PLOTS:
        present = [
            (key, title) for key, title in panels if any(row.get(key) is not None for row in rows)
        ]
        if not present:
            continue
        figure, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.1), dpi=80)
        for axis, (key, title) in zip(np.atleast_1d(axes), present, strict=True):
            for variant in variants:
                rounds, means, stds = band([r for r in rows if r["variant"] == variant], key)
                if not len(rounds):
                    continue
                color = colors[variant]
                axis.plot(rounds, means, color=color, linewidth=1.4)
                axis.fill_between(rounds, means - stds, means + stds, color=color, alpha=0.2)
            axis.set_title(title, fontsize=10)
            axis.set_xlabel("round")
            axis.grid(alpha=0.3)
        handles = [Line2D([], [], color=colors[v], label=v) for v in variants]
        np.atleast_1d(axes)[0].legend(handles=handles, fontsize=8)
        figure.tight_layout()
        path = out / f"{name}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    knowledge = plot_knowledge(rows, out)
    return written + ([knowledge] if knowledge else [])


def plot_knowledge(rows: Sequence[Mapping[str, Any]], out: Path) -> Path | None:
    """``knowledge.png``: per variant with anchors, fact-token vs filler-token relevance.

    One panel per variant, both curves on the same axes (mean over seeds, +- one std), so
    that a gap between them, or its absence, shows at a glance. None if no variant has them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [
        variant
        for variant in dict.fromkeys(row["variant"] for row in rows)
        if any(r["variant"] == variant and r.get("relevance-fact") is not None for r in rows)
    ]
    if not variants:
        return None
    figure, axes = plt.subplots(1, len(variants), figsize=(4 * len(variants), 3.1), dpi=80,
                                sharey=True)  # fmt: skip
    for axis, variant in zip(np.atleast_1d(axes), variants, strict=True):
        own = [row for row in rows if row["variant"] == variant]
        for key, label, style in (("relevance-fact", "fact-value tokens", "-"),
                                  ("relevance-filler", "filler tokens", "--")):  # fmt: skip
            rounds, means, stds = band(own, key)
            axis.plot(rounds, means, style, color="C0" if style == "-" else "C3", label=label)
            axis.fill_between(rounds, means - stds, means + stds, alpha=0.2,
                              color="C0" if style == "-" else "C3")  # fmt: skip
        axis.set_title(f"{variant}: mean relevance", fontsize=10)
        axis.set_xlabel("round")
        axis.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    figure.tight_layout()
    path = out / "knowledge.png"
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_plane(points: Mapping[str, Sequence[tuple[float, float]]], out: Path) -> Path:
    """``plane.png``: each run's (fact recall gained, prose loss lost), by variant.

    Up and to the left is what a fine-tune wants: more recall for less forgetting.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4.5))
    for index, (variant, pairs) in enumerate(points.items()):
        xs, ys = zip(*pairs, strict=True) if pairs else ((), ())
        axis.scatter(ys, xs, color=f"C{index % 10}", label=variant, alpha=0.8, s=18)
    axis.set_xlabel("prose loss lost, nats (final - initial log perplexity)")
    axis.set_ylabel("fact recall gained (final - initial)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    path = out / "plane.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
