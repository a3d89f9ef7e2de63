"""Run several strategies on identical partitions and seeds, and print them side by side.

    python -m simulations.compare --strategies fedaso,fedavg --num-clients 20 --rounds 3 \
        --dataset facts --out runs/compare

Each strategy runs as its own federation on Flower's simulation engine, with the same
run-config except ``strategy``; ``DIR/<strategy>/metrics.json`` holds each run's metrics and
``DIR/summary.json`` the final figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from simulations.engine import (
    add_run_flags,
    format_table,
    resolve_run_config,
    round_rows,
    simulate,
)

SUMMARY_KEYS = ("loss", "accuracy", "fact-recall", "fact-answer-loss")


def final_figures(metrics: dict) -> dict:
    """The last round's central evaluation, mean relevance and time per round."""
    rounds = metrics["rounds"]
    last = rounds[-1]
    trained = [r for r in rounds if r["round"] > 0]
    figures = {key: last["central"].get(key) for key in SUMMARY_KEYS}
    figures["initial-loss"] = rounds[0]["central"].get("loss")
    figures["mean-relevance"] = last["train"].get("mean-relevance")
    seconds = [r["central"].get("round-seconds", 0.0) for r in trained]
    figures["seconds-per-round"] = sum(seconds) / max(len(seconds), 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulations.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--strategies", default="fedaso,fedavg", help="comma-separated")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    add_run_flags(parser)
    args = parser.parse_args(argv)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    try:
        runs = {
            s: resolve_run_config(args, strategy=s, **{"out-dir": str((args.out / s).resolve())})
            for s in strategies
        }
    except ValueError as error:
        parser.error(str(error))
    summary = {}
    for strategy, run in runs.items():
        print(f"=== {strategy}: {args.num_clients} clients, {run.num_server_rounds} rounds ===")
        metrics = simulate(run, num_clients=args.num_clients, client_cpus=args.client_cpus)
        rows = round_rows(metrics)
        print(f"\n{strategy}:\n" + format_table(list(rows[0]), [list(r.values()) for r in rows]))
        summary[strategy] = final_figures(metrics)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    header = ["figure", *strategies]
    keys = list(next(iter(summary.values())))
    rows = [[key, *(summary[s][key] for s in strategies)] for key in keys]
    print(f"\nFinal central evaluation on {next(iter(runs.values())).dataset}:")
    print(format_table(header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
