"""Run one simulated federation and print its per-round metrics.

    python -m simulations.run --strategy fedaso --num-clients 20 --rounds 3 \
        --dataset facts --out runs/fedaso

writes ``runs/fedaso/metrics.json`` (resolved config; per round the aggregated client train
metrics, the central evaluation and wall seconds) and prints a per-round table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fedaso.config import RunConfig
from simulations.console import CommandParser, fail
from simulations.engine import (
    EngineOptions,
    add_run_flags,
    format_table,
    resolve_run_config,
    round_rows,
)
from simulations.experiment.runner import Progress, RunSpec, execute

PROG = "python -m simulations.run"


def build_parser(prog: str = PROG) -> CommandParser:
    """The command's flags: the strategy, the output folder and the engine's flags."""
    parser = CommandParser(prog, __doc__)
    parser.add_argument(
        "--strategy",
        help=f"fedaso | fedavg | fedprox | fedadam (default: {RunConfig().federation.strategy})",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    add_run_flags(parser)
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Run one federation; print its per-round table. Returns the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        run = resolve_run_config(args, **{"out-dir": str(args.out.resolve())})
    except ValueError as error:
        parser.error(str(error))
    spec = RunSpec(run.federation.strategy, run.federation.seed, run)
    try:
        (result,) = execute([spec], EngineOptions.from_args(args), progress=Progress([spec]))
    except (ValueError, RuntimeError) as error:
        return fail(prog, error)
    metrics = result.metrics
    rows = round_rows(metrics)
    print(f"\n{run.federation.strategy} on {run.data.dataset}, {args.num_clients} clients:")
    print(format_table(list(rows[0]), [list(r.values()) for r in rows]))
    print(f"wall seconds: {metrics['wall-seconds']:.1f}; metrics: {args.out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
