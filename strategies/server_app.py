"""The FedASO ServerApp: run-config -> strategy -> rounds -> metrics.

The ServerApp validates the whole run-config before anything starts, builds the strategy it
names (``fedaso`` or Flower's own ``fedavg``, ``fedprox``, ``fedadam``), initializes the
global model and, under FedASO, the global anchor set by k-means over embeddings of the
seed corpus the server holds (spec section 5a), and evaluates the global model centrally on
held-out data after every round (loss, accuracy, perplexity, and fact recall on ``facts``).
With ``out-dir`` set it writes ``metrics.json`` (resolved config and per-round metrics), the
final model's exchanged arrays (``model.pt``, without the reserved anchor key; only the
adapters under LoRA), the final anchors, and for an ``hf:`` model the Hugging Face folder
``adapter/`` (LoRA, for ``PeftModel.from_pretrained``) or ``model/`` (a full fine-tune).

Privacy (docs/PRIVACY.md): with ``anchor-init = federated`` the anchors come from federated
k-means over ``query`` messages instead of the seed corpus (``strategies.anchor_init``), and
with ``update-dp`` the strategy runs inside one of Flower's DP wrappers
(``strategies.update_dp``).

Rounds run in ``strategies.rounds`` (Flower's round loop, with a per-round time-out), and
after every round a checkpoint is written (``strategies.server_state``); with ``resume`` set, a
run continues after the checkpoint's round.

A run can start from a previous run's ``model.pt`` and ``anchors.npy`` (``initial-model``,
``initial-anchors``) and be evaluated each round on a second dataset as well
(``extra-eval-dataset``): this is how forgetting is measured. Clients are sampled in
partition order, so one seed samples the same partitions under every strategy (except
under central DP, where the sample's seed is secret: ``fedaso.privacy.sampling``), and each
round's bytes of model and anchors sent and received are metered (``strategies.grids``).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Mapping
from logging import ERROR, INFO, WARNING
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx, Result, Strategy

from fedaso.aso.anchors import kmeans_anchors, refit_anchors
from fedaso.aso.relevance import RelevanceProbe
from fedaso.config import resolve_device
from fedaso.data import CentralData, load_central, task_of
from fedaso.data.tokens import TextCodec, load_codec
from fedaso.durable import write_atomically, write_text_atomically
from fedaso.models import HFCausalLM
from fedaso.models.arrays import load_model_arrays, model_to_arrays
from fedaso.privacy import sampling_seed, seeded_sampling
from fedaso.run_config import RunConfig
from fedaso.training.fact_relevance import fit_probe_on_public, relevance_by_token_kind
from fedaso.training.trainer import embed, evaluate, fact_recall
from fedaso.wire import RUN_KEY, join_payload, probe_of, split_payload
from flower_wire.records import arrays_to_record, metric_record, record_to_arrays
from strategies.anchor_init import federated_initial_anchors, wait_for_nodes
from strategies.failures import RunFailedError
from strategies.fedaso import FedASO
from strategies.grids import (
    FaultPlanGrid,
    MeteredGrid,
    PartitionOrderedGrid,
    PromptGrid,
    RegisteredPartitions,
)
from strategies.initial_files import load_anchors_file, load_model_file
from strategies.refit import AnchorRefitFedASO, ProbeFedASO
from strategies.rounds import RoundPlan, run_rounds
from strategies.server_state import Checkpoints, RunIdentity
from strategies.tracking import check_backend_installed, log_run, tracking_of
from strategies.update_dp import build_update_dp, expected_sample_size

MAX_KMEANS_TOKENS = 20_000  # k-means over more seed tokens buys little and costs seconds


def build_strategy(run: RunConfig, central: CentralData | None = None) -> Strategy:
    """Return the strategy named by ``run.strategy``, configured from the run-config.

    ``relevance-source = anchors-refit`` needs the server's ``central`` data: its seed
    corpus is what the anchors are re-fitted over each round.
    """
    sampling: dict[str, Any] = {
        "fraction_train": run.fraction_train,
        "fraction_evaluate": run.fraction_evaluate,
        "min_train_nodes": run.min_train_nodes,
        "min_evaluate_nodes": run.min_train_nodes,
        "min_available_nodes": run.min_train_nodes,
    }
    if run.strategy == "fedaso":
        settings: dict[str, Any] = {
            "aggregation_weight": run.aggregation_weight,
            "anchor_staleness_decay": run.anchor_staleness_decay,
            "privacy": run.privacy(),
            "bounds": run.reply_bounds(),
        }
        if run.relevance_source not in ("anchors-refit", "probe"):
            return FedASO(**sampling, **settings)
        if central is None:
            raise ValueError(
                f"relevance-source={run.relevance_source!r} needs the server's central data"
            )
        if run.relevance_source == "probe":
            return ProbeFedASO(**sampling, **settings, fit_probe=PublicDocumentProbe(run, central))
        return AnchorRefitFedASO(**sampling, **settings, refit=SeedCorpusRefit(run, central))
    if run.strategy == "fedprox":
        return FedProx(**sampling, proximal_mu=run.proximal_mu)
    if run.strategy == "fedadam":
        return FedAdam(**sampling, eta=run.server_lr, eta_l=run.lr)
    return FedAvg(**sampling)


def seed_embeddings(model: torch.nn.Module, central: CentralData, run: RunConfig) -> np.ndarray:
    """The seed corpus' embeddings ``(n, d)`` under ``model``, at most ``MAX_KMEANS_TOKENS``."""
    embeddings = embed(model, central.seed_corpus)  # (n, d)
    if len(embeddings) > MAX_KMEANS_TOKENS:
        rows = np.random.default_rng(run.seed).choice(len(embeddings), MAX_KMEANS_TOKENS, False)
        embeddings = embeddings[np.sort(rows)]
    return embeddings


def initial_anchors(model: torch.nn.Module, central: CentralData, run: RunConfig) -> np.ndarray:
    """k-means anchors over the seed corpus' embeddings under the initial model."""
    embeddings = seed_embeddings(model, central, run)
    return kmeans_anchors(embeddings=embeddings, num_anchors=run.num_anchors, seed=run.seed)


class SeedCorpusRefit:
    """``anchors-refit``'s re-fit: k-means over the seed corpus under the new global model,
    warm-started from the last anchors (``fedaso.aso.anchors.refit_anchors``)."""

    def __init__(self, run: RunConfig, central: CentralData) -> None:
        self.run = run
        self.central = central
        self.model = run.build_model().to(resolve_device(run.device))

    def __call__(self, model_arrays: dict[str, np.ndarray], previous: np.ndarray) -> np.ndarray:
        load_model_arrays(self.model, model_arrays)
        embeddings = seed_embeddings(self.model, self.central, self.run)
        return refit_anchors(embeddings=embeddings, previous=previous, seed=self.run.seed)


class PublicDocumentProbe:
    """``probe``'s fit: a logistic probe on the public documents' fact and other tokens
    under the global model (``fedaso.aso.relevance_probe``)."""

    def __init__(self, run: RunConfig, central: CentralData) -> None:
        if central.public_fact_probe is None:
            raise ValueError(
                f"relevance-source='probe' needs public documents with fact spans mapped to "
                f"tokens, which dataset={run.dataset!r} under this tokenizer does not give"
            )
        self.public = central.public_fact_probe
        self.seed = run.seed
        self.model = run.build_model().to(resolve_device(run.device))

    def __call__(self, model_arrays: dict[str, np.ndarray]) -> RelevanceProbe:
        load_model_arrays(self.model, model_arrays)
        return fit_probe_on_public(self.model, self.public, seed=self.seed)


RoundCallback = Callable[[int, Mapping[str, float]], None]


def central_metrics(
    model: torch.nn.Module,
    central: CentralData,
    dataset: str,
    codec: TextCodec,
    anchors: np.ndarray | None = None,
    run: RunConfig | None = None,
    relevance_probe: RelevanceProbe | None = None,
) -> dict[str, float]:
    """Loss and accuracy of ``model`` on ``central.eval``; perplexity and fact recall if any.

    Fact recall encodes prompts and answers with ``codec``, the model's tokenizer or bytes.
    Given the global ``anchors`` and the ``run`` (its relevance settings) on ``facts``, also
    the mean relevance of fact and filler tokens and the AUROC of relevance for fact
    tokens against the others (``fedaso.training.fact_relevance``), scored by
    ``relevance_probe`` if given.
    """
    result = evaluate(model, central.eval)
    metrics: dict[str, float] = {"loss": result.loss, "accuracy": result.accuracy}
    if task_of(dataset) == "lm":
        metrics["perplexity"] = math.exp(min(result.loss, 50.0))
    if central.recall_prompts:
        recall = fact_recall(model, central.recall_prompts, codec=codec)
        metrics["fact-recall"] = recall.exact_match
        metrics["fact-answer-loss"] = recall.answer_loss
    if central.fact_probe is not None and anchors is not None and run is not None:
        relevance = relevance_by_token_kind(
            model, central.fact_probe, anchors, tau=run.aso_tau, kind=run.relevance,
            relevance_probe=relevance_probe,
        )  # fmt: skip
        metrics["relevance-fact"] = relevance.fact
        metrics["relevance-filler"] = relevance.filler
        metrics["relevance-auroc"] = relevance.auroc
    return metrics


class CentralEvaluator:
    """``evaluate_fn`` of ``Strategy.start``: evaluates the global model, times each round.

    With ``extra-eval-dataset`` set, the model is also evaluated on that dataset's central
    data, reported under ``extra-`` keys (e.g. ``extra-fact-recall``). ``on_round``, if
    given, receives each round's number and metrics (e.g. to show progress).
    """

    def __init__(
        self, run: RunConfig, central: CentralData, on_round: RoundCallback | None = None
    ) -> None:
        self.run = run
        self.central = central
        self.extra = (
            load_central(run.replace(dataset=run.extra_eval_dataset).data(num_partitions=1))
            if run.extra_eval_dataset
            else None
        )
        self.on_round = on_round
        self.codec = load_codec(run.data(num_partitions=1).tokenizer)
        self.model = run.build_model().to(resolve_device(run.device))
        self.last_end = time.perf_counter()

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        start = time.perf_counter()
        payload = record_to_arrays(arrays)
        model_arrays, anchors = split_payload(payload)
        probe = probe_of(payload)
        relevance_probe = RelevanceProbe(*probe) if probe is not None else None
        load_model_arrays(self.model, model_arrays)
        metrics = central_metrics(
            self.model, self.central, self.run.dataset, self.codec, anchors, self.run,
            relevance_probe,
        )  # fmt: skip
        if self.extra is not None:
            extra = central_metrics(
                self.model, self.extra, self.run.extra_eval_dataset, self.codec, anchors, self.run
            )
            metrics |= {f"extra-{key}": value for key, value in extra.items()}
        end = time.perf_counter()
        metrics["round-seconds"] = start - self.last_end if server_round else 0.0
        metrics["eval-seconds"] = end - start
        self.last_end = end
        if self.on_round is not None:
            self.on_round(server_round, metrics)
        return metric_record(metrics)


def embedding_width(model: torch.nn.Module) -> int:
    """The width ``d`` of a reference model's embedding point."""
    width = getattr(model, "embedding_width", None)
    if not isinstance(width, int):
        raise ValueError(f"{type(model).__name__} does not state its embedding_width")
    return width


def load_initial_files(run: RunConfig) -> tuple[torch.nn.Module, np.ndarray | None]:
    """The model, loaded from ``initial-model`` if set, and the ``initial-anchors`` if set.

    Raises ``ValueError`` naming the key and path for a missing or unfit file.
    """
    model = run.build_model()
    if run.initial_model:
        load_model_file(run.initial_model, model)
    anchors = None
    if run.initial_anchors:
        anchors = load_anchors_file(
            run.initial_anchors, num_anchors=run.num_anchors, width=embedding_width(model)
        )
    return model, anchors


def starting_point(
    run: RunConfig, central: CentralData
) -> tuple[torch.nn.Module, np.ndarray | None]:
    """The initial global model and (FedASO) anchors: fresh, or loaded from a previous run.

    FedASO's anchors come from ``initial-anchors`` or else from k-means under the (possibly
    loaded) model; the baselines get none.
    """
    model, anchors = load_initial_files(run)
    if run.strategy == "fedaso" and anchors is None and run.anchor_init == "server":
        anchors = initial_anchors(model.to(resolve_device(run.device)), central, run)
    return model, anchors


def seed_client_sampling(run: RunConfig) -> None:
    """Seed the global ``random``, with which Flower samples nodes (and k-means queries).

    From the run seed, so that one seed samples the same partitions in every run, except
    under central DP: its epsilon is amplified by sampling, which holds only if nobody who
    knows the run seed can redo the sample, so the seed is secret then
    (``fedaso.privacy.sampling``; ``FEDASO_SEEDED_SAMPLING=1`` restores the run seed).
    """
    central_dp = run.privacy().central_dp
    if central_dp and seeded_sampling():
        log(
            WARNING,
            "FEDASO_SEEDED_SAMPLING=1: the client sample follows the run seed, so "
            "central DP's amplification by sampling does not hold (docs/PRIVACY.md)",
        )
    random.seed(sampling_seed(run.seed) if central_dp else run.seed)


def run_federation(
    grid: Grid,
    run: RunConfig,
    on_round: RoundCallback | None = None,
    registered: RegisteredPartitions | None = None,
) -> Result:
    """Run ``run.num_server_rounds`` rounds on ``grid``; write outputs if ``run.out_dir``.

    Clients are sampled in partition order (reproducible per seed, except under central DP,
    whose sample is secret) and every round's traffic is metered (see ``strategies.grids``).
    Nodes' partition ids come from ``registered`` where the nodes were registered in this
    process (a simulation), else from one query per node.
    """
    started = time.perf_counter()
    check_backend_installed(run.tracking)  # before round 1, not when the outputs are written
    checkpoints = Checkpoints(run)  # reads and checks `resume` before any other work
    if run.strategy == "fedaso":
        log(
            INFO,
            "FedASO: model=%s, M=%d anchors, R=%d",
            run.model,
            run.num_anchors,
            run.subspace_rank,
        )
    seed_client_sampling(run)
    torch.manual_seed(run.seed)
    central = load_central(run.data(num_partitions=1))
    model, anchors = starting_point(run, central)
    evaluator = CentralEvaluator(run, central, on_round)
    # Replies as they come (polling.py); partitions as registered (in-process) or queried.
    ordered = PartitionOrderedGrid(PromptGrid(grid), registered=registered)
    # Under central DP the sampled partitions are not published: the epsilon assumes them secret.
    listed = None if run.privacy().central_dp else ordered.partition
    metered = MeteredGrid(ordered, partition_of=listed)
    grid = FaultPlanGrid(metered, run, ordered.partition) if run.fault_plan else metered
    checkpoints.register("traffic", metered)  # a resumed run keeps earlier rounds' traffic
    identity = RunIdentity()
    checkpoints.register("run-identity", identity, restore_now=True)
    client_config = ConfigRecord(run.client_view() | {RUN_KEY: identity.key})
    strategy = build_strategy(run, central)
    if isinstance(strategy, FedASO) and anchors is None and checkpoints.resumed is None:
        anchors = federated_initial_anchors(
            grid, run, model_to_arrays(model), strategy, client_config, embedding_width(model)
        )
    if run.update_dp != "none":
        num_nodes = len(wait_for_nodes(grid, run.min_train_nodes, timeout=run.round_timeout))
        strategy = build_update_dp(strategy, run, expected_sample_size(run, num_nodes))
    plan = RoundPlan(
        grid=grid,
        timeout=run.round_timeout,
        train_config=ConfigRecord(dict(client_config)),  # Flower adds the server round
        evaluate_config=ConfigRecord(dict(client_config)),
        evaluate_fn=evaluator,
    )
    initial = join_payload(model_to_arrays(model), anchors)
    if isinstance(strategy, ProbeFedASO):  # round 1's relevance: the probe of the initial model
        initial = strategy.with_probe(initial)
    result = run_rounds(
        strategy,
        plan,
        initial_arrays=arrays_to_record(initial),
        num_rounds=run.num_server_rounds,
        checkpoints=checkpoints,
    )
    if run.out_dir:
        write_outputs(
            Path(run.out_dir), run, result, time.perf_counter() - started, metered.traffic
        )
    return result


def history(
    result: Result, traffic: Callable[[int], Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Per-round records: client train/evaluate metrics, central evaluation, traffic."""
    rounds = sorted(
        set(result.evaluate_metrics_serverapp)
        | set(result.train_metrics_clientapp)
        | set(result.evaluate_metrics_clientapp)
    )
    return [
        {
            "round": r,
            "train": dict(result.train_metrics_clientapp.get(r, {})),
            "evaluate": dict(result.evaluate_metrics_clientapp.get(r, {})),
            "central": dict(result.evaluate_metrics_serverapp.get(r, {})),
            "traffic": dict(traffic(r)) if traffic is not None else {},
        }
        for r in rounds
    ]


def write_outputs(
    out_dir: Path,
    run: RunConfig,
    result: Result,
    seconds: float,
    traffic: Callable[[int], Mapping[str, Any]] | None = None,
) -> None:
    """Write metrics.json, model.pt (no reserved keys) and anchors.npy (if any).

    ``model.pt`` holds the arrays that travel (``fedaso.models.arrays``): the whole state dict of
    a reference model, the adapters of a LoRA model. An ``hf:`` model is also written in
    Hugging Face format (``HFCausalLM.save``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    model_arrays, anchors = split_payload(record_to_arrays(result.arrays))
    if model_arrays:
        model = run.build_model()
        load_model_arrays(model, model_arrays)
        tensors = {name: torch.from_numpy(np.asarray(a)) for name, a in model_arrays.items()}
        write_atomically(out_dir / "model.pt", lambda stream: torch.save(tensors, stream))
        if isinstance(model, HFCausalLM):
            log(INFO, "FedASO: wrote %s", model.save(out_dir))
    if anchors is not None:
        write_atomically(out_dir / "anchors.npy", lambda stream: np.save(stream, anchors))
    rounds = history(result, traffic)
    metrics = {
        "config": run.to_flat(),
        "total-seconds": seconds,
        "rounds": rounds,
    }
    write_text_atomically(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    log(INFO, "FedASO: wrote %s", out_dir / "metrics.json")
    tracking = tracking_of(run.tracking, run.tracking_dir, str(out_dir))
    if tracking is not None:  # run-config, per-round metrics, files (strategies/tracking.py)
        files = [out_dir / name for name in ("model.pt", "anchors.npy", "metrics.json")]
        # An hf: model's Hugging Face folder: the adapter (LoRA) or the full model.
        files += sorted(
            path for folder in ("adapter", "model") for path in (out_dir / folder).glob("*")
        )
        log_run(tracking, run.to_flat(), rounds, files)


def build_server_app(
    run: RunConfig | None = None,
    on_round: RoundCallback | None = None,
    registered: RegisteredPartitions | None = None,
) -> ServerApp:
    """Return a ServerApp; with ``run`` it ignores the context's run-config (in-process use).

    ``on_round`` receives each round's number and central metrics, and ``registered`` the
    nodes' partition ids from the simulation engine that registers them (in-process use).
    """
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            resolved = run if run is not None else RunConfig.from_flat(context.run_config)
            run_federation(grid, resolved, on_round, registered)
        except (ValueError, RunFailedError) as error:  # say so in one line before the traceback
            log(ERROR, "FedASO stopped: %s", error)
            raise

    return server_app


app = build_server_app()
