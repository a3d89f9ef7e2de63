"""The machinery shared by the experiment commands: run a grid, tabulate, summarize, plot.

An experiment is a list of variants (a label and the run-config keys it sets: a strategy,
or an ablation switch) crossed with a list of seeds. Every run of one seed has the same
data, partitions, model initialization and client sampling; only the variant's keys
differ. :func:`execute` runs them one after another on Flower's simulation engine and
shows progress; :func:`metrics_rows` flattens the runs into one row per variant, seed and
round (``metrics.csv``); :func:`summarize` reduces each variant to mean and standard
deviation over seeds (``summary.md``, ``summary.json``); :func:`plot_curves` draws the
per-round curves with a band of one standard deviation over seeds (PNG, Agg backend).

``simulations.compare``, ``simulations.ablate`` and ``simulations.forgetting`` are thin
commands over these functions.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from fedaso.run_config import RunConfig
from simulations.engine import format_table, resolve_run_config, round_rows, simulate

# (section of a round record in metrics.json, metric key): the columns of metrics.csv.
ROUND_COLUMNS: tuple[tuple[str, str], ...] = (
    ("central", "loss"),
    ("central", "accuracy"),
    ("central", "perplexity"),
    ("central", "fact-recall"),
    ("central", "fact-answer-loss"),
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
class Variant:
    """One arm of an experiment: a label and the run-config keys it sets."""

    label: str  # e.g. "fedaso", "no-projection"
    settings: tuple[tuple[str, Any], ...] = ()  # kebab-case run-config keys and values

    def __post_init__(self) -> None:
        if not self.label or "/" in self.label or self.label.strip() != self.label:
            raise ValueError(f"variant label {self.label!r} must be a non-empty folder name")


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment: a variant on a seed, fully configured."""

    variant: str
    seed: int
    run: RunConfig


@dataclass(frozen=True)
class RunResult:
    """A finished run: its spec and the metrics its ServerApp wrote."""

    spec: RunSpec
    metrics: dict[str, Any]


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


# ---------------------------------------------------------------------------------------
# Planning and running


def parse_list(text: str, flag: str) -> list[str]:
    """Comma-separated values of ``flag``; ValueError if there are none or duplicates."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"{flag}={text!r} is invalid: give at least one comma-separated value")
    duplicates = sorted({item for item in items if items.count(item) > 1})
    if duplicates:
        raise ValueError(f"{flag}={text!r} is invalid: {', '.join(duplicates)} given twice")
    return items


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; ValueError naming ``--seeds`` for anything else."""
    seeds = []
    for item in parse_list(text, "--seeds"):
        if not item.isdigit():
            raise ValueError(f"--seeds={text!r} is invalid: {item!r} is not an integer >= 0")
        seeds.append(int(item))
    return seeds


def add_experiment_flags(parser: argparse.ArgumentParser) -> None:
    """Flags every experiment command has on top of ``engine.add_run_flags``."""
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--seeds", help="comma-separated seeds, e.g. 0,1,2 (default: --seed, else 0)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse runs whose folder already holds the metrics of the same run-config",
    )
    parser.add_argument(
        "--target-loss",
        type=float,
        help="central loss for rounds-to-target (default: the highest mean final loss "
        "among the variants, which each variant reaches on average)",
    )


def seeds_of(args: argparse.Namespace) -> list[int]:
    """The seeds asked for by ``--seeds`` or ``--seed`` (not both)."""
    if args.seeds is not None and args.seed is not None:
        raise ValueError("give --seeds or --seed, not both")
    if args.seeds is not None:
        return parse_seeds(args.seeds)
    return [args.seed if args.seed is not None else RunConfig().seed]


def run_dir(out: Path, variant: str, seed: int, *, several_seeds: bool) -> Path:
    """``OUT/<variant>`` for a single seed, ``OUT/<variant>/seed-<seed>`` for several."""
    return out / variant / f"seed-{seed}" if several_seeds else out / variant


def plan_runs(
    args: argparse.Namespace, variants: Sequence[Variant], seeds: Sequence[int], out: Path
) -> list[RunSpec]:
    """Every (variant, seed) run, configured and validated before anything runs.

    Flags and ``--set`` pairs apply to all runs; a variant's own settings override them.
    """
    several = len(seeds) > 1
    specs = []
    for seed in seeds:
        for variant in variants:
            out_dir = run_dir(out, variant.label, seed, several_seeds=several).resolve()
            fixed = dict(variant.settings) | {"seed": seed, "out-dir": str(out_dir)}
            specs.append(RunSpec(variant.label, seed, resolve_run_config(args, **fixed)))
    return specs


class Progress:
    """Prints a line per finished round and per finished run, with elapsed time and ETA.

    The estimate assumes the remaining rounds take as long as the finished ones did.
    """

    def __init__(self, specs: Sequence[RunSpec], stream: TextIO | None = None) -> None:
        self.total_rounds = sum(spec.run.num_server_rounds for spec in specs)
        self.total_runs = len(specs)
        self.rounds_done = 0
        self.rounds_reused = 0  # rounds of runs read back (--resume), not timed here
        self.runs_done = 0
        self.started = time.perf_counter()
        self.stream = stream or sys.stdout

    def elapsed(self) -> float:
        """Seconds since the experiment started."""
        return time.perf_counter() - self.started

    def remaining(self) -> float | None:
        """Estimated seconds left, or None before the first round run here."""
        timed = self.rounds_done - self.rounds_reused
        if not timed:
            return None
        return self.elapsed() / timed * (self.total_rounds - self.rounds_done)

    def run_reused(self, spec: RunSpec) -> None:
        """Note that ``spec``'s finished run was read back instead of run."""
        self.rounds_done += spec.run.num_server_rounds
        self.rounds_reused += spec.run.num_server_rounds
        self.runs_done += 1
        self._say(f"=== run {self.runs_done}/{self.total_runs}: {spec.variant} seed "
                  f"{spec.seed} reused from {spec.run.out_dir}")  # fmt: skip

    def _say(self, text: str) -> None:
        left = self.remaining()
        eta = "?" if left is None else duration(left)
        print(
            f"{text} | rounds {self.rounds_done}/{self.total_rounds}, "
            f"{duration(self.elapsed())} elapsed, ~{eta} left",
            file=self.stream,
            flush=True,
        )

    def round_callback(self, spec: RunSpec) -> Callable[[int, Mapping[str, float]], None]:
        """The ``on_round`` callback of ``spec``'s run."""

        def on_round(server_round: int, metrics: Mapping[str, float]) -> None:
            if server_round == 0:
                return
            self.rounds_done += 1
            loss = metrics.get("loss", math.nan)
            self._say(
                f"[{spec.variant} seed {spec.seed}] round {server_round}/"
                f"{spec.run.num_server_rounds} loss {loss:.4f}"
            )

        return on_round

    def run_finished(self, spec: RunSpec, wall_seconds: float) -> None:
        """Note that ``spec``'s run ended after ``wall_seconds``."""
        self.runs_done += 1
        self._say(
            f"=== run {self.runs_done}/{self.total_runs} done: {spec.variant} seed "
            f"{spec.seed} in {duration(wall_seconds)}"
        )


def duration(seconds: float) -> str:
    """``75.2`` -> ``"1m15s"``; under a minute ``"42s"``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def finished_metrics(spec: RunSpec) -> dict[str, Any] | None:
    """The metrics of an earlier run of exactly ``spec`` in its folder, or None."""
    path = Path(spec.run.out_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    same = metrics.get("config") == spec.run.to_flat() and "wall-seconds" in metrics
    return metrics if same else None


def execute_from_args(
    specs: Sequence[RunSpec], args: argparse.Namespace, *, show_rounds: bool = False
) -> list[RunResult]:
    """:func:`execute` with the clients, CPUs and resume flag of ``add_experiment_flags``."""
    return execute(
        specs,
        num_clients=args.num_clients,
        client_cpus=args.client_cpus,
        client_gpus=args.client_gpus,
        progress=Progress(specs),
        show_rounds=show_rounds,
        resume=args.resume,
    )


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command that ran ``python -m module`` with ``argv`` (``sys.argv`` if None)."""
    return f"python -m {module} " + shlex.join(sys.argv[1:] if argv is None else argv)


def execute(
    specs: Sequence[RunSpec],
    *,
    num_clients: int,
    client_cpus: float,
    client_gpus: float = 0.0,
    progress: Progress | None = None,
    show_rounds: bool = False,
    resume: bool = False,
) -> list[RunResult]:
    """Run ``specs`` in order on Flower's simulation engine; print a table per run if asked.

    With ``resume``, a run whose folder already holds the metrics of the same run-config
    and number of clients is read back instead of run again.
    """
    progress = progress or Progress(specs)
    results = []
    for spec in specs:
        metrics = finished_metrics(spec) if resume else None
        if metrics is not None and metrics.get("num-clients") == num_clients:
            progress.run_reused(spec)
        else:
            metrics = simulate(
                spec.run,
                num_clients=num_clients,
                client_cpus=client_cpus,
                client_gpus=client_gpus,
                on_round=progress.round_callback(spec),
            )
            progress.run_finished(spec, metrics["wall-seconds"])
        if show_rounds:
            rows = round_rows(metrics)
            table = format_table(list(rows[0]), [list(row.values()) for row in rows])
            print(f"\n{spec.variant}, seed {spec.seed}:\n{table}\n", flush=True)
        results.append(RunResult(spec, metrics))
    return results


# ---------------------------------------------------------------------------------------
# Tables


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


def write_metrics_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Write ``rows`` as CSV with a header; missing values are empty cells."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def rounds_to_target(losses: Sequence[float], target: float) -> int | None:
    """The first round whose loss is at or below ``target``; None if none is.

    ``losses[r]`` is the central loss after round ``r`` (``losses[0]``: the initial model).
    """
    for server_round, loss in enumerate(losses):
        if loss is not None and math.isfinite(loss) and loss <= target:
            return server_round
    return None


def steps_to_target(losses: Sequence[float], steps: Sequence[int], target: float) -> int | None:
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
    timed = trained[1:] or trained
    seconds = [r["central"].get("round-seconds", 0.0) for r in timed]
    figures["seconds-per-round"] = sum(seconds) / max(len(seconds), 1)
    figures["wall-seconds"] = metrics.get("wall-seconds")
    for kind in ("model-bytes", "anchor-bytes"):
        sent = [r.get("traffic", {}).get(kind) for r in trained]
        known = [value for value in sent if value is not None]
        figures[f"{kind}-per-round"] = sum(known) / len(known) if known else None
    return figures


def default_target(results: Sequence[RunResult]) -> float:
    """The highest mean final central loss among the variants."""
    finals: dict[str, list[float]] = {}
    for result in results:
        finals.setdefault(result.spec.variant, []).append(curve(result, "central", "loss")[-1])
    return max(float(np.mean(values)) for values in finals.values())


def summarize(results: Sequence[RunResult], target: float) -> list[VariantSummary]:
    """Each variant's final figures and rounds/steps to ``target``, over seeds."""
    per_variant: dict[str, list[dict[str, float | None]]] = {}
    for result in results:
        figures = final_figures(result.metrics)
        losses = curve(result, "central", "loss")
        steps = [value or 0 for value in curve(result, "traffic", "local-steps")]
        figures["rounds-to-target"] = rounds_to_target(losses, target)
        figures["steps-to-target"] = steps_to_target(losses, steps, target)
        per_variant.setdefault(result.spec.variant, []).append(figures)
    summaries = []
    for variant, runs in per_variant.items():
        keys = list(runs[0])
        stats = {key: Stat.of([run[key] for run in runs]) for key in keys}
        summaries.append(VariantSummary(variant, stats))
    return summaries


SUMMARY_COLUMNS = (
    ("loss", "final loss"),
    ("accuracy", "final accuracy"),
    ("fact-recall", "fact recall"),
    ("fact-answer-loss", "fact answer loss"),
    ("rounds-to-target", "rounds to target"),
    ("steps-to-target", "local steps to target"),
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
    columns = [
        (key, title)
        for key, title in columns
        if any(s.figures.get(key) and s.figures[key].mean is not None for s in summaries)
    ]
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


def summary_json(summaries: Sequence[VariantSummary]) -> dict[str, Any]:
    """``{variant: {figure: {mean, std, count, total}}}``."""
    return {s.variant: {k: asdict(v) for k, v in s.figures.items()} for s in summaries}


def experiment_header(specs: Sequence[RunSpec], num_clients: int, command: str) -> str:
    """Markdown lines saying what ran: command, clients, rounds, data, seeds."""
    run = specs[0].run
    seeds = sorted({spec.seed for spec in specs})
    return "\n".join(
        [
            f"Command: `{command}`",
            "",
            f"- {num_clients} clients, fraction-train {run.fraction_train} "
            f"({max(int(num_clients * run.fraction_train), run.min_train_nodes)} per round), "
            f"{run.num_server_rounds} rounds, dataset `{run.dataset}`, "
            f"partitioner `{run.partitioner}`",
            f"- seeds {', '.join(map(str, seeds))}; figures are mean ± sample std over seeds",
            f"- model width {run.model_width}, {run.model_layers} layers, "
            f"seq-len {run.seq_len}, local epochs {run.local_epochs}, batch {run.batch_size}, "
            f"lr {run.lr}",
        ]
    )


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
    variants = list(dict.fromkeys(variant for variant, _ in figures))
    seeds = sorted({seed for _, seed in figures})
    if reference not in variants:
        return []
    summaries = []
    for variant in (v for v in variants if v != reference):
        stats = {}
        for key in keys:
            differences = []
            for seed in seeds:
                ours = figures.get((variant, seed), {}).get(key)
                theirs = figures.get((reference, seed), {}).get(key)
                differences.append(None if ours is None or theirs is None else ours - theirs)
            stats[key] = Stat.of(differences)
        summaries.append(VariantSummary(variant, stats))
    return summaries


def write_reports(
    out: Path,
    results: Sequence[RunResult],
    *,
    title: str,
    header: str,
    target: float | None,
    label: str = "variant",
    reference: str | None = None,
) -> list[VariantSummary]:
    """Write ``metrics.csv``, ``summary.md``, ``summary.json`` and the plots into ``out``.

    With ``reference``, ``summary.md`` also gives every variant's paired difference to it.
    """
    out.mkdir(parents=True, exist_ok=True)
    rows = metrics_rows(results)
    write_metrics_csv(rows, out / "metrics.csv")
    target = default_target(results) if target is None else target
    summaries = summarize(results, target)
    differences = paired_differences(results, reference) if reference else []
    plots = plot_curves(rows, out)
    lines = [
        f"# {title}",
        "",
        header,
        f"- target central loss for rounds/steps to target: {target:.4g}",
        "",
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
    lines += [*(f"![{path.stem}]({path.name})" for path in plots), ""]
    (out / "summary.md").write_text("\n".join(lines))
    summary = {
        "target-loss": target,
        "variants": summary_json(summaries),
        f"minus-{reference}": summary_json(differences),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summaries


# ---------------------------------------------------------------------------------------
# Plots

PLOTS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("central", (("loss", "central loss"), ("accuracy", "next-byte accuracy"))),
    ("facts", (("fact-recall", "fact recall"), ("fact-answer-loss", "fact answer loss"))),
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
    return written
