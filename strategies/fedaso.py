"""FedASO: relevance-weighted aggregation with per-partition anchor merging (Flower Strategy).

Implements spec sections 5, 6 and 10 on Flower's message API. Each training reply carries
one ArrayRecord (the model's arrays plus the anchor set under ``fedaso.payload.ANCHORS_KEY``)
and one MetricRecord (``num-examples``, ``num-tokens``, ``mean-relevance``, ...). The model
is averaged with weights ``w_k`` (mean relevance by default, report Eq. 7); anchor sets are
stored per partition (the reply's source node) with their round, and merged with staleness
decay into the next global set.

Unlike Flower's built-in reply check, which fails the whole round on one inconsistent
reply, FedASO checks each reply on its own (``strategies.replies``): a reply with an error,
a missing record or key, wrong array names, shapes or dtypes, non-finite values, a
non-positive weight, or an update whose norm exceeds ``max_update_norm_ratio`` times the
round's median (``fedaso.robust``) is logged, counted in the round's metrics and left out;
the others are aggregated, in partition order so that the result does not depend on the
order replies arrive in. A round with no
usable reply keeps the previous global state. Anchor reports are stored under the partition
the client reports (``partition-id``), so the store survives a restart in which every node
gets a new id (``state_dict``/``load_state_dict`` checkpoint it). Because the anchors ride
inside the model's ArrayRecord, Flower's DP wrappers clip and noise model and anchors together
without knowing about ASO.

Anchor privacy (spec section 7, docs/PRIVACY.md): under ``anchor-dp = local`` the reports
arrive privatized and are merged as above; under ``anchor-dp = central`` the server merges
only this round's fresh changes, clipped, with uniform weights, noised once and divided by
the number of sampled clients (DP-FedAvg), and the staleness decay then acts on these
privatized per-round releases, never on a raw report. Every round's metrics carry
``anchor-epsilon`` from Opacus' accountant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedaso.aggregation import (
    AnchorReport,
    PartitionAnchorStore,
    weighted_average,
)
from fedaso.privacy import PrivacyAccount, PrivacyConfig, central_noisy_mean, fresh_rng
from fedaso.robust import norm_outliers, update_norm
from fedaso.run_config import AGGREGATION_WEIGHTS
from fedaso.wire import ANCHOR_EPSILON, CLIENT_EPSILONS, join_payload, split_payload
from flower_wire.records import arrays_to_record, metric_record, record_to_arrays
from strategies.replies import (
    ClientUpdate,
    evaluate_reply_problem,
    metric_shape,
    parse_train_reply,
    released_partition,
    repeats_partition,
)

CENTRAL_RELEASES = "central-releases"  # anchor store key of central mode's running release


class FedASO(FedAvg):
    """Federated Active Semantic Optimization strategy.

    Parameters
    ----------
    fraction_train : float (default: 1.0)
        Fraction of nodes sampled for training each round.
    fraction_evaluate : float (default: 1.0)
        Fraction of nodes sampled for federated evaluation each round.
    min_train_nodes : int (default: 2)
        Minimum number of nodes sampled for training.
    min_evaluate_nodes : int (default: 2)
        Minimum number of nodes sampled for evaluation.
    min_available_nodes : int (default: 2)
        Minimum number of connected nodes before a round starts.
    aggregation_weight : str (default: "relevance")
        ``"relevance"`` (mean relevance, Eq. 7), ``"relevance-x-examples"`` (sum of
        relevance over tokens) or ``"examples"`` (FedAvg's weights).
    anchor_staleness_decay : float (default: 0.5)
        ``gamma`` in [0, 1]: a partition's anchor report that is ``age`` rounds old counts
        with weight ``gamma ** age``; 0 merges only this round's reports.
    privacy : PrivacyConfig or None (default: None, no anchor DP)
        Anchor release mode (``none``, ``local``, ``central``), clip, noise and delta.
    max_update_norm_ratio : float (default: 0.0, off)
        Drop a reply whose model update or anchor change is longer than this many times
        the round's median (``fedaso.robust``); 0 turns the bound off. Always off under
        central DP (``PrivacyConfig.central_dp``), where one client's reply must not decide
        whether another's counts (docs/PRIVACY.md).
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
        aggregation_weight: str = "relevance",
        anchor_staleness_decay: float = 0.5,
        privacy: PrivacyConfig | None = None,
        max_update_norm_ratio: float = 0.0,
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
        self.max_update_norm_ratio = max_update_norm_ratio
        if self.privacy.central_dp and max_update_norm_ratio:
            # A bound relative to the round's median lets one client's data decide whether
            # another's reply counts, which central DP's sensitivity does not allow.
            log(INFO, "FedASO: the median-relative update-norm bound is off under central DP")
            self.max_update_norm_ratio = 0.0

    def summary(self) -> None:
        """Log summary configuration of the strategy."""
        log(INFO, "\t├──> FedASO:")
        log(INFO, "\t│\t├── Aggregation weight: %s", self.aggregation_weight)
        log(INFO, "\t│\t├── Anchor staleness decay: %s", self.anchor_store.staleness_decay)
        log(INFO, "\t│\t└── Anchor DP: %s", self.privacy.anchor_dp)
        super().summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the global arrays the replies will be checked against, then sample."""
        self.global_arrays = record_to_arrays(arrays)
        if split_payload(self.global_arrays)[1] is None:
            raise ValueError("FedASO needs the global anchor set in the ArrayRecord it sends")
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self.sampled_count = len(messages)
        connected = len(list(grid.get_node_ids()))
        self.sample_rate = min(1.0, len(messages) / connected) if connected else 1.0
        return messages

    def parse_reply(self, msg: Message) -> ClientUpdate | str:
        """Return the reply's update, or a string saying why it cannot be aggregated."""
        return parse_train_reply(msg, self.global_arrays, self.aggregation_weight)

    def aggregate_train(
        self,
        server_round: int,
        replies: Iterable[Message],
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate usable replies by relevance and merge anchors per partition."""
        updates: list[ClientUpdate] = []
        failures, rejected = 0, 0
        released: list[str] = []  # every reply that arrived was released by its client
        for msg in replies:
            source = released_partition(msg)
            if source is not None:
                released.append(source)
            parsed = self.parse_reply(msg)
            if isinstance(parsed, ClientUpdate) and repeats_partition(parsed, updates):
                parsed = f"{parsed.partition} already replied this round"
            if isinstance(parsed, ClientUpdate):
                updates.append(parsed)
                continue
            failures += msg.has_error()
            rejected += not msg.has_error()
            log(WARNING, "FedASO: dropped reply of node %s: %s", msg.metadata.src_node_id, parsed)
        if self.privacy.anchor_dp == "local":
            self.record_local_releases(released)
        updates, outliers = self.drop_norm_outliers(updates)
        rejected += outliers
        log(
            INFO,
            "aggregate_train: %d usable replies, %d failures, %d rejected",
            len(updates),
            failures,
            rejected,
        )
        counts: dict[str, int | float] = {
            "num-replies": len(updates),
            "num-failures": failures,
            "num-rejected": rejected,
            "num-norm-outliers": outliers,
        }
        if not updates:  # the privacy figure is stated every round, usable replies or not
            return None, metric_record(counts | self.privacy_metrics())
        new_arrays, drift = self._aggregate(server_round, updates)
        metrics = round_metrics(updates) | counts
        metrics["anchor-drift"] = drift
        metrics["anchor-partitions"] = len(self.anchor_store.decayed_weights(server_round))
        metrics |= self.privacy_metrics()
        return arrays_to_record(new_arrays), metric_record(metrics)

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

    def drop_norm_outliers(self, updates: list[ClientUpdate]) -> tuple[list[ClientUpdate], int]:
        """Drop updates whose model or anchor change exceeds the norm bound; sort the rest.

        Model updates and anchor changes are bounded separately, each against its own
        median, since their scales differ. The kept updates are sorted by partition so that
        the aggregate does not depend on the order in which replies arrived.
        """
        global_model, global_anchors = split_payload(self.global_arrays)[0], self.anchors()
        model_norms, anchor_norms = [], []
        for update in updates:
            model_arrays, anchors = split_payload(update.arrays)[0], anchors_of(update.arrays)
            model_norms.append(update_norm(model_arrays, global_model))
            anchor_norms.append(update_norm({"a": anchors}, {"a": global_anchors}))
        ratio = self.max_update_norm_ratio
        flags = zip(
            norm_outliers(model_norms, ratio), norm_outliers(anchor_norms, ratio), strict=True
        )
        kept = []
        for update, (model_flag, anchor_flag), norms in zip(
            updates, flags, zip(model_norms, anchor_norms, strict=True), strict=True
        ):
            if model_flag or anchor_flag:
                log(
                    WARNING,
                    "FedASO: dropped reply of node %s (%s): update norm %.4g / anchor change "
                    "norm %.4g exceeds %s x the round's median",
                    update.node_id,
                    update.partition,
                    *norms,
                    ratio,
                )
                continue
            kept.append(update)
        return sorted(kept, key=lambda u: u.partition), len(updates) - len(kept)

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
        """The strategy's state across rounds, for a checkpoint: anchor store and privacy."""
        return {
            "anchor-store": self.anchor_store.state_dict(),
            "anchor-accountant": list(self.anchor_account.accountant.history),
            "local-releases": dict(self.local_releases),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`."""
        self.anchor_store.load_state_dict(state["anchor-store"])
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
        model_sets = [split_payload(update.arrays)[0] for update in updates]
        previous = self.anchors()
        if self.privacy.anchor_dp == "central":
            self._record_central_release(server_round, updates, previous)
        else:
            for update in updates:
                report = AnchorReport(anchors_of(update.arrays), update.weight, server_round)
                self.anchor_store.record(update.partition, report)
        merged = self.anchor_store.merge(server_round)
        merged = previous if merged is None else merged
        drift = float(np.linalg.norm(merged - previous, axis=1).mean())
        model = weighted_average(model_sets, [u.weight for u in updates])
        return join_payload(model, merged), drift

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


def round_metrics(updates: list[ClientUpdate]) -> dict[str, float | int]:
    """Aggregate the replies' metrics: token- or example-weighted means, weight spread."""

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
        "client-weight-share-max": float(weights.max() / weights.sum()),
    } | {
        f"client-{key}-max": float(np.nanmax(column(key)))
        for key in CLIENT_EPSILONS
        if any(key in u.metrics for u in updates)
    }


def anchors_of(payload: Mapping[str, np.ndarray]) -> np.ndarray:
    """The anchor set of a payload that must carry one (checked replies and the global one)."""
    anchors = split_payload(payload)[1]
    if anchors is None:
        raise ValueError("the payload carries no anchor set")
    return anchors
