"""The checks of one reply: can the server use it, and which partition sent it?

FedASO checks every reply on its own (Flower's built-in check fails a whole round on one
inconsistent reply): a training reply with an error, a missing record or key, wrong array
names, shapes or dtypes, non-finite values, a metric the server reads that is not a finite
number (a list, say), or a non-positive weight is turned into a reason string here, which
the strategy logs and counts; a usable one becomes a :class:`ClientUpdate`. What a reply
claims is bounded before it weighs anything (``fedaso.aso.robust.ReplyBounds``): its mean
relevance is clipped to [0, 1], its honest range, and its counts to
``max-reported-count``. Evaluation replies are checked likewise. Record and metric names
are those of ``fedaso.wire``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from flwr.app import Message, MetricRecord

from fedaso.aso.aggregation import client_weight, is_usable_weight
from fedaso.aso.robust import ReplyBounds
from fedaso.wire import (
    CLIENT_EPSILONS,
    COUNT_METRICS,
    MEAN_RELEVANCE,
    NUM_EXAMPLES,
    NUM_TOKENS,
    OPTIONAL_TRAIN_METRICS,
    PARTITION_ID,
    REQUIRED_TRAIN_METRICS,
)
from flower_wire.records import record_to_arrays
from strategies.partitions import partition_key_of


def parse_train_reply(
    msg: Message,
    global_arrays: dict[str, np.ndarray],
    aggregation_weight: str,
    bounds: ReplyBounds | None = None,
) -> ClientUpdate | str:
    """Return the reply's update, or a string saying why it cannot be aggregated.

    The update's weight comes from its claims as ``bounds`` clip them (see the module
    docstring); its metrics are kept as sent, for the round's report.
    """
    bounds = bounds or ReplyBounds.off()
    if msg.has_error():
        return f"client error: {msg.error.reason}"
    content = msg.content
    if len(content.array_records) != 1 or len(content.metric_records) != 1:
        return (
            f"expected one ArrayRecord and one MetricRecord, got "
            f"{len(content.array_records)} and {len(content.metric_records)}"
        )
    metrics = next(iter(content.metric_records.values()))
    problem = metrics_problem(metrics)
    if problem is not None:
        return problem
    partition = partition_key(msg.metadata.src_node_id, metrics.get(PARTITION_ID))
    if partition is None:
        return f"metric {PARTITION_ID!r} must be an integer >= 0, got {metrics[PARTITION_ID]!r}"
    try:
        arrays = record_to_arrays(next(iter(content.array_records.values())))
    except Exception as error:  # any undecodable array drops the reply, not the round
        return f"arrays cannot be decoded: {error}"
    problem = arrays_problem(arrays, global_arrays)
    if problem is not None:
        return problem
    claims = bounded_claims(metrics, bounds)
    weight = client_weight(
        kind=aggregation_weight,
        mean_relevance=float(claims[MEAN_RELEVANCE]),
        num_tokens=int(claims[NUM_TOKENS]),
        num_examples=int(claims[NUM_EXAMPLES]),
    )
    if not is_usable_weight(weight):
        return f"aggregation weight {weight} is not finite and positive"
    bounded = MetricRecord(dict(metrics) | claims)
    return ClientUpdate(msg.metadata.src_node_id, arrays, bounded, weight, partition)


def bounded_claims(metrics: MetricRecord, bounds: ReplyBounds) -> dict[str, int | float]:
    """The claims that weigh a reply, within their bounds: relevance in [0, 1], counts capped.

    Mean relevance is a mean of values in [0, 1] (docs/SPEC.md section 3); a count above
    ``max-reported-count`` counts as that many (and stays exact in a float sum).
    """
    cap = bounds.max_reported_count
    return {
        MEAN_RELEVANCE: min(max(scalar(metrics, MEAN_RELEVANCE), 0.0), 1.0),
        NUM_TOKENS: int(min(scalar(metrics, NUM_TOKENS), cap)),
        NUM_EXAMPLES: int(min(scalar(metrics, NUM_EXAMPLES), cap)),
    }


def metrics_problem(metrics: MetricRecord) -> str | None:
    """Why a training reply's metrics are unusable, or None.

    Every metric the server reads must be one number: finite, except a client's epsilon,
    which may be infinite (no privacy), never NaN.
    """
    for key in REQUIRED_TRAIN_METRICS:
        value = metrics.get(key)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return f"metric {key!r} is missing or not a finite number: {value!r}"
    for key in OPTIONAL_TRAIN_METRICS:
        value = metrics.get(key)
        if value is None:
            continue
        infinite_allowed = key in CLIENT_EPSILONS
        if not isinstance(value, int | float) or not (
            math.isfinite(value) or (infinite_allowed and value == math.inf)
        ):
            return f"metric {key!r} is not a finite number: {value!r}"
    for key in COUNT_METRICS:
        value = scalar(metrics, key)
        if not value.is_integer() or value < 1:
            return f"metric {key!r} must be an integer >= 1, got {metrics[key]!r}"
    return None


def scalar(metrics: MetricRecord, key: str) -> float:
    """The number under ``key`` (checked by :func:`metrics_problem` first)."""
    value = metrics[key]
    if not isinstance(value, int | float):
        raise TypeError(f"metric {key!r} is not a number: {value!r}")
    return float(value)


def arrays_problem(
    arrays: dict[str, np.ndarray], global_arrays: dict[str, np.ndarray]
) -> str | None:
    """Return why ``arrays`` do not match the global payload, or None if they do."""
    if list(arrays) != list(global_arrays):
        missing = sorted(set(global_arrays) - set(arrays))
        extra = sorted(set(arrays) - set(global_arrays))
        return f"array names differ from the global payload: missing {missing}, extra {extra}"
    for name, array in arrays.items():
        expected = global_arrays[name]
        if array.shape != expected.shape:
            return f"array {name!r} has shape {array.shape}, expected {expected.shape}"
        if array.dtype != expected.dtype:
            return f"array {name!r} has dtype {array.dtype}, expected {expected.dtype}"
        if not np.isfinite(array).all():
            return f"array {name!r} holds non-finite values"
    return None


@dataclass(frozen=True)
class ClientUpdate:
    """A usable training reply: its node, arrays, metrics and aggregation weight."""

    node_id: int
    arrays: dict[str, np.ndarray]
    metrics: MetricRecord  # as sent, but relevance and counts within their bounds
    weight: float
    partition: str  # anchor store key: "partition-K" as reported, else "node-ID"


def partition_key(node_id: int, reported: object) -> str | None:
    """The anchor store key of a reply: its reported ``partition-id``, else its node id.

    Returns None when a ``partition-id`` is reported but is not an integer >= 0.
    """
    if reported is None:
        return f"node-{node_id}"
    if not isinstance(reported, int | float) or not float(reported).is_integer() or reported < 0:
        return None
    return partition_key_of(int(reported))


def released_partition(msg: Message) -> str | None:
    """The store key of the client that released this reply, or None for an error reply.

    Under ``anchor-dp = local`` every reply that arrived carried a noised anchor release,
    whether or not the server can use it; a bad or missing ``partition-id`` falls back to
    the node id, so that nothing released goes uncounted.
    """
    if msg.has_error():
        return None
    records = list(msg.content.metric_records.values())
    reported = records[0].get(PARTITION_ID) if len(records) == 1 else None
    node_id = msg.metadata.src_node_id
    return partition_key(node_id, reported) or f"node-{node_id}"


def repeats_partition(update: ClientUpdate, accepted: list[ClientUpdate]) -> bool:
    """Whether ``update``'s partition already has an accepted reply this round."""
    return any(other.partition == update.partition for other in accepted)


def metric_shape(msg: Message) -> dict[str, int | None]:
    """A reply's metric keys with each list value's length: what averaging needs to match."""
    metrics = next(iter(msg.content.metric_records.values()))
    return {k: len(v) if isinstance(v, list) else None for k, v in metrics.items()}


def evaluate_reply_problem(msg: Message, weighted_by_key: str) -> str | None:
    """Say why an evaluation reply cannot be averaged, or None if it can."""
    if msg.has_error():
        return f"client error: {msg.error.reason}"
    records = msg.content.metric_records
    if len(records) != 1:
        return f"expected one MetricRecord, got {len(records)}"
    metrics = next(iter(records.values()))
    weight = metrics.get(weighted_by_key)
    if not isinstance(weight, int | float) or not math.isfinite(weight) or weight <= 0:
        return f"metric {weighted_by_key!r} is missing or not a finite number > 0: {weight!r}"
    for key, value in metrics.items():
        values = value if isinstance(value, list) else [value]
        if not all(math.isfinite(v) for v in values):
            return f"metric {key!r} is not finite: {value!r}"
    return None
