"""Run several strategies on identical partitions and seeds, and report them side by side.

    python -m simulations.compare --strategies fedaso,fedavg,fedprox,fedadam \
        --num-clients 200 --fraction-train 0.1 --rounds 30 --seeds 0,1,2 --out runs/compare

``fedaso:WEIGHT`` runs FedASO with another ``aggregation-weight``: ``fedaso:examples`` is
FedASO's local training aggregated by example counts instead of Eq. 7's relevance.

Each strategy runs as its own federation on Flower's simulation engine, with the same
run-config except ``strategy``: one seed gives every strategy the same data, partitions,
initial model and sampled clients. Writes into ``--out``:

- ``<strategy>/metrics.json`` (one seed) or ``<strategy>/seed-<s>/metrics.json`` (several);
- ``metrics.csv``: one row per strategy, seed and round;
- ``summary.md`` and ``summary.json``: final central loss, accuracy, fact recall and fact
  answer loss, rounds and local steps to a target loss, rounds to a target fact recall,
  fact vs filler token relevance (FedASO), seconds and bytes per round, as mean +- std
  over seeds;
- ``central.png``, ``facts.png``, ``aso.png``: per-round curves, bands over seeds.
"""

from __future__ import annotations

import sys
from typing import Any

from fedaso.aso.aggregation import AGGREGATION_WEIGHTS
from fedaso.config.federation import STRATEGIES
from simulations.console import CommandParser, fail
from simulations.engine import add_run_flags
from simulations.experiment import (
    Variant,
    add_experiment_flags,
    command_line,
    execute_from_args,
    experiment_header,
    figures_table,
    outputs_note,
    parse_list,
    plan_runs,
    seeds_of,
    write_reports,
)
from simulations.experiment.variants import joined_variant


def strategy_variants(text: str) -> list[Variant]:
    """``"fedaso,fedavg"`` -> one variant per strategy; ValueError for an unknown one.

    ``fedaso:WEIGHT`` is FedASO with ``aggregation-weight = WEIGHT`` (e.g. ``fedaso:examples``,
    Eq. 7 replaced by example counts), labelled ``fedaso-WEIGHT``. ``+NAME`` joins FedASO
    with ASO's named variants (``simulations.experiment.variants``): ``fedaso+aso-probe``
    is FedASO whose relevance comes from the server's probe.
    """
    return [strategy_variant(item, text) for item in parse_list(text, "--strategies")]


def strategy_variant(item: str, text: str) -> Variant:
    """One ``--strategies`` item: ``STRATEGY[:WEIGHT][+VARIANT...]``."""
    head, *joined = item.split("+")
    strategy, _, weight = head.partition(":")
    if strategy not in STRATEGIES or ((weight or joined) and strategy != "fedaso"):
        raise ValueError(
            f"--strategies={text!r} is invalid: {item!r} is not one of "
            f"{', '.join(STRATEGIES)}, fedaso:WEIGHT or fedaso+VARIANT"
        )
    if weight and weight not in AGGREGATION_WEIGHTS:
        raise ValueError(
            f"--strategies={text!r} is invalid: {item!r} names no aggregation weight "
            f"({', '.join(AGGREGATION_WEIGHTS)})"
        )
    settings: dict[str, Any] = {"strategy": strategy}
    if weight:
        settings["aggregation-weight"] = weight
    if joined:
        try:
            variant = joined_variant("+".join(joined), "--strategies")
        except ValueError as error:
            raise ValueError(f"--strategies={text!r} is invalid: {error}") from None
        settings |= dict(variant.settings)
        if settings["strategy"] != "fedaso":  # e.g. fedaso+plain: not a variant of FedASO
            raise ValueError(f"--strategies={text!r} is invalid: {item!r} is not FedASO")
    label = item.replace(":", "-")
    return Variant(label, tuple(settings.items()))


PROG = "python -m simulations.compare"


def build_parser(prog: str = PROG) -> CommandParser:
    """The command's flags: strategies, reference, and the experiment and engine flags."""
    parser = CommandParser(prog, __doc__)
    parser.add_argument("--strategies", default="fedaso,fedavg", help="comma-separated")
    parser.add_argument(
        "--reference", default="fedavg", help="strategy for paired differences in summary.md"
    )
    add_experiment_flags(parser)
    add_run_flags(parser)
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Run every strategy on every seed; print the side-by-side table. Returns the status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        specs = plan_runs(args, strategy_variants(args.strategies), seeds_of(args), args.out)
    except ValueError as error:
        parser.error(str(error))
    try:
        results = execute_from_args(specs, args, show_rounds=True)
    except (ValueError, RuntimeError) as error:
        return fail(prog, error)
    summaries = write_reports(
        args.out,
        results,
        title="Strategy comparison",
        header=experiment_header(specs, args.num_clients, command_line(prog, argv)),
        target=args.target_loss,
        recall_target=args.target_recall,
        label="strategy",
        reference=args.reference,
    )
    print(f"\nFinal central evaluation on {specs[0].run.data.dataset}:")
    print(figures_table(summaries))
    print(outputs_note(args.out, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
