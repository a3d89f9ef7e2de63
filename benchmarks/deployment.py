"""Seconds per deployed round on Flower's Deployment Engine, for one or more app folders.

    python -m benchmarks.deployment [--apps DIR,DIR] [--rounds 4] [--supernodes 2]

Starts a real ``flower-superlink`` and ``--supernodes`` ``flower-supernode`` processes on
localhost (``tests/deployment.py``), then submits each app folder (default: this
repository) with ``flwr run DIR --stream``, one after another on the same federation, and
reads each run's ``metrics.json``: a round's wall time is the ServerApp's ``round-seconds``
(from the end of one central evaluation to the start of the next: sending, the clients'
work, replies). Round 1 is reported apart (the SuperNodes' first FAB install). Every
process is stopped by its pid at the end. Give an older checkout of the app as a second
folder to measure a change side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.common import require_positive
from simulations.console import HelpFormatter
from tests.deployment import ROOT, start_superlink, start_supernode

TINY = "model-width=32 model-heads=2 num-anchors=16 seq-len=32 facts-entities=12 local-epochs=1"


def run_app(federation, app: Path, out: Path, rounds: int) -> list[float]:
    """Submit ``app`` for ``rounds`` rounds; return each round's ``round-seconds``."""
    config = f"num-server-rounds={rounds} fraction-train=1.0 out-dir='{out}' {TINY}"
    done = federation.flwr("run", str(app), "site", "--stream", "--format", "json",
                           "--run-config", config)  # fmt: skip
    if done.returncode != 0 or not (out / "metrics.json").is_file():
        raise RuntimeError(f"run of {app} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    rounds_ = json.loads((out / "metrics.json").read_text())["rounds"]
    return [r["central"]["round-seconds"] for r in rounds_ if r["round"] > 0]


def main(argv: list[str] | None = None) -> int:
    """Print seconds per deployed round of each app folder."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.deployment", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("--apps", default=str(ROOT), help="comma-separated app folders")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per run")
    parser.add_argument("--supernodes", type=int, default=2, help="SuperNodes (partitions)")
    args = parser.parse_args(argv)
    require_positive(parser, args, ["rounds", "supernodes"])
    apps = [Path(app).resolve() for app in args.apps.split(",")]
    with tempfile.TemporaryDirectory(prefix="fedaso-deploy-") as tmp:
        federation = start_superlink(Path(tmp) / "link")
        try:
            for partition in range(args.supernodes):
                start_supernode(federation, partition, args.supernodes)
            for index, app in enumerate(apps):
                seconds = run_app(federation, app, Path(tmp) / f"out-{index}", args.rounds)
                later = seconds[1:] or seconds
                print(
                    f"{app}: round 1 {seconds[0]:.1f} s; rounds 2-{len(seconds)}: mean "
                    f"{statistics.mean(later):.2f} s per round "
                    f"({', '.join(f'{s:.1f}' for s in later)})",
                    flush=True,
                )
        finally:
            federation.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
