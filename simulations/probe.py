"""Does relevance find knowledge before any training? A grid of anchor settings, probed.

For every anchor seed, number of anchors M and temperature tau, the server's initial
anchors (k-means over the seed corpus, as a FedASO run starts) score the held-out
``facts`` tokens, and the mean relevance of fact-value tokens is set against that of
filler tokens (``fedaso.probe``). A ratio near 1 means Eq. 4 cannot emphasize knowledge:
relevance does not tell facts from filler. No federation runs, so the grid takes seconds.

    python -m simulations.probe --set model=hf:models/base --set facts-entities=8 \\
        --anchor-seeds generic,knowledge,knowledge-values --num-anchors 16,64,512 \\
        --taus 0.05,0.1,0.5
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fedaso.data import load_central
from fedaso.probe import relevance_by_token_kind
from fedaso.run_config import RunConfig
from simulations.console import CommandParser
from simulations.engine import format_table, resolve_run_config
from simulations.experiment import parse_list
from strategies.server_app import initial_anchors

PROG = "python -m simulations.probe"


def build_parser(prog: str = PROG) -> CommandParser:
    """The grid's flags and ``--set`` for any other run-config key."""
    parser = CommandParser(prog, __doc__)
    parser.add_argument("--anchor-seeds", default="generic,knowledge", help="comma-separated")
    parser.add_argument("--num-anchors", default="16,64,512", help="comma-separated M values")
    parser.add_argument("--taus", default="0.05,0.1,0.5", help="comma-separated temperatures")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any run-config key"
    )
    parser.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    return parser


def probe_grid(base: RunConfig, seeds: Sequence[str], anchors: Sequence[int],
               taus: Sequence[float]) -> list[list[object]]:  # fmt: skip
    """One row ``[seed, M, tau, fact, filler, ratio]`` per setting, under ``base``'s model."""
    model = base.build_model()
    rows: list[list[object]] = []
    for anchor_seed in seeds:
        for num_anchors in anchors:
            run = base.replace(anchor_seed=anchor_seed, num_anchors=num_anchors)
            central = load_central(run.data(num_partitions=1))
            if central.fact_probe is None:
                raise ValueError(f"dataset={run.dataset!r} has no facts to probe: use facts")
            initial = initial_anchors(model, central, run)
            for tau in taus:
                result = relevance_by_token_kind(
                    model, central.fact_probe, initial, tau=tau, kind=run.relevance
                )
                rows.append([anchor_seed, num_anchors, tau, result.fact, result.filler,
                             result.ratio])  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Probe every setting of the grid; print (and with ``--out`` write) the table."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        base = resolve_run_config(argparse.Namespace(set=args.set))
        seeds = parse_list(args.anchor_seeds, "--anchor-seeds")
        anchors = [int(value) for value in parse_list(args.num_anchors, "--num-anchors")]
        taus = [float(value) for value in parse_list(args.taus, "--taus")]
        rows = probe_grid(base, seeds, anchors, taus)
    except ValueError as error:
        parser.error(str(error))
    header = ["anchor-seed", "M", "tau", "fact relevance", "filler relevance", "fact / filler"]
    print(format_table(header, rows))
    if args.out is not None:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v)
                                    for v in row) + " |" for row in rows]  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
