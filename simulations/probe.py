"""Does relevance find knowledge? The fact vs filler probe over anchor settings, or a run.

For every anchor seed, number of anchors M and temperature tau, the server's initial
anchors (k-means over the seed corpus, as a FedASO run starts) score the held-out
``facts`` tokens, and the mean relevance of fact-value tokens is set against that of
filler tokens (``fedaso.training.fact_relevance``), beside the AUROC of relevance for fact
tokens against all others and Eq. 4's relative weight ``(1 + lambda s_fact) / (1 + lambda s_other)``
(with the run's ``aso-lambda``). An AUROC near 0.5 or a weight ratio near 1 means Eq. 4
cannot emphasize knowledge: relevance does not tell facts from filler. No federation
runs, so the grid takes seconds. With ``--set relevance-source=probe`` a last row scores
the logistic probe the server would fit on the public documents (docs/SPEC.md section 13).

    python -m simulations.probe --set model=hf:models/base --set facts-entities=8 \\
        --anchor-seeds generic,knowledge,knowledge-values --num-anchors 16,64,512 \\
        --taus 0.05,0.1,0.5

With ``--run DIR`` (a finished FedASO run's ``out-dir``) it asks instead why relevance
changed during that run: the probe under the initial and the final model, each with the
initial and the final anchors, so that a drift of the model is told from one of the anchors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from fedaso.config import RunConfig
from fedaso.data import load_central
from fedaso.models import embedding_width_of
from fedaso.training.fact_relevance import (
    FactRelevance,
    fit_probe_on_public,
    relevance_by_token_kind,
)
from simulations.console import CommandParser
from simulations.engine import format_table, resolve_run_config
from simulations.experiment import parse_list
from strategies.anchor_init import initial_anchors
from strategies.initial_files import load_anchors_file, load_model_file

PROG = "python -m simulations.probe"


# The columns of :func:`_figures`.
FIGURES = ["fact relevance", "filler relevance", "fact / filler", "weight ratio", "AUROC"]


def _figures(result: FactRelevance, run: RunConfig) -> list[object]:
    """The probe's figures: means, their ratio, Eq. 4's weight ratio under Adam, AUROC."""
    weight_ratio = result.weight_ratio(run.aso.aso_lambda)
    return [result.fact, result.filler, result.ratio, weight_ratio, result.auroc]


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
    parser.add_argument("--run", type=Path, help="a finished FedASO run's out-dir to probe")
    return parser


def probe_grid(base: RunConfig, seeds: Sequence[str], anchors: Sequence[int],
               taus: Sequence[float]) -> list[list[object]]:  # fmt: skip
    """One row ``[seed, M, tau, *figures]`` per setting, under ``base``'s model.

    ``figures`` are :func:`_figures`' fact and filler means, their ratio, Eq. 4's weight
    ratio at ``base.aso.aso_lambda`` and the AUROC.
    """
    model = base.build_model()
    rows: list[list[object]] = []
    for anchor_seed in seeds:
        for num_anchors in anchors:
            # R plays no part in relevance; 0 takes the model's default below this M.
            run = base.replace(anchor_seed=anchor_seed, num_anchors=num_anchors, subspace_rank=0)
            central = load_central(run.data_config(num_partitions=1))
            if central.fact_probe is None:
                raise ValueError(f"dataset={run.data.dataset!r} has no facts to probe: use facts")
            initial = initial_anchors(model, central, run)
            for tau in taus:
                result = relevance_by_token_kind(
                    model, central.fact_probe, initial, tau=tau, kind=run.aso.relevance
                )
                rows.append([anchor_seed, num_anchors, tau, *_figures(result, run)])
    if base.aso.relevance_source == "probe":
        rows.append(["(probe)", "-", "-", *_figures(logistic_probe_relevance(model, base), base)])
    return rows


def logistic_probe_relevance(model: nn.Module, run: RunConfig) -> FactRelevance:
    """The held-out probe scored by ``relevance-source = probe``'s logistic probe, fitted
    on the public documents under ``model`` as the server would."""
    central = load_central(run.data_config(num_partitions=1))
    if central.fact_probe is None or central.public_fact_probe is None:
        raise ValueError(f"dataset={run.data.dataset!r} has no facts to probe: use facts")
    fitted = fit_probe_on_public(model, central.public_fact_probe, seed=run.federation.seed)
    return relevance_by_token_kind(model, central.fact_probe, None, tau=run.aso.aso_tau,
                                   relevance_probe=fitted)  # fmt: skip


def probe_run(run_dir: Path) -> list[list[object]]:
    """Rows ``[model, anchors, *figures]`` for the initial/final model x anchors."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run = RunConfig.from_flat({k: v for k, v in metrics["config"].items() if k != "out-dir"})
    central = load_central(run.data_config(num_partitions=1))
    if central.fact_probe is None:
        raise ValueError(f"--run {run_dir}: dataset={run.data.dataset!r} has no facts to probe")
    torch.manual_seed(run.federation.seed)  # the ServerApp's seeding: the same initial model
    initial_model, final_model = run.build_model(), run.build_model()
    load_model_file(str(run_dir / "model.pt"), final_model, key="--run")
    anchors = {"initial": initial_anchors(initial_model, central, run)}
    if run.aso.uses_anchors:  # a run without anchors (the probe without Eq. 5) left none
        anchors["final"] = load_anchors_file(
            str(run_dir / "anchors.npy"),
            num_anchors=run.aso.num_anchors,
            width=embedding_width_of(final_model),
            key="--run",
        )
    rows: list[list[object]] = []
    for model_name, model in (("initial", initial_model), ("final", final_model)):
        for anchor_name, anchor_set in anchors.items():
            result = relevance_by_token_kind(
                model, central.fact_probe, anchor_set, tau=run.aso.aso_tau, kind=run.aso.relevance
            )
            rows.append([model_name, anchor_name, *_figures(result, run)])
        if run.aso.relevance_source == "probe":  # the probe the server fitted under this model
            rows.append(
                [model_name, "(probe)", *_figures(logistic_probe_relevance(model, run), run)]
            )
    return rows


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Probe every setting of the grid; print (and with ``--out`` write) the table."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.run is not None:
        try:
            rows = probe_run(args.run)
        except (OSError, ValueError) as error:
            parser.error(str(error))
        return _report(["model", "anchors", *FIGURES], rows, args.out)
    try:
        base = resolve_run_config(argparse.Namespace(set=args.set))
        seeds = parse_list(args.anchor_seeds, "--anchor-seeds")
        anchors = [int(value) for value in parse_list(args.num_anchors, "--num-anchors")]
        taus = [float(value) for value in parse_list(args.taus, "--taus")]
        rows = probe_grid(base, seeds, anchors, taus)
    except ValueError as error:
        parser.error(str(error))
    return _report(["anchor-seed", "M", "tau", *FIGURES], rows, args.out)


def _report(header: list[str], rows: list[list[object]], out: Path | None) -> int:
    """Print the table; with ``out``, also write it as Markdown."""
    print(format_table(header, rows))
    if out is not None:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v)
                                    for v in row) + " |" for row in rows]  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
