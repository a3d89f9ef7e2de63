"""``python -m benchmarks NAME [flags]`` (also ``fedaso bench NAME``): run one benchmark.

The benchmarks measure the simulation engine and the core, so they import ``simulations``
and ``fedaso``; nothing there imports them. ``fedaso bench`` runs this module as a child
process (``simulations.cli``) rather than importing it, which keeps the dependency one-way.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from simulations.cli import Command, dispatch

BENCHMARKS = {
    "aso-overhead": Command("benchmarks.aso_overhead", "ASO's local step over a plain one"),
    "simulation": Command("benchmarks.simulation", "the simulation engine vs the compute floor"),
    "dp": Command("benchmarks.dp", "DP-SGD's local step over ASO's"),
    "linkstate": Command("benchmarks.linkstate", "Flower's message lookup vs the indexed one"),
    "deployment": Command("benchmarks.deployment", "seconds per round on the Deployment Engine"),
    "reply-checks": Command("benchmarks.reply_checks", "the server's reply checks vs averaging"),
}


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks") -> int:
    """Run the benchmark named by ``argv[0]`` with the rest of ``argv``; returns the status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments and arguments[0] in BENCHMARKS:
        run: Callable[..., int] = importlib.import_module(BENCHMARKS[arguments[0]].module).main
        return run(arguments[1:])
    description = "Performance benchmarks; each prints ratios measured side by side."
    return dispatch(prog, BENCHMARKS, arguments, description)  # help, or an unknown name


if __name__ == "__main__":
    sys.exit(main())
