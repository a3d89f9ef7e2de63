"""Plan and run an experiment: variants crossed with seeds, on Flower's simulation engine.

An experiment is a list of variants (a label and the run-config keys it sets: a strategy,
or an ablation switch) crossed with a list of seeds. Every run of one seed has the same
data, partitions, model initialization and client sampling; only the variant's keys
differ. :func:`execute` runs them one after another and shows progress.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from fedaso.config import RunConfig
from simulations.console import RunBar
from simulations.engine import (
    EngineOptions,
    check_partitions,
    format_table,
    resolve_run_config,
    round_rows,
    simulate,
)
from simulations.ray_head import ray_head


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
    parser.add_argument(
        "--target-recall",
        type=float,
        help="fact recall for rounds-to-recall (default: the lowest mean final recall "
        "among the variants, if above 0)",
    )


def seeds_of(args: argparse.Namespace) -> list[int]:
    """The seeds asked for by ``--seeds`` or ``--seed`` (not both)."""
    if args.seeds is not None and args.seed is not None:
        raise ValueError("give --seeds or --seed, not both")
    if args.seeds is not None:
        return parse_seeds(args.seeds)
    return [args.seed if args.seed is not None else RunConfig().federation.seed]


def run_dir(out: Path, variant: str, seed: int, *, several_seeds: bool) -> Path:
    """``OUT/<variant>`` for a single seed, ``OUT/<variant>/seed-<seed>`` for several."""
    return out / variant / f"seed-{seed}" if several_seeds else out / variant


def plan_runs(
    args: argparse.Namespace,
    variants: Sequence[Variant],
    seeds: Sequence[int],
    out: Path,
    experiment_dir: Path | None = None,
) -> list[RunSpec]:
    """Every (variant, seed) run, configured and validated before anything runs.

    Flags and ``--set`` pairs apply to all runs; a variant's own settings override them.
    With ``tracking`` on and no ``tracking-dir`` given, every run tracks into
    ``experiment_dir/tracking`` (default ``out``): one experiment for all of them.
    """
    several = len(seeds) > 1
    tracking_dir = str(((experiment_dir or out) / "tracking").resolve())
    specs = []
    for seed in seeds:
        for variant in variants:
            out_dir = run_dir(out, variant.label, seed, several_seeds=several).resolve()
            fixed = dict(variant.settings) | {"seed": seed, "out-dir": str(out_dir)}
            run = resolve_run_config(args, **fixed)
            if run.outputs.tracking != "none" and not run.outputs.tracking_dir:
                run = run.replace(tracking_dir=tracking_dir)
            specs.append(RunSpec(variant.label, seed, run))
    return specs


class Progress:
    """One progress bar per run (round, central loss, elapsed time, estimate left).

    A run read back instead of run (``--resume``) gets one line instead of a bar.
    """

    def __init__(self, specs: Sequence[RunSpec], stream: TextIO | None = None) -> None:
        self.total_runs = len(specs)
        self.runs_done = 0
        self.stream = stream or sys.stderr
        self.bar: RunBar | None = None

    def label(self, spec: RunSpec) -> str:
        """``run 1/4 fedaso seed 0``: which run a bar or line is about."""
        return f"run {self.runs_done + 1}/{self.total_runs} {spec.variant} seed {spec.seed}"

    def run_reused(self, spec: RunSpec) -> None:
        """Note that ``spec``'s finished run was read back instead of run."""
        print(
            f"{self.label(spec)}: reused from {spec.run.outputs.out_dir}",
            file=self.stream,
            flush=True,
        )
        self.runs_done += 1

    def round_callback(self, spec: RunSpec) -> Callable[[int, Mapping[str, float]], None]:
        """Open ``spec``'s bar and return the ``on_round`` callback of its run."""
        bar = self.bar = RunBar(
            self.label(spec), spec.run.federation.num_server_rounds, self.stream
        )

        def on_round(server_round: int, metrics: Mapping[str, float]) -> None:
            if server_round > 0:  # round 0 is the initial evaluation
                bar.round_done(metrics.get("loss", math.nan))

        return on_round

    def run_finished(self, spec: RunSpec, wall_seconds: float) -> None:
        """Close ``spec``'s bar, noting the run's wall time."""
        self.runs_done += 1
        if self.bar is not None:
            self.bar.close(f"in {duration(wall_seconds)}")
            self.bar = None

    def run_failed(self) -> None:
        """Close the bar of a run that raised."""
        if self.bar is not None:
            self.bar.close("failed")
            self.bar = None


def duration(seconds: float) -> str:
    """``75.2`` -> ``"1m15s"``; under a minute ``"42s"``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def read_finished(path: Path) -> dict[str, Any]:
    """The metrics of the finished run whose ``metrics.json`` is ``path``.

    Raises ``ValueError`` naming ``path`` if it is unreadable or not a finished run's
    (a run writes ``wall-seconds`` last, with its ``config``).
    """
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: {error}") from None
    if not isinstance(metrics, dict) or not {"config", "wall-seconds"} <= metrics.keys():
        raise ValueError(f"{path}: not a finished run's metrics (no config or wall-seconds)")
    return metrics


def finished_metrics(spec: RunSpec) -> dict[str, Any] | None:
    """The metrics of an earlier run of exactly ``spec`` in its folder, or None."""
    path = Path(spec.run.outputs.out_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = read_finished(path)
    except ValueError:
        return None
    return metrics if metrics["config"] == spec.run.to_flat() else None


def execute_from_args(
    specs: Sequence[RunSpec], args: argparse.Namespace, *, show_rounds: bool = False
) -> list[RunResult]:
    """:func:`execute` with the clients, CPUs and resume flag of ``add_experiment_flags``."""
    return execute(
        specs,
        EngineOptions.from_args(args),
        progress=Progress(specs),
        show_rounds=show_rounds and args.verbose,
        resume=args.resume,
    )


def command_line(prog: str, argv: Sequence[str] | None) -> str:
    """The command line of ``prog`` (e.g. ``fedaso compare``) with ``argv`` (``sys.argv`` if
    None)."""
    return f"{prog} " + shlex.join(sys.argv[1:] if argv is None else argv)


def execute(
    specs: Sequence[RunSpec],
    engine: EngineOptions,
    *,
    progress: Progress | None = None,
    show_rounds: bool = False,
    resume: bool = False,
) -> list[RunResult]:
    """Run ``specs`` in order on Flower's simulation engine; print a table per run if asked.

    With ``resume``, a run whose folder already holds the metrics of the same run-config
    and number of clients is read back instead of run again. Without a Ray address, the
    runs share one local Ray head (:func:`shared_engine`): the engine starts once.
    """
    progress = progress or Progress(specs)
    for spec in specs:  # every run's data, before the first one starts
        check_partitions(spec.run, engine.num_clients)
    done = {
        index: metrics
        for index, spec in enumerate(specs)
        if resume
        and (metrics := finished_metrics(spec)) is not None
        and metrics.get("num-clients") == engine.num_clients
    }
    results = []
    with shared_engine(engine, runs=len(specs) - len(done)) as shared:
        for index, spec in enumerate(specs):
            if index in done:
                progress.run_reused(spec)
                results.append(RunResult(spec, done[index]))
            else:
                results.append(_simulated(spec, shared, progress, show_rounds=show_rounds))
    return results


@contextlib.contextmanager
def shared_engine(engine: EngineOptions, *, runs: int) -> Iterator[EngineOptions]:
    """``engine`` on one Ray head for all ``runs`` (``simulations.ray_head``), when it would
    otherwise start a local Ray instance per run; as it is for one run or a given cluster."""
    if engine.ray_address or runs < 2:
        yield engine
        return
    with ray_head(os.cpu_count() or 1) as head:
        yield dataclasses.replace(engine, ray_address=head.address)


def _simulated(
    spec: RunSpec, engine: EngineOptions, progress: Progress, *, show_rounds: bool
) -> RunResult:
    """Run ``spec`` on the engine, with its progress bar (and its table if asked)."""
    on_round = progress.round_callback(spec)
    try:
        metrics = simulate(
            spec.run,
            num_clients=engine.num_clients,
            client_cpus=engine.client_cpus,
            client_gpus=engine.client_gpus,
            on_round=on_round,
            ray_address=engine.ray_address,
            verbose=engine.verbose,
            site_policy=engine.site_policy,
        )
    except BaseException:
        progress.run_failed()
        raise
    progress.run_finished(spec, metrics["wall-seconds"])
    if show_rounds:
        rows = round_rows(metrics)
        table = format_table(list(rows[0]), [list(row.values()) for row in rows])
        print(f"\n{spec.variant}, seed {spec.seed}:\n{table}\n", flush=True)
    return RunResult(spec, metrics)
