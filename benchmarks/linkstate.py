"""One polling sweep of Flower's in-memory link state: Flower's lookup vs the indexed one.

    python -m benchmarks.linkstate [--num-clients 50,200,500] [--repeats 5]

Flower's simulation engine polls the link state once per node every 0.1 s. This builds
Flower's real state as ``run_simulation`` does
(``tests.unit.simulations.test_linkstate.populated_state``), with one delivered instruction
per node in flight, as during a round, and times a sweep of every node's poll with Flower's
``get_message_ins`` and with ``simulations.linkstate.get_message_ins_for_node``,
interleaved, and prints medians and their ratio. A sweep that takes longer than 0.1 s means
the driver never rests.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import flwr

from benchmarks.common import require_positive, spread
from simulations.console import HelpFormatter
from simulations.linkstate import FLOWER_LOOKUP, get_message_ins_for_node
from tests.unit.simulations.test_linkstate import populated_state

SWEEPS = 5  # sweeps timed per measurement


def sweep_seconds(num_nodes: int, lookup: Callable, *, indexed: bool) -> float:
    """Seconds of one polling sweep over ``num_nodes`` nodes (mean of ``SWEEPS``)."""
    state, nodes, _ = populated_state(num_nodes=num_nodes, per_node=1, indexed=indexed)
    for node in nodes:  # deliver: the instructions stay stored until their replies come
        lookup(state, node, limit=1)
    started = time.perf_counter()
    for _ in range(SWEEPS):
        for node in nodes:
            lookup(state, node, limit=1)
    return (time.perf_counter() - started) / SWEEPS


def main(argv: list[str] | None = None) -> int:
    """Print, per N, the sweep time of both lookups and their ratio."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.linkstate", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("--num-clients", default="50,200,500", help="comma-separated N")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.num_clients.split(",")]
    require_positive(parser, args, ["repeats"])
    print(f"flwr {flwr.__version__}: one polling sweep over N nodes, in ms")
    for size in sizes:
        flower, indexed = [], []
        for _ in range(args.repeats):
            flower.append(sweep_seconds(size, FLOWER_LOOKUP, indexed=False))
            indexed.append(sweep_seconds(size, get_message_ins_for_node, indexed=True))
        ratio = statistics.median(flower) / statistics.median(indexed)
        print(
            f"N={size}: Flower {spread(flower, scale=1e3)}, "
            f"indexed {spread(indexed, scale=1e3)}, ratio of medians {ratio:.0f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
