"""The FedASO ServerApp and its round loop: run-config -> strategy -> rounds -> outputs.

:func:`run_federation` checks the whole run-config before anything starts, then builds the
strategy it names (``strategies.factory``), the starting model and, under FedASO, anchors
(``strategies.initial_files``; k-means over the server's seed corpus or federated k-means,
``strategies.anchor_init``), wraps the grid (``strategies.grids``: partition order,
prompt replies, metered traffic, planned faults), runs the rounds (``strategies.rounds``,
with checkpoints in ``strategies.server_state``) with central evaluation after each one
(``strategies.central_eval``), and writes the outputs (``strategies.outputs``).

Clients are sampled in partition order, so one seed samples the same partitions under every
strategy, except under central DP, where the sample's seed is secret
(``fedaso.privacy.sampling``); with ``update-dp`` the strategy runs inside one of Flower's
DP wrappers (``strategies.update_dp``).
"""

from __future__ import annotations

import random
import time
from logging import ERROR, INFO, WARNING
from pathlib import Path

import torch
from flwr.app import ConfigRecord, Context
from flwr.common import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Result

from fedaso.config import RunConfig
from fedaso.data import load_central
from fedaso.models.arrays import model_to_arrays
from fedaso.privacy import sampling_seed, seeded_sampling
from fedaso.wire import RUN_KEY, join_payload
from flower_wire.records import arrays_to_record
from strategies.anchor_init import federated_initial_anchors, wait_for_nodes
from strategies.central_eval import CentralEvaluator, RoundCallback
from strategies.factory import build_strategy
from strategies.failures import RunFailedError
from strategies.fedaso import FedASO
from strategies.grids import (
    FaultPlanGrid,
    MeteredGrid,
    PartitionOrderedGrid,
    PromptGrid,
    RegisteredPartitions,
)
from strategies.initial_files import embedding_width, starting_point
from strategies.outputs import write_outputs
from strategies.refit import ProbeFedASO
from strategies.rounds import RoundPlan, run_rounds
from strategies.server_state import Checkpoints, RunIdentity
from strategies.tracking import check_backend_installed
from strategies.update_dp import build_update_dp, expected_sample_size


def seed_client_sampling(run: RunConfig) -> int:
    """Seed the global ``random``, with which Flower samples nodes (and k-means queries).

    From the run seed, so that one seed samples the same partitions in every run, except
    under central DP: its epsilon is amplified by sampling, which holds only if nobody who
    knows the run seed can redo the sample, so the seed is secret then
    (``fedaso.privacy.sampling``; ``FEDASO_SEEDED_SAMPLING=1`` restores the run seed).
    Returns the seed, from which every round's sample is seeded again
    (``strategies.rounds.round_sampling``).
    """
    central_dp = run.privacy.central_dp
    if central_dp and seeded_sampling():
        log(
            WARNING,
            "FEDASO_SEEDED_SAMPLING=1: the client sample follows the run seed, so "
            "central DP's amplification by sampling does not hold (docs/PRIVACY.md)",
        )
    seed = sampling_seed(run.federation.seed) if central_dp else run.federation.seed
    random.seed(seed)
    return seed


def run_federation(
    grid: Grid,
    run: RunConfig,
    on_round: RoundCallback | None = None,
    registered: RegisteredPartitions | None = None,
) -> Result:
    """Run the run-config's rounds on ``grid``; write the outputs if it sets ``out-dir``.

    Clients are sampled in partition order (reproducible per seed, except under central DP,
    whose sample is secret) and every round's traffic is metered (see ``strategies.grids``).
    Nodes' partition ids come from ``registered`` where the nodes were registered in this
    process (a simulation), else from one query per node.
    """
    started = time.perf_counter()
    check_backend_installed(
        run.outputs.tracking
    )  # before round 1, not when the outputs are written
    checkpoints = Checkpoints(run)  # reads and checks `resume` before any other work
    if run.federation.strategy == "fedaso":
        log(
            INFO,
            "FedASO: model=%s, M=%d anchors, R=%d",
            run.model.model,
            run.aso.num_anchors,
            run.aso.subspace_rank,
        )
    client_sampling_seed = seed_client_sampling(run)
    torch.manual_seed(run.federation.seed)
    central = load_central(run.data_config(num_partitions=1))
    model, anchors = starting_point(run, central)
    evaluator = CentralEvaluator(run, central, on_round)
    # Replies as they come (PromptGrid); partitions as registered (in-process) or queried.
    ordered = PartitionOrderedGrid(PromptGrid(grid), registered=registered)
    # Under central DP the sampled partitions are not published: the epsilon assumes them secret.
    listed = None if run.privacy.central_dp else ordered.partition
    metered = MeteredGrid(ordered, partition_of=listed)
    grid = FaultPlanGrid(metered, run, ordered.partition) if run.reliability.fault_plan else metered
    checkpoints.register("traffic", metered)  # a resumed run keeps earlier rounds' traffic
    identity = RunIdentity()
    checkpoints.register("run-identity", identity, restore_now=True)
    client_config = ConfigRecord(run.client_view() | {RUN_KEY: identity.key})
    strategy = build_strategy(run, central)
    if (
        isinstance(strategy, FedASO)
        and run.aso.uses_anchors
        and anchors is None
        and checkpoints.resumed is None
    ):
        anchors = federated_initial_anchors(
            grid, run, model_to_arrays(model), strategy, client_config, embedding_width(model)
        )
    if run.privacy.update_dp != "none":
        num_nodes = len(
            wait_for_nodes(
                grid, run.federation.min_train_nodes, timeout=run.reliability.round_timeout
            )
        )
        strategy = build_update_dp(strategy, run, expected_sample_size(run, num_nodes))
    plan = RoundPlan(
        grid=grid,
        timeout=run.reliability.round_timeout,
        train_config=ConfigRecord(dict(client_config)),  # Flower adds the server round
        evaluate_config=ConfigRecord(dict(client_config)),
        evaluate_fn=evaluator,
        sampling_seed=client_sampling_seed,
    )
    initial = join_payload(model_to_arrays(model), anchors)
    if isinstance(strategy, ProbeFedASO):  # round 1's relevance: the probe of the initial model
        initial = strategy.with_probe(initial)
    result = run_rounds(
        strategy,
        plan,
        initial_arrays=arrays_to_record(initial),
        num_rounds=run.federation.num_server_rounds,
        checkpoints=checkpoints,
    )
    if run.outputs.out_dir:
        write_outputs(
            Path(run.outputs.out_dir), run, result, time.perf_counter() - started, metered.traffic
        )
    return result


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
