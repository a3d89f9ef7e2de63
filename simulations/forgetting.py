"""Forgetting in federation (the report's Table 4): train on domain A, then on domain B.

    python -m simulations.forgetting --strategies fedaso,fedavg --num-clients 50 \
        --rounds 20 --seeds 0,1,2 --out runs/forgetting

For each strategy and seed, phase A trains a fresh model on ``facts:a`` (geography); phase
B continues from phase A's final model (``initial-model``; FedASO also keeps phase A's
anchors, or re-initializes them with ``--anchors reinit``) on ``facts:b`` (people), and is
evaluated each round on A's central data as well (``extra-eval-dataset``). The drop on A is
A's central loss, fact recall and fact answer loss after phase A versus after phase B.
``--set-b KEY=VALUE`` sets a run-config key for phase B alone, e.g. ``--set-b max-steps=2``
for a phase B short enough that A's recall is not gone (a floor every strategy would share).

Writes ``phase-a/`` and ``phase-b/`` (each with the outputs of ``simulations.compare``)
and ``summary.md`` / ``summary.json`` with the forgetting table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedaso.config import RunConfig
from fedaso.durable import write_text_atomically
from simulations.compare import strategy_variants
from simulations.console import CommandParser, fail
from simulations.engine import add_run_flags, parse_pairs
from simulations.experiment import (
    RunResult,
    RunSpec,
    Stat,
    VariantSummary,
    add_experiment_flags,
    command_line,
    curve,
    differences_to,
    execute_from_args,
    experiment_header,
    outputs_note,
    paired_values,
    parse_list,
    plan_runs,
    seeds_of,
    summary_json,
    summary_table,
    write_reports,
)
from simulations.experiment.speedup import mean_interval

ANCHOR_MODES = ("carry", "reinit")
FORGETTING_COLUMNS = (
    ("a-loss-before", "A loss after A"),
    ("a-loss-after", "A loss after B"),
    ("a-loss-increase", "A loss increase"),
    ("a-recall-before", "A recall after A"),
    ("a-recall-after", "A recall after B"),
    ("a-recall-drop", "A recall drop"),
    ("a-answer-loss-increase", "A answer-loss increase"),
    ("b-loss", "B loss after B"),
    ("b-answer-loss", "B answer loss after B"),
    ("b-recall", "B recall after B"),
)
# The paired differences given with a 95% interval: what forgetting and learning B cost.
INTERVAL_COLUMNS = tuple(
    (key, dict(FORGETTING_COLUMNS)[key])
    for key in ("a-answer-loss-increase", "a-recall-drop", "a-loss-increase", "b-answer-loss")
)


def parse_domains(text: str) -> tuple[str, str]:
    """``"facts:a,facts:b"`` -> ``("facts:a", "facts:b")``; exactly two distinct datasets."""
    domains = parse_list(text, "--domains")
    if len(domains) != 2:
        raise ValueError(f"--domains={text!r} is invalid: give exactly two datasets, A,B")
    return domains[0], domains[1]


def phase_b_spec(
    spec_a: RunSpec,
    out_b: Path,
    *,
    domain_b: str,
    rounds: int,
    anchors: str,
    settings: dict[str, Any] | None = None,
) -> RunSpec:
    """Phase B of ``spec_a``: its settings and ``settings`` (run-config keys), domain B,
    starting from phase A's outputs."""
    out_a = Path(spec_a.run.outputs.out_dir)
    fedaso = spec_a.run.federation.strategy == "fedaso"
    keep_anchors = anchors == "carry" and fedaso and spec_a.run.aso.uses_anchors
    run_b = spec_a.run.replace(
        dataset=domain_b,
        num_server_rounds=rounds,
        out_dir=str(out_b),
        initial_model=str(out_a / "model.pt"),
        initial_anchors=str(out_a / "anchors.npy") if keep_anchors else "",
        extra_eval_dataset=spec_a.run.data.dataset,
    )
    if settings:
        run_b = RunConfig.from_flat(run_b.to_flat() | settings)
    return RunSpec(spec_a.variant, spec_a.seed, run_b)


def plan_phases(
    args: argparse.Namespace, domains: tuple[str, str], seeds: Sequence[int]
) -> list[tuple[RunSpec, RunSpec]]:
    """(phase A, phase B) spec pairs for every strategy and seed."""
    variants = [
        type(v)(v.label, (*v.settings, ("dataset", domains[0])))
        for v in strategy_variants(args.strategies)
    ]
    specs_a = plan_runs(args, variants, seeds, args.out / "phase-a", experiment_dir=args.out)
    settings_b = parse_pairs(args.set_b, "--set-b")
    pairs = []
    for spec_a in specs_a:
        relative = Path(spec_a.run.outputs.out_dir).relative_to((args.out / "phase-a").resolve())
        out_b = (args.out / "phase-b" / relative).resolve()
        rounds_b = args.rounds_b or spec_a.run.federation.num_server_rounds
        pairs.append(
            (spec_a, phase_b_spec(spec_a, out_b, domain_b=domains[1], rounds=rounds_b,
                                  anchors=args.anchors, settings=settings_b))
        )  # fmt: skip
    return pairs


def forgetting_figures(result_a: RunResult, result_b: RunResult) -> dict[str, float | None]:
    """A's figures after A and after B, their changes, and B's own final figures."""

    def last(result: RunResult, key: str) -> float | None:
        return curve(result, "central", key)[-1]

    def change(after: float | None, before: float | None) -> float | None:
        return None if after is None or before is None else after - before

    figures = {
        "a-loss-before": last(result_a, "loss"),
        "a-loss-after": last(result_b, "extra-loss"),
        "a-recall-before": last(result_a, "fact-recall"),
        "a-recall-after": last(result_b, "extra-fact-recall"),
        "a-answer-loss-before": last(result_a, "fact-answer-loss"),
        "a-answer-loss-after": last(result_b, "extra-fact-answer-loss"),
        "b-loss": last(result_b, "loss"),
        "b-answer-loss": last(result_b, "fact-answer-loss"),
        "b-recall": last(result_b, "fact-recall"),
    }
    figures["a-loss-increase"] = change(figures["a-loss-after"], figures["a-loss-before"])
    recall_change = change(figures["a-recall-after"], figures["a-recall-before"])
    figures["a-recall-drop"] = None if recall_change is None else -recall_change
    figures["a-answer-loss-increase"] = change(
        figures["a-answer-loss-after"], figures["a-answer-loss-before"]
    )
    return figures


def figures_by_run(
    pairs: Sequence[tuple[RunResult, RunResult]],
) -> dict[tuple[str, int], dict[str, float | None]]:
    """``{(strategy, seed): forgetting figures}``."""
    return {(a.spec.variant, a.spec.seed): forgetting_figures(a, b) for a, b in pairs}


def summarize_forgetting(
    pairs: Sequence[tuple[RunResult, RunResult]],
) -> list[VariantSummary]:
    """Per strategy, the forgetting figures as mean and std over seeds."""
    per_strategy: dict[str, list[dict[str, float | None]]] = {}
    for (strategy, _), figures in figures_by_run(pairs).items():
        per_strategy.setdefault(strategy, []).append(figures)
    return [
        VariantSummary(name, {key: Stat.of([run[key] for run in runs]) for key in runs[0]})
        for name, runs in per_strategy.items()
    ]


def interval_table(
    differences: Mapping[str, Mapping[str, Sequence[float | None]]],
    columns: Sequence[tuple[str, str]] = INTERVAL_COLUMNS,
) -> str:
    """Markdown: per strategy, each column's paired difference as ``mean [95% CI]``.

    ``differences`` is :func:`simulations.experiment.paired_values`' output; seeds where
    either run lacks a figure are left out of that figure's interval.
    """
    lines = [
        "| strategy | " + " | ".join(title for _, title in columns) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for strategy, by_key in differences.items():
        cells = []
        for key, _ in columns:
            present = [v for v in by_key.get(key, []) if v is not None and math.isfinite(v)]
            cells.append(mean_interval(present).text() if present else "-")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


PROG = "python -m simulations.forgetting"


def build_parser(prog: str = PROG) -> CommandParser:
    """The command's flags: strategies, domains, phase B, and the experiment/engine flags."""
    parser = CommandParser(prog, __doc__)
    parser.add_argument("--strategies", default="fedaso,fedavg", help="comma-separated")
    parser.add_argument("--domains", default="facts:a,facts:b", help="datasets A,B")
    parser.add_argument(
        "--reference", default="fedavg", help="strategy for paired differences in summary.md"
    )
    parser.add_argument("--rounds-b", type=int, help="rounds of phase B (default: --rounds)")
    parser.add_argument(
        "--set-b", action="append", default=[], metavar="KEY=VALUE",
        help="a run-config key for phase B only, e.g. --set-b max-steps=2 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--anchors", choices=ANCHOR_MODES, default="carry",
        help="FedASO's phase B anchors: phase A's final set (carry) or k-means anew (reinit)",
    )  # fmt: skip
    add_experiment_flags(parser)
    add_run_flags(parser)
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Run phase A then B per strategy and seed; print the forgetting table."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        if args.dataset is not None:
            raise ValueError("--dataset is set per phase here: use --domains A,B")
        if args.rounds_b is not None and args.rounds_b < 1:
            raise ValueError(f"--rounds-b={args.rounds_b} is invalid: must be >= 1")
        pairs = plan_phases(args, parse_domains(args.domains), seeds_of(args))
    except ValueError as error:
        parser.error(str(error))
    specs = [spec for pair in pairs for spec in pair]  # A then B, pair by pair
    try:
        results = execute_from_args(specs, args)
    except (ValueError, RuntimeError) as error:
        return fail(prog, error)
    results_a, results_b = results[0::2], results[1::2]
    command = command_line(prog, argv)
    header = experiment_header(specs, args.num_clients, command)
    for phase, phase_results in (("a", results_a), ("b", results_b)):
        write_reports(
            args.out / f"phase-{phase}",
            phase_results,
            title=f"Forgetting, phase {phase.upper()} ({phase_results[0].spec.run.data.dataset})",
            header=header,
            target=args.target_loss,
            label="strategy",
        )
    result_pairs = list(zip(results_a, results_b, strict=True))
    summaries = summarize_forgetting(result_pairs)
    table = summary_table(summaries, "strategy", FORGETTING_COLUMNS)
    keys = [key for key, _ in FORGETTING_COLUMNS]
    figures = figures_by_run(result_pairs)
    differences = differences_to(figures, args.reference, keys)
    paired = (
        [
            f"Paired differences to {args.reference} (strategy minus {args.reference} on "
            "the same seed; mean ± std over seeds):",
            "",
            summary_table(differences, "strategy", FORGETTING_COLUMNS),
            "",
            "The same differences as mean [95% Student-t interval] over seeds:",
            "",
            interval_table(paired_values(figures, args.reference, keys)),
            "",
        ]
        if differences
        else []
    )
    domain_a, domain_b = results_a[0].spec.run.data.dataset, results_b[0].spec.run.data.dataset
    text = "\n".join(
        [
            "# Forgetting (report Table 4)",
            "",
            header,
            f"- phase A trains on `{domain_a}`, phase B continues on `{domain_b}` "
            f"({results_b[0].spec.run.federation.num_server_rounds} rounds; "
            f"anchors: {args.anchors}); "
            "A's figures are on A's central evaluation data",
            "",
            table,
            "",
            *paired,
            "Per-phase tables and curves: [phase A](phase-a/summary.md), "
            "[phase B](phase-b/summary.md) (`retention.png`: A's figures during phase B).",
            "",
        ]
    )
    write_text_atomically(args.out / "summary.md", text)
    summary = summary_json(summaries) | {f"minus-{args.reference}": summary_json(differences)}
    write_text_atomically(args.out / "summary.json", json.dumps(summary, indent=2))
    print(text)
    print(outputs_note(args.out, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
