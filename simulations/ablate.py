"""Ablations of ASO in federation (the report's Table 5), on identical partitions and seeds.

    python -m simulations.ablate --num-clients 50 --rounds 20 --seeds 0,1,2 --out runs/ablate

Runs full FedASO, then FedASO with one component removed (gradient projection, semantic
weighting with lambda = 0, online anchor updates), and FedAvg, with every other setting
equal. Writes the same outputs as ``simulations.compare`` (``metrics.csv``, ``summary.md``
with paired differences to full ASO, ``summary.json``, plots).
"""

from __future__ import annotations

import sys

from simulations.console import CommandParser, fail
from simulations.engine import add_run_flags
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


PROG = "python -m simulations.ablate"


def build_parser(prog: str = PROG) -> CommandParser:
    """The command's flags: the variants, and the experiment and engine flags."""
    parser = CommandParser(prog, __doc__)
    parser.add_argument(
        "--variants", default=",".join(ABLATIONS), help=f"subset of {', '.join(ABLATIONS)}"
    )
    add_experiment_flags(parser)
    add_run_flags(parser)
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Run every ablation on every seed; print summary.md. Returns the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        specs = plan_runs(args, chosen_variants(args.variants), seeds_of(args), args.out)
    except ValueError as error:
        parser.error(str(error))
    try:
        results = execute_from_args(specs, args)
    except (ValueError, RuntimeError) as error:
        return fail(prog, error)
    write_reports(
        args.out,
        results,
        title="Ablations (report Table 5)",
        header=experiment_header(specs, args.num_clients, command_line(prog, argv)),
        target=args.target_loss,
        recall_target=args.target_recall,
        label="configuration",
        reference=FULL,
    )
    print((args.out / "summary.md").read_text())
    print(outputs_note(args.out, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
