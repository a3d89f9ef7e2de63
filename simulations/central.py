"""Central ASO training, without Flower: issue 18's Table A (the report's Tables 2 and 5).

    fedaso central --variants plain,aso,aso-probe,aso-oracle --seeds 0,1,2 --rounds 30 \\
        --set model=hf:models/base --set dataset=facts --prose-eval --out runs/central

One site holds every training document. It trains in rounds of ``local-epochs`` epochs
with the very trainer a FedASO client runs (``fedaso.training.train_local``); between
rounds the server's side of the relevance source runs as in a federation
(``anchors-refit`` re-fits the anchors over the seed corpus, ``probe`` re-fits its probe
on the public documents, Eq. 1's anchors are the site's own), and the model is evaluated
centrally as the ServerApp does (``strategies.central_eval``). It is a one-site federation
without the engine, so that a table of ten seeds takes minutes, not hours.

Writes what ``fedaso compare`` writes (``<variant>/seed-<s>/metrics.json``,
``metrics.csv``, ``summary.md`` and ``summary.json``, plots), with the speed-up table:
rounds to an answer-loss target, interpolated, as a paired ratio to ``--reference`` with a
95% interval. ``--prose-eval`` adds the perplexity on the base model's held-out pretraining
prose to every evaluation (``prose-perplexity``): forgetting, Table C.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fedaso.config import RunConfig
from fedaso.config.training import resolve_device
from fedaso.data import CentralData, TensorSplit, load_central, load_partition
from fedaso.data.tokens import load_codec
from fedaso.durable import write_text_atomically
from fedaso.models.arrays import model_to_arrays
from fedaso.training.evaluate import evaluate
from fedaso.training.trainer import train_local
from simulations.console import CommandParser, fail
from simulations.experiment import (
    RunResult,
    RunSpec,
    command_line,
    finished_metrics,
    parse_seeds,
    plan_runs,
    write_reports,
)
from simulations.experiment.variants import ASO_VARIANTS, chosen_variants
from strategies.factory import PublicDocumentProbe, SeedCorpusRefit

DEFAULT_VARIANTS = "plain,aso,aso-refit,aso-probe,aso-oracle"


@dataclass(frozen=True)
class ServerSide:
    """What the server of a federation would do between rounds, for one relevance source."""

    refit: SeedCorpusRefit | None = None  # anchors-refit: k-means over the seed corpus
    fit_probe: PublicDocumentProbe | None = None  # probe: the logistic probe's fit

    @classmethod
    def of(cls, run: RunConfig, central: CentralData) -> ServerSide:
        """The server's fits that ``run``'s relevance source needs (none for plain runs)."""
        aso = run.local_aso()
        if aso is None:
            return cls()
        if aso.relevance_source == "anchors-refit":
            return cls(refit=SeedCorpusRefit(run, central))
        if aso.relevance_source == "probe":
            return cls(fit_probe=PublicDocumentProbe(run, central))
        return cls()


def central_run(run: RunConfig, *, prose: TensorSplit | None = None) -> dict[str, Any]:
    """Train ``run`` centrally for its rounds; return metrics in ``metrics.json``'s shape.

    Round 0 is the initial model. Each round records the central evaluation, the training
    figures, and the local steps taken (``traffic.local-steps``), as a federation's do.
    """
    from clients.client_app import client_seed
    from strategies.central_eval import central_metrics
    from strategies.initial_files import starting_point

    started = time.perf_counter()
    torch.manual_seed(run.federation.seed)
    data_config = run.data_config(num_partitions=1)
    central = load_central(data_config)
    train_split = load_partition(data_config, 0).train
    model, anchors = starting_point(run, central)
    model.to(resolve_device(run.training.device))
    aso, server = run.local_aso(), ServerSide.of(run, central)
    codec = load_codec(data_config.tokenizer)
    probe = server.fit_probe(model_to_arrays(model)) if server.fit_probe else None

    def evaluation() -> dict[str, float]:
        metrics = central_metrics(model, central, run.data.dataset, codec, anchors, run, probe)
        if prose is not None:
            metrics["prose-perplexity"] = math.exp(min(evaluate(model, prose).loss, 50.0))
        return metrics

    rounds: list[dict[str, Any]] = [{"round": 0, "central": evaluation(), "train": {}}]
    for server_round in range(1, run.federation.num_server_rounds + 1):
        round_started = time.perf_counter()
        result = train_local(
            model,
            train_split,
            anchors=None if anchors is None else torch.from_numpy(anchors),
            aso=aso,
            train=run.training,
            seed=client_seed(run, server_round, 0),
            proximal_mu=run.federation.applied_proximal_mu,
            relevance_probe=probe,
        )
        if aso is not None and anchors is not None:
            if server.refit is not None:
                anchors = server.refit(model_to_arrays(model), anchors)
            elif result.anchors is not None:
                anchors = result.anchors.numpy()
        if server.fit_probe is not None:
            probe = server.fit_probe(model_to_arrays(model))
        central_figures = evaluation()
        central_figures["round-seconds"] = time.perf_counter() - round_started
        train_figures = {"train-loss": result.train_loss}
        if aso is not None:
            train_figures["mean-relevance"] = result.mean_relevance
        rounds.append(
            {
                "round": server_round,
                "central": central_figures,
                "train": train_figures,
                "traffic": {"local-steps": result.num_steps},
            }
        )
    return {
        "config": run.to_flat(),
        "rounds": rounds,
        "num-clients": 1,
        "wall-seconds": time.perf_counter() - started,
    }


def prose_windows(run: RunConfig) -> TensorSplit:
    """The base's held-out pretraining prose under ``run``'s tokenizer (``--prose-eval``)."""
    from transformers import AutoTokenizer

    from simulations.tools.pretraining import held_out_windows

    tokenizer_path = run.data_config(num_partitions=1).tokenizer
    if not tokenizer_path:
        raise ValueError("--prose-eval needs an hf: model with its tokenizer (model=hf:DIR)")
    windows = held_out_windows(AutoTokenizer.from_pretrained(tokenizer_path), run.data.seq_len)
    return TensorSplit(inputs=windows[:, :-1], targets=windows[:, 1:])


def execute_central(specs: Sequence[RunSpec], *, resume: bool, prose_eval: bool) -> list[RunResult]:
    """Run ``specs`` one after another (or read them back with ``resume``); one line each."""
    prose = prose_windows(specs[0].run) if prose_eval else None
    results = []
    for index, spec in enumerate(specs, start=1):
        label = f"run {index}/{len(specs)} {spec.variant} seed {spec.seed}"
        metrics = finished_metrics(spec) if resume else None
        if metrics is None:
            metrics = central_run(spec.run, prose=prose)
            out = Path(spec.run.outputs.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            write_text_atomically(out / "metrics.json", json.dumps(metrics, indent=2))
            final = metrics["rounds"][-1]["central"]
            print(
                f"{label}: {metrics['wall-seconds']:.0f} s, fact recall "
                f"{final.get('fact-recall', float('nan')):.3f}, answer loss "
                f"{final.get('fact-answer-loss', float('nan')):.3f}",
                file=sys.stderr,
                flush=True,
            )
        else:
            print(f"{label}: reused from {spec.run.outputs.out_dir}", file=sys.stderr)
        results.append(RunResult(spec, metrics))
    return results


PROG = "python -m simulations.central"


def build_parser(prog: str = PROG) -> CommandParser:
    """The command's flags: variants, seeds, rounds, run-config pairs, outputs."""
    parser = CommandParser(prog, __doc__)
    parser.add_argument(
        "--variants", default=DEFAULT_VARIANTS, help=f"subset of {', '.join(ASO_VARIANTS)}"
    )
    parser.add_argument("--reference", default="plain", help="variant the ratios are against")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of local-epochs epochs")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any run-config key"
    )
    parser.add_argument(
        "--prose-eval",
        action="store_true",
        help="also evaluate perplexity on the base model's held-out pretraining prose",
    )
    parser.add_argument(
        "--resume", action="store_true", help="reuse runs whose folder holds the same run"
    )
    parser.add_argument("--target-loss", type=float, help="central loss for rounds-to-target")
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Run every variant on every seed; print the summary. Returns the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    # plan_runs reads the flags that engine.add_run_flags would give.
    args.dataset = args.partitioner = args.fraction_train = args.seed = args.strategy = None
    try:
        variants = chosen_variants(args.variants)
        if args.reference not in {variant.label for variant in variants}:
            raise ValueError(f"--reference={args.reference!r} is not among --variants")
        specs = plan_runs(args, variants, parse_seeds(args.seeds), args.out)
    except ValueError as error:
        parser.error(str(error))
    try:
        results = execute_central(specs, resume=args.resume, prose_eval=args.prose_eval)
    except (ValueError, RuntimeError) as error:
        return fail(prog, error)
    run = specs[0].run
    header = "\n".join(
        [
            f"Command: `{command_line(prog, argv)}`",
            "",
            f"- one site, {run.federation.num_server_rounds} rounds of "
            f"{run.training.local_epochs} epochs, dataset `{run.data.dataset}`, model "
            f"{run.model.model}, batch {run.training.batch_size}, lr {run.training.lr}",
            f"- seeds {args.seeds}; figures are mean ± sample std over seeds",
        ]
    )
    write_reports(
        args.out,
        results,
        title="Central training (Table A)",
        header=header,
        target=args.target_loss,
        label="variant",
        reference=args.reference,
    )
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
