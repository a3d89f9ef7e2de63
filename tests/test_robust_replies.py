"""Bad replies never poison or stop a round: dtypes, norms, counts, partitions, evaluation.

Real Flower messages; the spoiled replies come from ``clients.faults.spoil``, the same code
the fault-injection mod runs inside real ClientApps.
"""

import itertools

import numpy as np
import pytest
from flwr.app import Message, MetricRecord, RecordDict

from clients.faults import NORM_FACTOR, spoil
from fedaso.aggregation import weighted_average
from fedaso.faults import FAULT_KINDS, parse_fault_plan
from fedaso.robust import ReplyBounds, norm_outliers, update_norm
from flower_wire.records import record_to_arrays
from strategies.fedaso import FedASO
from tests.flower_helpers import error_reply, metrics, payload, reply_metadata, train_reply

GLOBAL = payload(0.0, 0.0)


def configured(**kwargs) -> FedASO:
    strategy = FedASO(**kwargs)
    strategy.global_arrays = {k: v.copy() for k, v in GLOBAL.items()}
    return strategy


def good(partition, value=1.0, relevance=0.5):
    return train_reply(
        100 + partition, payload(value, value), metrics(relevance) | {"partition-id": partition}
    )


def test_update_norm_matches_the_flattened_reference():
    rng = np.random.default_rng(0)
    a = {"x": rng.normal(size=(3, 4)), "y": rng.normal(size=5).astype(np.float32)}
    b = {"x": rng.normal(size=(3, 4)), "y": rng.normal(size=5).astype(np.float32)}
    flat = np.concatenate([(a[k] - b[k]).astype(np.float64).ravel() for k in a])
    assert update_norm(a, b) == pytest.approx(float(np.sqrt((flat**2).sum())))
    huge = {"x": np.full(4, 3e38, dtype=np.float32)}
    assert np.isfinite(update_norm(huge, {"x": np.zeros(4, np.float32)}))


def test_norm_outliers_are_relative_to_the_median():
    assert norm_outliers([1.0, 1.2, 0.9, 50.0], ratio=10) == [False, False, False, True]
    assert norm_outliers([1.0, 1.2, 0.9, 50.0], ratio=0) == [False] * 4
    assert norm_outliers([0.0, 0.0, 5.0], ratio=10) == [False, False, False]  # no scale
    assert norm_outliers([1.0, float("inf")], ratio=0) == [False, True]


def test_weighted_average_survives_weights_near_the_float_maximum():
    sets = [{"a": np.array([1.0], np.float32)}, {"a": np.array([3.0], np.float32)}]
    got = weighted_average(sets, [1e308, 1e308])
    np.testing.assert_allclose(got["a"], [2.0])


@pytest.mark.parametrize("kind", sorted(set(FAULT_KINDS) - {"raise", "delay"}))
def test_every_spoiled_reply_is_dropped_and_the_others_aggregated(kind):
    strategy = configured(bounds=ReplyBounds(max_update_norm_ratio=10.0))
    replies = [good(0, 1.0), good(1, 1.0), good(2, 1.0)]
    spoiled = replies[2]
    content = spoil(kind, spoiled.content, GLOBAL)
    replies[2] = Message(content=content, metadata=reply_metadata(102))
    arrays, agg = strategy.aggregate_train(1, replies)
    np.testing.assert_allclose(record_to_arrays(arrays)["w"], 1.0)
    assert agg["num-replies"] == 2
    assert agg["num-rejected"] == 1
    assert agg["num-norm-outliers"] == (1 if kind == "norm" else 0)


def test_norm_fault_is_really_large():
    content = spoil("norm", good(0, 1.0).content, GLOBAL)
    assert record_to_arrays(content["arrays"])["w"][0, 0] == pytest.approx(NORM_FACTOR)


def test_an_int_or_float16_model_array_is_named_in_the_reason():
    strategy = configured()
    for dtype in (np.int64, np.float16):
        arrays = payload(1.0, 1.0)
        arrays["w"] = arrays["w"].astype(dtype)
        reason = strategy.parse_reply(train_reply(1, arrays, metrics(0.5)))
        assert reason == f"array 'w' has dtype {np.dtype(dtype)}, expected float32"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"num-tokens": 0}, "metric 'num-tokens' must be an integer >= 1"),
        ({"num-examples": 2.5}, "metric 'num-examples' must be an integer >= 1"),
        ({"partition-id": -1}, "metric 'partition-id' must be an integer >= 0"),
        ({"partition-id": 1.5}, "metric 'partition-id' must be an integer >= 0"),
    ],
)
def test_impossible_counts_and_partitions_are_rejected(change, reason):
    reply = train_reply(1, payload(1.0, 1.0), metrics(0.5) | change)
    assert configured().parse_reply(reply).startswith(reason)


def test_a_partition_replying_twice_counts_once():
    strategy = configured()
    _, agg = strategy.aggregate_train(1, [good(0, 1.0), good(0, 3.0), good(1, 1.0)])
    assert agg["num-replies"] == 2 and agg["num-rejected"] == 1


def test_the_aggregate_does_not_depend_on_reply_order():
    values = [0.1, 1e-7, 3.3, 7e5, 0.77]
    results = []
    for order in itertools.islice(itertools.permutations(range(5)), 12):
        strategy = configured(anchor_staleness_decay=0.5)
        replies = [good(i, values[i], relevance=0.1 + 0.17 * i) for i in order]
        arrays, _ = strategy.aggregate_train(1, replies)
        results.append(record_to_arrays(arrays))
    for other in results[1:]:
        for key in results[0]:
            np.testing.assert_array_equal(other[key], results[0][key])


def evaluation(node_id, values):
    return Message(
        content=RecordDict({"metrics": MetricRecord(values)}), metadata=reply_metadata(node_id)
    )


def test_bad_evaluation_replies_are_dropped_not_fatal():
    replies = [
        evaluation(1, {"num-examples": 10, "loss": 1.0}),
        evaluation(2, {"num-examples": 30, "loss": 3.0}),
        evaluation(3, {"num-examples": 10, "loss": float("nan")}),
        evaluation(4, {"loss": 1.0}),
        evaluation(5, {"num-examples": 10, "loss": 1.0, "extra": 2.0}),
        error_reply(6),
    ]
    agg = configured().aggregate_evaluate(1, replies)
    assert agg["loss"] == pytest.approx((10 * 1.0 + 30 * 3.0) / 40)
    assert configured().aggregate_evaluate(1, [error_reply(1)]) is None


def test_fault_plans_parse_and_bad_ones_name_the_key():
    assert parse_fault_plan("") == {}
    assert parse_fault_plan("1:raise, 3:nan") == {1: "raise", 3: "nan"}
    with pytest.raises(ValueError, match=r"fault-plan='1:explode' is invalid"):
        parse_fault_plan("1:explode")
    with pytest.raises(ValueError, match="listed twice"):
        parse_fault_plan("1:nan,1:inf")
