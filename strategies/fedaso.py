"""FedASO: relevance-weighted aggregation with per-partition anchor merging (Flower Strategy).

Implements docs/SPEC.md sections 5, 6 and 10 on Flower's message API. Each training reply carries
one ArrayRecord (the model's arrays plus the anchor set under ``fedaso.wire.ANCHORS_KEY``)
and one MetricRecord (``num-examples``, ``num-tokens``, ``mean-relevance``, ...). The model
is averaged with weights ``w_k`` (mean relevance by default, report Eq. 7); anchor sets are
stored per partition (the reply's source node) with their round, and merged with staleness
decay into the next global set.

Unlike Flower's built-in reply check, which fails the whole round on one inconsistent
reply, FedASO checks each reply on its own (``strategies.replies``): a reply with an error,
a missing record or key, wrong array names, shapes or dtypes, non-finite values, a metric
that is not one finite number, a non-positive weight, a ``partition-id`` it may not speak
for (``strategies.partitions``), or an update whose norm exceeds ``max-update-norm`` or
``max-update-norm-ratio`` times the round's median (``fedaso.aso.robust``) is logged, counted in
the round's metrics and left out; the others are aggregated, in partition order so that the
result does not depend on the order replies arrive in. What a reply claims is clipped before
it weighs anything (relevance to [0, 1], counts to ``max-reported-count``), and no reply
holds more than ``max-client-share`` of the new model or anchors (``fedaso.aso.robust``). A
round with no usable reply keeps the previous global state. Under Flower's DP wrappers,
:meth:`FedASO.admit` runs the same checks before the wrapper clips anything
(``strategies.update_dp``). Anchor reports are stored under the partition the client
reports, so the store survives a restart in which every node gets a new id
(``state_dict``/``load_state_dict`` checkpoint it, with the partition binding). Because the
anchors ride inside the model's ArrayRecord, Flower's DP wrappers clip and noise model and
anchors together without knowing about ASO.

Anchor privacy (docs/SPEC.md section 7, docs/PRIVACY.md): under ``anchor-dp = local`` the reports
arrive privatized and are merged as above; under ``anchor-dp = central`` the server merges
only this round's fresh changes, clipped, with uniform weights, noised once and divided by
the number of sampled clients (DP-FedAvg), and the staleness decay then acts on these
privatized per-round releases, never on a raw report. Every round's metrics carry
``anchor-epsilon`` from Opacus' accountant.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedaso.aso.aggregation import (
    AGGREGATION_WEIGHTS,
    AnchorReport,
    PartitionAnchorStore,
    capped_average,
)
from fedaso.aso.robust import ReplyBounds, capped_shares, norm_outliers, update_norm
from fedaso.config import FederationConfig
from fedaso.privacy import (
    PrivacyAccount,
    PrivacyConfig,
    central_noisy_mean,
    fresh_rng,
    local_release_norm_bound,
)
from fedaso.wire import ANCHOR_EPSILON, CLIENT_EPSILONS, join_payload, split_payload
from flower_wire.records import arrays_to_record, metric_record, record_to_arrays
from strategies.grids import GridProxy
from strategies.partitions import PartitionRegistry, partition_index, partition_key_of
from strategies.replies import (
    ClientUpdate,
    evaluate_reply_problem,
    metric_shape,
    parse_train_reply,
    released_partition,
    repeats_partition,
)

# An honest anchor change moves each row towards token embeddings, and the anchors are
# means of such embeddings (k-means), so an honest change stays within a few times the
# anchor set's own norm; 10 leaves room for centroids much shorter than the embeddings.
ANCHOR_CHANGE_LIMIT = 10.0
CENTRAL_RELEASES = "central-releases"  # anchor store key of central mode's running release


@dataclass
class Screening:
    """One round's replies after the checks: the usable updates and what was dropped."""

    updates: list[ClientUpdate] = field(default_factory=list)  # in partition order
    messages: list[Message] = field(default_factory=list)  # the replies of ``updates``
    model_norms: list[float] = field(default_factory=list)  # of ``updates``' model updates
    anchor_norms: list[float] = field(default_factory=list)  # of ``updates``' anchor changes
    failures: int = 0  # error replies
    rejected: int = 0  # unusable replies, norm outliers included
    outliers: int = 0  # replies above a norm bound

    def add_drops(self, earlier: Screening) -> None:
        """Count the replies an earlier screening of this round dropped."""
        self.failures += earlier.failures
        self.rejected += earlier.rejected
        self.outliers += earlier.outliers

    def counts(self) -> dict[str, int | float]:
        """The round's reply counts, as metrics."""
        return {
            "num-replies": len(self.updates),
            "num-failures": self.failures,
            "num-rejected": self.rejected,
            "num-norm-outliers": self.outliers,
        }


class FedASO(FedAvg):
    """Federated Active Semantic Optimization strategy.

    Parameters
    ----------
    fraction_train : float (default: 1.0, as Flower's FedAvg)
        Fraction of nodes sampled for training each round.
    fraction_evaluate : float (default: 1.0, as Flower's FedAvg)
        Fraction of nodes sampled for federated evaluation each round.
    min_train_nodes : int (default: 2)
        Minimum number of nodes sampled for training.
    min_evaluate_nodes : int (default: 2)
        Minimum number of nodes sampled for evaluation.
    min_available_nodes : int (default: 2)
        Minimum number of connected nodes before a round starts.
    aggregation_weight : str (default: the run-config's ``aggregation-weight``)
        ``"relevance"`` (mean relevance, Eq. 7), ``"relevance-x-examples"`` (sum of
        relevance over tokens), ``"examples"`` (FedAvg's weights) or ``"uniform"``.
    anchor_staleness_decay : float (default: the run-config's ``anchor-staleness-decay``)
        ``gamma`` in [0, 1]: a partition's anchor report that is ``age`` rounds old counts
        with weight ``gamma ** age``; 0 merges only this round's reports.
    privacy : PrivacyConfig or None (default: None, the privacy section's defaults)
        Anchor release mode (``none``, ``local``, ``central``), clip, noise and delta.
    bounds : ReplyBounds or None (default: None, nothing bounded)
        What one reply may do (``fedaso.aso.robust.ReplyBounds``): drop a reply whose model
        update or anchor change is longer than ``max_update_norm`` or
        ``max_update_norm_ratio`` times the round's median, cap its counts at
        ``max_reported_count`` and its share of a round at ``max_client_share``. The median-relative
        bound is always off under central DP (``PrivacyConfig.central_dp``), where one
        client's reply must not decide whether another's counts (docs/PRIVACY.md).
    """

    # pylint: disable=too-many-arguments
    def __init__(
        self,
        *,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        aggregation_weight: str = FederationConfig.aggregation_weight,
        anchor_staleness_decay: float = FederationConfig.anchor_staleness_decay,
        privacy: PrivacyConfig | None = None,
        bounds: ReplyBounds | None = None,
    ) -> None:
        if aggregation_weight not in AGGREGATION_WEIGHTS:
            raise ValueError(
                f"aggregation_weight={aggregation_weight!r} must be one of "
                f"{', '.join(AGGREGATION_WEIGHTS)}"
            )
        if not 0.0 <= fraction_train <= 1.0:
            raise ValueError(f"fraction_train={fraction_train} must be in [0, 1]")
        if not 0.0 <= fraction_evaluate <= 1.0:
            raise ValueError(f"fraction_evaluate={fraction_evaluate} must be in [0, 1]")
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_train_nodes,
            min_evaluate_nodes=min_evaluate_nodes,
            min_available_nodes=min_available_nodes,
            weighted_by_key="num-examples",
        )
        self.aggregation_weight = aggregation_weight
        self.anchor_store = PartitionAnchorStore(anchor_staleness_decay)
        self.global_arrays: dict[str, np.ndarray] = {}
        self.privacy = privacy or PrivacyConfig()
        self.anchor_account = PrivacyAccount()  # central mode: every noised release
        self.local_releases: dict[str, int] = {}  # local mode: releases seen per partition
        self.sampled_count = 0  # clients sampled this round: central mode's fixed denominator
        self.sample_rate = 1.0  # sampled / connected nodes this round
        bounds = bounds or ReplyBounds.off()
        if self.privacy.central_dp and bounds.max_update_norm_ratio:
            # A bound relative to the round's median lets one client's data decide whether
            # another's reply counts, which central DP's sensitivity does not allow.
            log(INFO, "FedASO: the median-relative update-norm bound is off under central DP")
            bounds = dataclasses.replace(bounds, max_update_norm_ratio=0.0)
        self.bounds = bounds
        self.partitions = PartitionRegistry()  # which node speaks for which partition
        self.admitted: tuple[int, Screening] | None = None  # see admit()

    def summary(self) -> None:
        """Log summary configuration of the strategy."""
        log(INFO, "\t├──> FedASO:")
        log(INFO, "\t│\t├── Aggregation weight: %s", self.aggregation_weight)
        log(INFO, "\t│\t├── Anchor staleness decay: %s", self.anchor_store.staleness_decay)
        log(INFO, "\t│\t├── Anchor DP: %s", self.privacy.anchor_dp)
        log(INFO, "\t│\t└── Reply bounds: %s", self.bounds)
        super().summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the global arrays the replies will be checked against, then sample."""
        self.global_arrays = record_to_arrays(arrays)
        self.check_global_payload()
        nodes = list(grid.get_node_ids())
        self.partitions.observe(nodes)
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self.bind_reported_partitions(grid, [m.metadata.dst_node_id for m in messages])
        self.sampled_count = len(messages)
        self.sample_rate = min(1.0, len(messages) / len(nodes)) if nodes else 1.0
        return messages

    def check_global_payload(self) -> None:
        """Raise unless the payload to send carries what clients train against: the anchors."""
        if split_payload(self.global_arrays)[1] is None:
            raise ValueError("FedASO needs the global anchor set in the ArrayRecord it sends")

    def bind_reported_partitions(self, grid: Grid, nodes: Iterable[int]) -> None:
        """Bind each sampled node to the partition the grid knows it holds.

        Those come from the nodes' own config (registered by the simulation engine, or
        answered to the partition query) before any training, so a training reply cannot
        take a partition whose node is known to hold it: the sampled nodes are bound here,
        and an unsampled node's partition is looked up when another node claims it. Nodes
        that are never sampled leave no state behind.
        """
        if not isinstance(grid, GridProxy):
            return
        known = grid.known_partitions()
        self.partitions.known = grid
        for node in nodes:
            partition = known.get(node)
            if partition is None:
                continue
            problem = self.partitions.claim(node, partition_key_of(partition))
            if problem is not None:
                log(WARNING, "FedASO: node %s's known partition refused: %s", node, problem)

    def parse_reply(self, msg: Message) -> ClientUpdate | str:
        """Return the reply's update, or a string saying why it cannot be aggregated."""
        return parse_train_reply(msg, self.global_arrays, self.aggregation_weight, self.bounds)

    def admit(self, server_round: int, replies: Iterable[Message]) -> list[Message]:
        """Check replies before a wrapper touches them; return the usable ones.

        Flower's DP wrappers clip every reply, and skip a round with any error reply, before
        they call :meth:`aggregate_train`; ``strategies.update_dp`` hands them only what
        this returns. The dropped replies are counted in this round's metrics.
        """
        screening = self.screen(replies)
        self.admitted = (server_round, screening)
        return screening.messages

    def aggregate_train(
        self,
        server_round: int,
        replies: Iterable[Message],
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate usable replies by relevance and merge anchors per partition."""
        earlier = self.admitted[1] if self.admitted and self.admitted[0] == server_round else None
        self.admitted = None
        screening = self.screen(replies, count_releases=earlier is None)
        if earlier is not None:
            screening.add_drops(earlier)
        counts = screening.counts()
        log(INFO, "aggregate_train: %s", counts)
        if not screening.updates:  # the privacy figure is stated every round, usable or not
            return None, metric_record(counts | self.privacy_metrics())
        updates = screening.updates
        new_arrays, drift = self._aggregate(server_round, updates)
        metrics = round_metrics(updates, self.bounds.max_client_share) | counts
        metrics["update-norm-max"] = max(screening.model_norms)  # to choose max-update-norm
        if split_payload(new_arrays)[1] is not None:
            metrics["anchor-change-norm-max"] = max(screening.anchor_norms)
            metrics["anchor-drift"] = drift
            metrics["anchor-partitions"] = len(self.anchor_store.decayed_weights(server_round))
        metrics |= self.privacy_metrics()
        return arrays_to_record(new_arrays), metric_record(metrics)

    def screen(self, replies: Iterable[Message], *, count_releases: bool = True) -> Screening:
        """Check every reply on its own; keep the usable ones, sorted by partition.

        ``count_releases`` (local anchor DP) counts every reply that arrived as its
        client's release; off for a second look at replies :meth:`admit` already counted.
        """
        screening = Screening()
        arrived = list(replies)
        for msg in arrived:
            parsed = self.parse_reply(msg)
            if isinstance(parsed, ClientUpdate):
                parsed = self.partition_problem(parsed, screening.updates) or parsed
            if isinstance(parsed, ClientUpdate):
                screening.updates.append(parsed)
                screening.messages.append(msg)
                continue
            screening.failures += msg.has_error()
            screening.rejected += not msg.has_error()
            log(WARNING, "FedASO: dropped reply of node %s: %s", msg.metadata.src_node_id, parsed)
        if count_releases and self.privacy.anchor_dp == "local":
            self.record_local_releases(
                key for key in map(self.release_key, arrived) if key is not None
            )
        self.drop_norm_outliers(screening)
        return screening

    def partition_problem(self, update: ClientUpdate, accepted: list[ClientUpdate]) -> str | None:
        """Why ``update`` may not speak for its partition this round, or None (then bound)."""
        if repeats_partition(update, accepted):
            return f"{update.partition} already replied this round"
        return self.partitions.claim(update.node_id, update.partition)

    def release_key(self, msg: Message) -> str | None:
        """The key a reply's local-mode release is counted under; None for an error reply.

        The partition its node is bound to, else the one it reports while that is within
        the federation's size, else its node: a node inventing partitions cannot grow the
        count without bound.
        """
        reported = released_partition(msg)
        if reported is None:
            return None
        node_id = msg.metadata.src_node_id
        bound = self.partitions.key_of.get(node_id)
        if bound is not None:
            return bound
        index, size = partition_index(reported), self.partitions.federation_size
        return reported if index is None or not size or index < size else f"node-{node_id}"

    def record_local_releases(self, partitions: Iterable[str]) -> None:
        """Count one local-mode release for each of ``partitions`` (the server's view).

        Every reply that arrived counts, accepted or not: a reply the server drops (rejected,
        an outlier, a repeat) left its client all the same.
        """
        for partition in partitions:
            self.local_releases[partition] = self.local_releases.get(partition, 0) + 1

    def anchor_epsilon(self) -> float:
        """Cumulative epsilon of the anchor releases at ``anchor-delta`` (Opacus' accountant).

        Central: the noised global releases, subsampled at this round's sampling rate.
        Local: the client that released most often, without amplification, since the
        server sees who replied.
        """
        if self.privacy.anchor_dp == "central":
            return self.anchor_account.epsilon(self.privacy.anchor_delta)
        account = PrivacyAccount()
        account.record(
            noise_multiplier=self.privacy.anchor_noise_multiplier,
            sample_rate=1.0,
            steps=max(self.local_releases.values(), default=0),
        )
        return account.epsilon(self.privacy.anchor_delta)

    def privacy_metrics(self) -> dict[str, float]:
        """``anchor-epsilon`` and ``anchor-delta`` when anchors are private; else nothing."""
        if not self.privacy.anchors_private:
            return {}
        return {ANCHOR_EPSILON: self.anchor_epsilon(), "anchor-delta": self.privacy.anchor_delta}

    def drop_norm_outliers(self, screening: Screening) -> None:
        """Drop updates whose model or anchor change exceeds a norm bound; sort the rest.

        Model updates and anchor changes are bounded separately, each against its own
        median (their scales differ). Model updates are also bounded by
        ``max-update-norm``; anchor changes, which live in the embedding space's units, by
        :func:`anchor_change_limit` instead (a multiple of the anchors' own norm, or what an
        honest local DP release can reach), so that honest moves pass whole at any width
        and ``M`` (docs/SPEC.md section 13); a payload without anchors has none to bound.
        The kept updates are sorted by partition so that the aggregate does not depend on
        the order in which replies arrived.
        """
        global_model, global_anchors = split_payload(self.global_arrays)
        model_norms, anchor_norms = [], []
        for update in screening.updates:  # replies' arrays were checked against the global's
            model_arrays, anchors = split_payload(update.arrays)
            model_norms.append(update_norm(model_arrays, global_model))
            anchor_norms.append(
                0.0
                if anchors is None or global_anchors is None
                else update_norm({"a": anchors}, {"a": global_anchors})
            )
        ratio, limit = self.bounds.max_update_norm_ratio, self.bounds.max_update_norm
        anchor_limit = (
            0.0 if global_anchors is None else anchor_change_limit(global_anchors, self.privacy)
        )
        flags = [
            model_flag or anchor_flag
            for model_flag, anchor_flag in zip(
                norm_outliers(model_norms, ratio, limit),
                norm_outliers(anchor_norms, ratio, anchor_limit),
                strict=True,
            )
        ]
        kept = []
        for update, msg, flag, *norms in zip(
            screening.updates, screening.messages, flags, model_norms, anchor_norms, strict=True
        ):
            if flag:
                log(
                    WARNING,
                    "FedASO: dropped reply of node %s (%s): update norm %.4g / anchor change "
                    "norm %.4g exceeds its bound (%s / %.4g) or %s x the round's median",
                    update.node_id,
                    update.partition,
                    *norms,
                    limit,
                    anchor_limit,
                    ratio,
                )
                continue
            kept.append((update.partition, update, msg, norms))
        kept.sort(key=lambda entry: entry[0])
        screening.updates = [update for _, update, _, _ in kept]
        screening.messages = [msg for _, _, msg, _ in kept]
        screening.model_norms = [norms[0] for *_, norms in kept]
        screening.anchor_norms = [norms[1] for *_, norms in kept]
        dropped = len(flags) - len(kept)
        screening.outliers += dropped
        screening.rejected += dropped

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Average the usable evaluation replies; a bad one is logged and left out.

        Flower's own check raises for the whole round on one inconsistent reply.
        """
        usable: list[Message] = []
        for msg in replies:
            problem = evaluate_reply_problem(msg, self.weighted_by_key)
            if problem is None and usable and metric_shape(msg) != metric_shape(usable[0]):
                problem = "its metric keys differ from the first usable reply's"
            if problem is None:
                usable.append(msg)
                continue
            log(
                WARNING,
                "FedASO: dropped evaluation of node %s: %s",
                msg.metadata.src_node_id,
                problem,
            )
        return super().aggregate_evaluate(server_round, usable) if usable else None

    def state_dict(self) -> dict[str, Any]:
        """The strategy's state across rounds, for a checkpoint.

        The anchor store, the partition binding, and the anchor privacy accounting.
        """
        return {
            "anchor-store": self.anchor_store.state_dict(),
            "partition-binding": self.partitions.state_dict(),
            "anchor-accountant": list(self.anchor_account.accountant.history),
            "local-releases": dict(self.local_releases),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`."""
        self.anchor_store.load_state_dict(state["anchor-store"])
        if "partition-binding" in state:  # checkpoints before the binding have none
            self.partitions.load_state_dict(state["partition-binding"])
        self.anchor_account.accountant.history = [
            tuple(release) for release in state.get("anchor-accountant", [])
        ]
        self.local_releases = dict(state.get("local-releases", {}))

    def anchors(self) -> np.ndarray:
        """The global anchor set of this round (``configure_train`` checked it is there)."""
        return anchors_of(self.global_arrays)

    def _aggregate(
        self, server_round: int, updates: list[ClientUpdate]
    ) -> tuple[dict[str, np.ndarray], float]:
        """Return the next global payload and the mean movement of the anchor rows."""
        previous = self.anchors()
        cap = self.bounds.max_client_share
        if self.privacy.anchor_dp == "central":  # a uniform mean of clipped changes already
            self._record_central_release(server_round, updates, previous)
            merged = self.anchor_store.merge(server_round)
        else:
            for update in updates:
                report = AnchorReport(anchors_of(update.arrays), update.weight, server_round)
                self.anchor_store.record(update.partition, report)
            merged = self.anchor_store.merge(server_round, max_share=cap, previous=previous)
        merged = previous if merged is None else merged
        change = merged.astype(np.float64) - previous.astype(np.float64)  # float32 may overflow
        drift = float(np.linalg.norm(change, axis=1).mean())
        return join_payload(self.aggregate_models(updates), merged), drift

    def aggregate_models(self, updates: Sequence[ClientUpdate]) -> dict[str, np.ndarray]:
        """The updates' models averaged by their weights, no reply above its share cap."""
        return capped_average(
            [split_payload(update.arrays)[0] for update in updates],
            [update.weight for update in updates],
            max_share=self.bounds.max_client_share,
            previous=split_payload(self.global_arrays)[0],
        )

    def _record_central_release(
        self, server_round: int, updates: list[ClientUpdate], previous: np.ndarray
    ) -> None:
        """DP-FedAvg on this round's fresh anchor changes; store only the noised release.

        Weights are uniform and the denominator is the number of sampled clients, fixed
        before any reply: relevance weights are data-dependent and would change the
        sensitivity ``C / n``. Raw reports are never stored, so staleness decay can only
        reuse privatized releases (post-processing), never spend a report twice.
        """
        deltas = [anchors_of(u.arrays).astype(np.float64) - previous for u in updates]
        noisy_mean = central_noisy_mean(
            deltas,
            clip=self.privacy.anchor_change_bound(len(previous)),
            noise_multiplier=self.privacy.anchor_noise_multiplier,
            expected_count=max(self.sampled_count, len(deltas)),
            rng=fresh_rng(),
        )
        release = (previous + noisy_mean).astype(previous.dtype)
        self.anchor_store.accumulate(CENTRAL_RELEASES, release, server_round)
        self.anchor_account.record(
            noise_multiplier=self.privacy.anchor_noise_multiplier, sample_rate=self.sample_rate
        )


def round_metrics(updates: Sequence[ClientUpdate], max_share: float) -> dict[str, float | int]:
    """Aggregate the replies' metrics: token- or example-weighted means, weight spread.

    ``client-weight-share-max`` is the largest share any reply holds of the new model,
    under the cap ``max_share``.
    """

    def column(key: str) -> np.ndarray:
        return np.array([u.metrics.get(key, math.nan) for u in updates], dtype=np.float64)

    tokens, examples, relevance = (
        column("num-tokens"),
        column("num-examples"),
        column("mean-relevance"),
    )
    weights = np.array([u.weight for u in updates], dtype=np.float64)
    return {
        "num-examples": int(examples.sum()),
        "num-tokens": int(tokens.sum()),
        "train-loss": float(np.average(column("train-loss"), weights=examples)),
        "mean-relevance": float(np.average(relevance, weights=tokens)),
        "high-relevance-fraction": float(
            np.average(column("high-relevance-fraction"), weights=tokens)
        ),
        "client-relevance-min": float(relevance.min()),
        "client-relevance-max": float(relevance.max()),
        "client-relevance-std": float(relevance.std()),
        "client-weight-share-max": float(capped_shares(list(weights), max_share)[0].max()),
    } | {
        f"client-{key}-max": float(np.nanmax(column(key)))
        for key in CLIENT_EPSILONS
        if any(key in u.metrics for u in updates)
    }


def anchor_change_limit(global_anchors: np.ndarray, privacy: PrivacyConfig) -> float:
    """The absolute bound on one reply's anchor change (Frobenius norm); 0 = none.

    Without anchor DP: ``ANCHOR_CHANGE_LIMIT`` x ``||A||_F``. Under local DP: the norm no
    honest noised release exceeds (``local_release_norm_bound``). Under central DP none:
    the server clips every change to C itself before it counts.
    """
    if privacy.anchor_dp == "central":
        return 0.0
    if privacy.anchor_dp == "local":
        return local_release_norm_bound(
            clip=privacy.anchor_change_bound(len(global_anchors)),
            noise_multiplier=privacy.anchor_noise_multiplier,
            size=global_anchors.size,
        )
    return ANCHOR_CHANGE_LIMIT * float(np.linalg.norm(global_anchors.astype(np.float64)))


def anchors_of(payload: Mapping[str, np.ndarray]) -> np.ndarray:
    """The anchor set of a payload that must carry one (checked replies and the global one)."""
    anchors = split_payload(payload)[1]
    if anchors is None:
        raise ValueError("the payload carries no anchor set")
    return anchors
