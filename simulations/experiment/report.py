"""Write an experiment's report: ``metrics.csv``, ``summary.md``, ``summary.json``, plots."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fedaso.config import RunConfig
from fedaso.durable import write_text_atomically
from simulations.engine import format_table
from simulations.experiment.effects import (
    ForgettingRow,
    SpeedupRow,
    forgetting_rows,
    matched_recall,
    recall_and_forgetting,
    speedup_rows,
    speedup_target,
)
from simulations.experiment.plots import plot_curves, plot_plane
from simulations.experiment.runner import RunResult, RunSpec
from simulations.experiment.statistics import (
    DIFFERENCE_COLUMNS,
    Stat,
    VariantSummary,
    default_recall_target,
    default_target,
    metrics_rows,
    paired_differences,
    reported_keys,
    summarize,
    training_warnings,
)
from strategies.tracking import log_files, tracking_of


def write_metrics_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Write ``rows`` as CSV with a header; missing values are empty cells."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


SUMMARY_COLUMNS = (
    ("loss", "final loss"),
    ("accuracy", "final accuracy"),
    ("fact-recall", "fact recall"),
    ("fact-answer-loss", "fact answer loss"),
    ("rounds-to-target", "rounds to target"),
    ("steps-to-target", "local steps to target"),
    ("rounds-to-recall", "rounds to recall target"),
    ("relevance-fact", "fact-token relevance"),
    ("relevance-filler", "filler-token relevance"),
    ("relevance-auroc", "relevance AUROC (fact vs other)"),
    ("seconds-per-round", "s / round (after round 1)"),
    ("wall-seconds", "wall s / run"),
    ("model-bytes-per-round", "model MB / round"),
    ("anchor-bytes-per-round", "anchor MB / round"),
)


def summary_table(
    summaries: Sequence[VariantSummary],
    label: str = "variant",
    columns: Sequence[tuple[str, str]] = SUMMARY_COLUMNS,
) -> str:
    """A Markdown table, one row per variant, of the ``(key, title)`` columns any has.

    Figures named ``*bytes-per-round`` are shown in MB.
    """
    titles = dict(columns)
    columns = [(key, titles[key]) for key in reported_keys(summaries, titles)]
    lines = [
        "| " + " | ".join([label, *(title for _, title in columns)]) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for summary in summaries:
        cells = [summary.variant]
        for key, _ in columns:
            stat = summary.figures[key]
            if key.endswith("bytes-per-round") and stat.mean is not None:
                stat = Stat(stat.mean / 1e6, (stat.std or 0.0) / 1e6, stat.count, stat.total)
            cells.append(stat.text())
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figures_table(summaries: Sequence[VariantSummary]) -> str:
    """The console's closing table: a row per figure that some variant has, a column each."""
    keys = reported_keys(summaries, dict.fromkeys(k for s in summaries for k in s.figures))
    rows = [[key, *(s.figures[key].text() for s in summaries)] for key in keys]
    return format_table(["figure", *(s.variant for s in summaries)], rows)


def summary_json(summaries: Sequence[VariantSummary]) -> dict[str, Any]:
    """``{variant: {figure: {mean, std, count, total}}}``."""
    return {s.variant: {k: asdict(v) for k, v in s.figures.items()} for s in summaries}


def model_description(run: RunConfig) -> str:
    """``model width 64, 2 layers`` for the reference model, else its name (and LoRA)."""
    if run.model.model == "tinylm":
        return f"model width {run.model.model_width}, {run.model.model_layers} layers"
    return f"model {run.model.model}" + (
        f" with LoRA r={run.model.lora_r}" if run.model.peft == "lora" else ""
    )


def experiment_header(specs: Sequence[RunSpec], num_clients: int, command: str) -> str:
    """Markdown lines saying what ran: command, clients, rounds, data, seeds."""
    run = specs[0].run
    federation = run.federation
    seeds = sorted({spec.seed for spec in specs})
    return "\n".join(
        [
            f"Command: `{command}`",
            "",
            f"- {num_clients} clients, fraction-train {federation.fraction_train} "
            f"({max(int(num_clients * federation.fraction_train), federation.min_train_nodes)} "
            "per round), "
            f"{federation.num_server_rounds} rounds, dataset `{run.data.dataset}`, "
            f"partitioner `{run.data.partitioner}`",
            f"- seeds {', '.join(map(str, seeds))}; figures are mean ± sample std over seeds",
            f"- {model_description(run)}, seq-len {run.data.seq_len}, "
            f"local epochs {run.training.local_epochs}, batch {run.training.batch_size}, "
            f"lr {run.training.lr}",
        ]
    )


def write_reports(
    out: Path,
    results: Sequence[RunResult],
    *,
    title: str,
    header: str,
    target: float | None,
    label: str = "variant",
    reference: str | None = None,
    recall_target: float | None = None,
) -> list[VariantSummary]:
    """Write ``metrics.csv``, ``summary.md``, ``summary.json`` and the plots into ``out``.

    With ``reference``, ``summary.md`` also gives every variant's paired difference to it.
    """
    out.mkdir(parents=True, exist_ok=True)
    rows = metrics_rows(results)
    write_metrics_csv(rows, out / "metrics.csv")
    target = default_target(results) if target is None else target
    if recall_target is None:
        recall_target = default_recall_target(results)
    summaries = summarize(results, target, recall_target)
    differences = paired_differences(results, reference) if reference else []
    plots = plot_curves(rows, out)
    warnings = training_warnings(results)
    lines = [
        f"# {title}",
        "",
        header,
        f"- target central loss for rounds/steps to target: {target:.4g}",
        *(
            [f"- target fact recall for rounds to recall target: {recall_target:.4g}"]
            if recall_target is not None
            else []
        ),
        "",
        *(
            [
                "**Warning: runs that did not train as they should:**",
                "",
                *(f"- {w}" for w in warnings),
                "",
            ]
            if warnings
            else []
        ),
        summary_table(summaries, label),
        "",
    ]
    if differences:
        lines += [
            f"Paired differences to {reference} (variant minus {reference} on the same seed; "
            "mean ± std over seeds):",
            "",
            summary_table(differences, label, DIFFERENCE_COLUMNS),
            "",
        ]
    answer_target = speedup_target(results) if reference else None
    speedups = (
        speedup_rows(results, reference, answer_target)
        if reference and answer_target is not None
        else []
    )
    if speedups:
        lines += [
            f"Speed-up (issue 18's primary metric): the round at which the fact answer loss "
            f"first reaches {answer_target:.4g} (the highest any run has at mid-run), "
            f"interpolated between evaluations; the ratio is {reference}'s over the variant's "
            "on the same seed, as a geometric mean with a 95% t-interval over seeds. Recall "
            "AUC is the mean fact recall over the run.",
            "",
            speedup_table(speedups, reference or "", label),
            "",
        ]
    recall = matched_recall(results) if reference else None
    forgetting = forgetting_rows(results, reference or "", recall) if recall else []
    if any(row.loss_at_match.count for row in forgetting):
        plots.append(plot_plane(recall_and_forgetting(results), out))
        lines += [
            "Forgetting (Table C): the loss (log perplexity) on the base model's held-out prose "
            f"when fact recall first reaches {recall:.4g} (the highest recall every run reaches), "
            f"interpolated between evaluations; paired differences to {reference} with a 95% "
            "t-interval. `plane.png` sets each run's recall gained against prose loss "
            "lost.",
            "",
            forgetting_table(forgetting, reference or "", label),
            "",
        ]
    lines += [*(f"![{path.stem}]({path.name})" for path in plots), ""]
    write_text_atomically(out / "summary.md", "\n".join(lines))
    summary = {
        "target-loss": target,
        "target-recall": recall_target,
        "variants": summary_json(summaries),
        f"minus-{reference}": summary_json(differences),
        "answer-loss-target": answer_target,
        "speedup": speedup_json(speedups),
        "matched-recall": recall,
        "forgetting": {
            row.variant: {
                "prose-loss-at-match": asdict(row.loss_at_match),
                "prose-loss-lost": asdict(row.loss_lost),
                "versus-reference": asdict(row.versus_reference) if row.versus_reference else None,
            }
            for row in forgetting
        },
    }
    write_text_atomically(out / "summary.json", json.dumps(summary, indent=2))
    summary_files = [out / "summary.md", out / "summary.json", out / "metrics.csv", *plots]
    track_summary(out, results, summary_files)
    return summaries


def speedup_table(rows: Sequence[SpeedupRow], reference: str, label: str = "variant") -> str:
    """The Markdown table of :func:`speedup_rows`."""
    lines = [
        f"| {label} | rounds to answer-loss target | speed-up vs {reference} [95% CI] "
        f"| recall AUC | Δ recall AUC vs {reference} [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        speedup = row.speedup.text() if row.speedup else "-"
        if row.speedup is not None and row.speedup.count < row.rounds_to_target.total:
            speedup += f" ({row.speedup.count}/{row.rounds_to_target.total} seeds)"
        gain = row.recall_auc_gain.text() if row.recall_auc_gain else "-"
        lines.append(
            f"| {row.variant} | {row.rounds_to_target.text(3)} | {speedup} "
            f"| {row.recall_auc.text(3)} | {gain} |"
        )
    return "\n".join(lines)


def speedup_json(rows: Sequence[SpeedupRow]) -> dict[str, Any]:
    """``{variant: {rounds-to-target, speedup, recall-auc, recall-auc-gain}}``."""
    return {
        row.variant: {
            "rounds-to-target": asdict(row.rounds_to_target),
            "speedup": asdict(row.speedup) if row.speedup else None,
            "recall-auc": asdict(row.recall_auc),
            "recall-auc-gain": asdict(row.recall_auc_gain) if row.recall_auc_gain else None,
        }
        for row in rows
    }


def forgetting_table(rows: Sequence[ForgettingRow], reference: str, label: str) -> str:
    """The Markdown table of :func:`forgetting_rows`."""
    lines = [
        f"| {label} | prose loss at matched recall (nats) | lost since the start "
        f"| vs {reference} [95% CI] |",
        "|---|---|---|---|",
    ]
    for row in rows:
        versus = row.versus_reference.text() if row.versus_reference else "-"
        lines.append(
            f"| {row.variant} | {row.loss_at_match.text(4)} | {row.loss_lost.text(3)} | {versus} |"
        )
    return "\n".join(lines)


def outputs_note(out: Path, results: Sequence[RunResult]) -> str:
    """The closing lines of a command: runs that did not train, and where its report,
    plots and tracking logs are."""
    lines = [f"warning: {text}" for text in training_warnings(results)]
    lines.append(f"summary: {out / 'summary.md'} (per-round rows: {out / 'metrics.csv'})")
    plots = sorted(out.glob("*.png")) + sorted(out.glob("*/*.png"))
    if plots:
        lines.append("plots: " + ", ".join(str(path) for path in plots))
    lines += tracking_notes([result.spec for result in results])
    return "\n".join(lines)


def tracking_notes(specs: Sequence[RunSpec]) -> list[str]:
    """One line per tracking store the runs of ``specs`` logged to, saying how to read it."""
    notes = []
    for spec in specs:
        tracking = tracking_of(
            spec.run.outputs.tracking, spec.run.outputs.tracking_dir, spec.run.outputs.out_dir
        )
        if tracking is None:
            continue
        if tracking.backend == "mlflow":
            note = (
                f"tracking: MLflow store {tracking.mlflow_uri}, experiment {tracking.experiment!r}"
            )
        else:
            note = f"tracking: tensorboard --logdir {tracking.directory / 'tensorboard'}"
        if note not in notes:
            notes.append(note)
    return notes


def track_summary(out: Path, results: Sequence[RunResult], files: Sequence[Path]) -> None:
    """Log an experiment's summary ``files`` as one more run of its tracking experiment."""
    run = results[0].spec.run
    tracking = tracking_of(run.outputs.tracking, run.outputs.tracking_dir, str(out))
    if tracking is not None:
        root, folder = tracking.directory.parent, out.resolve()
        where = folder.relative_to(root) if folder.is_relative_to(root) else Path(folder.name)
        log_files(tracking, (where / "summary").as_posix(), files)
