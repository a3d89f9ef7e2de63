"""The server side of FedASO's privacy (spec sections 5b and 7; docs/PRIVACY.md).

- ``build_update_dp``: Flower's own DP wrappers (``DifferentialPrivacyServerSideFixedClipping``
  or ``...ClientSideFixedClipping``) around any strategy, FedASO included, unchanged.
- ``UpdateDPAccounting``: a thin outer strategy that keeps the wrapper's
  ``num_sampled_clients`` equal to the number actually sampled each round and adds
  ``update-epsilon`` (Opacus' RDP accountant) to every round's metrics.
- ``federated_initial_anchors``: federated k-means before ``strategy.start``, with Flower
  ``query`` messages sent by ``grid.send_and_receive``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable
from logging import INFO, WARNING

import numpy as np
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    Strategy,
)
from flwr.serverapp.strategy.dp_fixed_clipping import DifferentialPrivacyFixedClippingBase

from clients.records import arrays_to_record, record_to_arrays
from fedaso.anchors import federated_kmeans
from fedaso.privacy import PrivacyAccount, fresh_rng, release_centroids
from fedaso.run_config import RunConfig
from strategies.fedaso import FedASO

QUERY_TIMEOUT = 600.0  # seconds to wait for the k-means answers of the sampled clients


def expected_sample_size(run: RunConfig, num_nodes: int) -> int:
    """How many nodes Flower's FedAvg samples per round out of ``num_nodes`` (its formula)."""
    return max(int(num_nodes * run.fraction_train), run.min_train_nodes)


def update_dp_calibrated(run: RunConfig) -> bool:
    """Whether the wrappers' noise ``sigma C / n`` matches the aggregate's sensitivity ``C / n``.

    It does when every sampled reply weighs the same (``aggregation-weight = uniform``) and
    no stale anchor report is reused (``anchor-staleness-decay = 0``): the aggregate is then
    the plain mean of this round's clipped replies, as DP-FedAvg assumes. Relevance or
    example weights let one client move the mean by more than ``C / n``.
    """
    return (
        run.strategy == "fedaso"
        and run.aggregation_weight == "uniform"
        and run.anchor_staleness_decay == 0
    )


def build_update_dp(strategy: Strategy, run: RunConfig, num_sampled: int) -> Strategy:
    """Wrap ``strategy`` in the Flower DP wrapper named by ``update-dp`` (or return it)."""
    if run.update_dp == "none":
        return strategy
    wrapper = (
        DifferentialPrivacyServerSideFixedClipping
        if run.update_dp == "server-fixed"
        else DifferentialPrivacyClientSideFixedClipping
    )
    wrapped = wrapper(
        strategy,
        noise_multiplier=run.update_noise_multiplier,
        clipping_norm=run.update_clip,
        num_sampled_clients=num_sampled,
    )
    return UpdateDPAccounting(wrapped, run)


class UpdateDPAccounting(Strategy):
    """Delegates to a Flower DP wrapper; keeps its sample count right and reports epsilon.

    Parameters
    ----------
    wrapped : DifferentialPrivacyFixedClippingBase
        Flower's server- or client-side fixed-clipping wrapper.
    run : RunConfig
        The run-config (noise multiplier, delta, and whether the calibration holds).
    """

    def __init__(self, wrapped: DifferentialPrivacyFixedClippingBase, run: RunConfig) -> None:
        self.wrapped = wrapped
        self.noise_multiplier = run.update_noise_multiplier
        self.delta = run.anchor_delta
        self.calibrated = update_dp_calibrated(run)
        self.account = PrivacyAccount()
        self.sample_rate = 1.0
        if not self.calibrated:
            log(
                WARNING,
                "update-dp: aggregation weights are not uniform or stale anchors are reused; "
                "the wrapper's noise is not calibrated to the aggregate, so update-epsilon "
                "is reported as inf (see docs/PRIVACY.md)",
            )

    def summary(self) -> None:
        """Log the wrapper's and the inner strategy's summaries."""
        log(INFO, "\t├──> update-dp accounting (Opacus RDP), calibrated: %s", self.calibrated)
        self.wrapped.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample through the wrapper; set its ``num_sampled_clients`` to the real count."""
        messages = list(self.wrapped.configure_train(server_round, arrays, config, grid))
        if messages and len(messages) != self.wrapped.num_sampled_clients:
            log(INFO, "update-dp: %d clients sampled; noise std follows", len(messages))
            self.wrapped.num_sampled_clients = len(messages)
        connected = len(list(grid.get_node_ids()))
        self.sample_rate = min(1.0, len(messages) / connected) if connected else 1.0
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate through the wrapper; compose the release and report ``update-epsilon``."""
        arrays, metrics = self.wrapped.aggregate_train(server_round, replies)
        if arrays is None:
            return arrays, metrics
        self.account.record(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        epsilon = self.account.epsilon(self.delta) if self.calibrated else math.inf
        extra = {
            "update-epsilon": epsilon,
            "update-delta": self.delta,
            "update-noise-std": self.noise_multiplier
            * self.wrapped.clipping_norm
            / self.wrapped.num_sampled_clients,
        }
        return arrays, MetricRecord(dict(metrics or {}) | extra)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Federated evaluation as the wrapped strategy configures it."""
        return self.wrapped.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Federated evaluation as the wrapped strategy aggregates it."""
        return self.wrapped.aggregate_evaluate(server_round, replies)


def federated_initial_anchors(
    grid: Grid, run: RunConfig, model_arrays: dict[str, np.ndarray], strategy: FedASO
) -> np.ndarray:
    """Federated k-means (spec section 5b): sampled clients send centroids, server merges.

    Sends a ``query`` message with the initial model to a sample of connected nodes (the
    training sample size), privatizes the answers on receipt in central mode (in local mode
    they arrive privatized), accounts the release in ``strategy``, and runs weighted k-means
    over all centroids, each weighing its cluster fraction.
    """
    nodes = wait_for_nodes(grid, run.min_train_nodes)
    sampled = random.sample(nodes, min(len(nodes), expected_sample_size(run, len(nodes))))
    content = RecordDict(
        {
            "arrays": arrays_to_record(model_arrays),
            "config": ConfigRecord(run.to_flat() | {"server-round": 0}),
        }
    )
    messages = [
        Message(content=content, message_type=MessageType.QUERY, dst_node_id=node)
        for node in sampled
    ]
    replies = list(grid.send_and_receive(messages, timeout=QUERY_TIMEOUT))
    centroid_sets, fraction_sets, answered = [], [], []
    for reply in replies:
        if reply.has_error():
            log(WARNING, "anchor-init: node %s failed: %s", reply.metadata.src_node_id, reply.error)
            continue
        arrays = record_to_arrays(reply.content["centroids"])
        centroids, fractions = arrays["centroids"], arrays["fractions"]
        if run.anchor_dp == "central":
            centroids, fractions = release_centroids(
                centroids.astype(np.float64),
                fractions.astype(np.float64) / fractions.sum(),
                clip=run.anchor_init_clip,
                noise_multiplier=run.anchor_noise_multiplier,
                rng=fresh_rng(),
            )
        centroid_sets.append(centroids)
        fraction_sets.append(fractions)
        answered.append(reply.metadata.src_node_id)
    log(INFO, "anchor-init: federated k-means over %d clients' centroids", len(answered))
    if run.anchor_dp == "central":
        strategy.anchor_account.record(
            noise_multiplier=run.anchor_noise_multiplier, sample_rate=len(sampled) / len(nodes)
        )
    elif run.anchor_dp == "local":
        strategy.record_local_releases(answered)
    return federated_kmeans(
        centroid_sets=centroid_sets,
        fraction_sets=fraction_sets,
        num_anchors=run.num_anchors,
        seed=run.seed,
    )


def wait_for_nodes(grid: Grid, minimum: int) -> list[int]:
    """The connected node ids, once at least ``minimum`` are connected."""
    while len(nodes := list(grid.get_node_ids())) < minimum:
        log(INFO, "Waiting for nodes to connect: %d connected (need %d)", len(nodes), minimum)
        time.sleep(1)
    return nodes
