"""``fedaso report``: one report over the finished runs of several commands, training nothing.

    fedaso report --from runs/tableA:plain,aso-probe+project-low --from runs/lr0.001 \\
        --reference "plain (tableA)" --out runs/plane

A table often joins commands that differ in a setting no variant names (a learning rate, a
proximal mu) or were run at different times. Every ``metrics.json`` that ``compare`` or
``central`` wrote under a ``--from`` folder (``VARIANT/seed-N/``, or ``VARIANT/`` for one
seed) is read back; ``FOLDER:V1,V2`` keeps only those variants. A variant that two folders
hold is labelled with its folder's name, ``plain (lr0.001)``. Only the seeds that every
variant ran are kept, so that every ratio and difference in the report stays paired.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedaso.config import RunConfig
from simulations.console import CommandParser, fail
from simulations.experiment import (
    RunResult,
    RunSpec,
    command_line,
    read_finished,
    write_reports,
)


@dataclass(frozen=True)
class Source:
    """One ``--from``: a folder of finished runs, and the variants to keep (all if empty)."""

    folder: Path
    variants: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Source:
        """``FOLDER`` or ``FOLDER:V1,V2``."""
        folder, _, names = text.partition(":")
        variants = tuple(name for name in names.split(",") if name)
        return cls(Path(folder), variants)


def finished(path: Path) -> tuple[RunConfig, dict[str, Any]]:
    """The run-config and metrics of the finished run whose ``metrics.json`` is ``path``."""
    metrics = read_finished(path)
    try:
        return RunConfig.from_flat(metrics["config"]), metrics
    except (ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"{path}: {error}") from error


def runs_in(source: Source) -> list[RunResult]:
    """The runs finished under ``source.folder``, by variant (as listed, else by name), seed."""
    if not source.folder.is_dir():
        raise ValueError(f"--from {source.folder}: no such folder")
    paths = sorted(source.folder.glob("*/metrics.json")) + sorted(
        source.folder.glob("*/seed-*/metrics.json")
    )
    results = []
    for path in paths:
        parts = path.relative_to(source.folder).parts
        variant, seed = parts[0], int(parts[1].removeprefix("seed-")) if len(parts) == 3 else 0
        if source.variants and variant not in source.variants:
            continue
        run, metrics = finished(path)
        results.append(RunResult(RunSpec(variant, seed, run), metrics))
    missing = sorted(set(source.variants) - {result.spec.variant for result in results})
    if missing:
        raise ValueError(f"--from {source.folder}: no finished runs of {', '.join(missing)}")
    if not results:
        raise ValueError(f"--from {source.folder}: no metrics.json under VARIANT/ or seed-N/")
    order = source.variants or tuple(sorted({result.spec.variant for result in results}))
    return sorted(results, key=lambda result: (order.index(result.spec.variant), result.spec.seed))


def labelled(groups: Sequence[tuple[Source, list[RunResult]]]) -> list[RunResult]:
    """All runs, a variant that several sources hold labelled ``variant (folder name)``."""
    holders: dict[str, int] = {}
    for _, results in groups:
        for variant in {result.spec.variant for result in results}:
            holders[variant] = holders.get(variant, 0) + 1
    joined = []
    for source, results in groups:
        for result in results:
            variant = result.spec.variant
            if holders[variant] > 1:
                variant = f"{variant} ({source.folder.name})"
            spec = RunSpec(variant, result.spec.seed, result.spec.run)
            joined.append(RunResult(spec, result.metrics))
    return joined


def paired(results: Sequence[RunResult]) -> tuple[list[RunResult], list[int]]:
    """The runs on seeds that every variant ran, and the seeds dropped; ValueError if none."""
    seeds: dict[str, set[int]] = {}
    for result in results:
        seeds.setdefault(result.spec.variant, set()).add(result.spec.seed)
    common = set.intersection(*seeds.values())
    if not common:
        raise ValueError(f"no seed that every variant ran: {sorted(seeds.items())}")
    dropped = sorted(set.union(*seeds.values()) - common)
    return [result for result in results if result.spec.seed in common], dropped


PROG = "python -m simulations.report"


def build_parser(prog: str = PROG) -> CommandParser:
    """The command's flags: the folders to read, the reference, the output folder."""
    parser = CommandParser(prog, __doc__)
    parser.add_argument(
        "--from",
        dest="sources",
        action="append",
        required=True,
        metavar="FOLDER[:V1,V2]",
        help="a compare/central output folder, optionally with the variants to keep",
    )
    parser.add_argument("--reference", required=True, help="variant the ratios are against")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--title", default="Report", help="the summary's title")
    parser.add_argument("--target-loss", type=float, help="central loss for rounds-to-target")
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Read the runs back, keep the paired seeds, write the report. Returns the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        sources = [Source.parse(text) for text in args.sources]
        results, dropped = paired(labelled([(source, runs_in(source)) for source in sources]))
        variants = list(dict.fromkeys(result.spec.variant for result in results))
        if args.reference not in variants:
            raise ValueError(f"--reference={args.reference!r} is not among {', '.join(variants)}")
    except ValueError as error:
        return fail(prog, error)
    seeds = sorted({result.spec.seed for result in results})
    header = "\n".join(
        [
            f"Command: `{command_line(prog, argv)}`",
            "",
            f"- finished runs read back from {', '.join(str(s.folder) for s in sources)}",
            f"- seeds {','.join(map(str, seeds))}"
            + (f" (dropped, not run by every variant: {dropped})" if dropped else ""),
        ]
    )
    write_reports(
        args.out,
        results,
        title=args.title,
        header=header,
        target=args.target_loss,
        reference=args.reference,
    )
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
