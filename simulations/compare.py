"""Run several strategies on identical partitions and seeds, and report them side by side.

    python -m simulations.compare --strategies fedaso,fedavg,fedprox,fedadam \
        --num-clients 200 --fraction-train 0.1 --rounds 30 --seeds 0,1,2 --out runs/compare

Each strategy runs as its own federation on Flower's simulation engine, with the same
run-config except ``strategy``: one seed gives every strategy the same data, partitions,
initial model and sampled clients. Writes into ``--out``:

- ``<strategy>/metrics.json`` (one seed) or ``<strategy>/seed-<s>/metrics.json`` (several);
- ``metrics.csv``: one row per strategy, seed and round;
- ``summary.md`` and ``summary.json``: final central loss, accuracy, fact recall and fact
  answer loss, rounds and local steps to a target loss, seconds and bytes per round, as
  mean +- std over seeds;
- ``central.png``, ``facts.png``, ``aso.png``: per-round curves, bands over seeds.
"""

from __future__ import annotations

import sys

from fedaso.run_config import STRATEGIES
from simulations.console import CommandParser, fail
from simulations.engine import add_run_flags, format_table
from simulations.experiment import (
    Variant,
    add_experiment_flags,
    command_line,
    execute_from_args,
    experiment_header,
    outputs_note,
    parse_list,
    plan_runs,
    seeds_of,
    write_reports,
)


def strategy_variants(text: str) -> list[Variant]:
    """``"fedaso,fedavg"`` -> one variant per strategy; ValueError for an unknown one."""
    strategies = parse_list(text, "--strategies")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(
            f"--strategies={text!r} is invalid: {', '.join(unknown)} not in {', '.join(STRATEGIES)}"
        )
    return [Variant(s, (("strategy", s),)) for s in strategies]


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
        label="strategy",
        reference=args.reference,
    )
    keys = list(summaries[0].figures)
    rows = [[key, *(s.figures[key].text() for s in summaries)] for key in keys]
    print(f"\nFinal central evaluation on {specs[0].run.dataset}:")
    print(format_table(["figure", *(s.variant for s in summaries)], rows))
    print(outputs_note(args.out, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
