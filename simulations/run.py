"""Run one simulated federation and print its per-round metrics.

    python -m simulations.run --strategy fedaso --num-clients 20 --rounds 3 \
        --dataset facts --out runs/fedaso

writes ``runs/fedaso/metrics.json`` (resolved config; per round the aggregated client train
metrics, the central evaluation and wall seconds) and prints a per-round table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulations.engine import add_run_flags, format_table, resolve_run_config, round_rows, simulate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulations.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--strategy", help="fedaso | fedavg | fedprox | fedadam")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    add_run_flags(parser)
    args = parser.parse_args(argv)
    try:
        run = resolve_run_config(args, **{"out-dir": str(args.out.resolve())})
    except ValueError as error:
        parser.error(str(error))
    metrics = simulate(
        run,
        num_clients=args.num_clients,
        client_cpus=args.client_cpus,
        client_gpus=args.client_gpus,
    )
    rows = round_rows(metrics)
    header = list(rows[0])
    print(f"\n{run.strategy} on {run.dataset}, {args.num_clients} clients:")
    print(format_table(header, [list(r.values()) for r in rows]))
    print(f"wall seconds: {metrics['wall-seconds']:.1f}; metrics: {args.out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
