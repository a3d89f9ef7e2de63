"""Ablations of ASO in federation (the report's Table 5), on identical partitions and seeds.

    python -m simulations.ablate --num-clients 50 --rounds 20 --seeds 0,1,2 --out runs/ablate

Runs full FedASO, then FedASO with one component removed (gradient projection, semantic
weighting with lambda = 0, online anchor updates), and FedAvg, with every other setting
equal. Writes the same outputs as ``simulations.compare`` (``metrics.csv``, ``summary.md``
with paired differences to full ASO, ``summary.json``, plots).
"""

from __future__ import annotations

import argparse
import sys

from simulations.engine import add_run_flags
from simulations.experiment import (
    Variant,
    add_experiment_flags,
    command_line,
    execute_from_args,
    experiment_header,
    parse_list,
    plan_runs,
    seeds_of,
    write_reports,
)

FULL = "full-aso"
ABLATIONS: dict[str, Variant] = {
    variant.label: variant
    for variant in (
        Variant(FULL, (("strategy", "fedaso"),)),
        Variant("no-projection", (("strategy", "fedaso"), ("project-gradients", False))),
        Variant("lambda-0", (("strategy", "fedaso"), ("aso-lambda", 0.0))),
        Variant("static-anchors", (("strategy", "fedaso"), ("update-anchors", False))),
        Variant("fedavg", (("strategy", "fedavg"),)),
    )
}


def chosen_variants(text: str) -> list[Variant]:
    """The ablations named in ``text`` (comma-separated), in the given order."""
    names = parse_list(text, "--variants")
    unknown = [name for name in names if name not in ABLATIONS]
    if unknown:
        raise ValueError(
            f"--variants={text!r} is invalid: {', '.join(unknown)} not in {', '.join(ABLATIONS)}"
        )
    return [ABLATIONS[name] for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulations.ablate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--variants", default=",".join(ABLATIONS), help=f"subset of {', '.join(ABLATIONS)}"
    )
    add_experiment_flags(parser)
    add_run_flags(parser)
    args = parser.parse_args(argv)
    try:
        specs = plan_runs(args, chosen_variants(args.variants), seeds_of(args), args.out)
    except ValueError as error:
        parser.error(str(error))
    results = execute_from_args(specs, args)
    command = command_line("simulations.ablate", argv)
    write_reports(
        args.out,
        results,
        title="Ablations (report Table 5)",
        header=experiment_header(specs, args.num_clients, command),
        target=args.target_loss,
        label="configuration",
        reference=FULL,
    )
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
