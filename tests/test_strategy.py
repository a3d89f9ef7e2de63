"""The FedASO strategy on real Flower messages: weights, anchor merge, bad replies."""

import numpy as np
import pytest
from flwr.app import ArrayRecord

from fedaso.wire import ANCHORS_KEY
from flower_wire.records import arrays_to_record, record_to_arrays
from strategies.fedaso import FedASO
from tests.flower_helpers import error_reply, metrics, payload, train_reply


def configured(strategy: FedASO, global_payload) -> FedASO:
    # configure_train records the global arrays; it needs a grid only to sample nodes,
    # so the test sets the same state configure_train would.
    strategy.global_arrays = {k: v.copy() for k, v in global_payload.items()}
    return strategy


def test_model_is_averaged_by_mean_relevance():
    strategy = configured(FedASO(anchor_staleness_decay=0.0), payload(0.0, 0.0))
    replies = [
        train_reply(1, payload(1.0, 1.0), metrics(relevance=0.2, examples=100)),
        train_reply(2, payload(4.0, 2.0), metrics(relevance=0.6, examples=1)),
    ]
    arrays, agg = strategy.aggregate_train(1, replies)
    result = record_to_arrays(arrays)
    # w = (0.2, 0.6) -> (0.2*1 + 0.6*4) / 0.8 = 3.25; examples would have given ~1.03
    np.testing.assert_allclose(result["w"], 3.25, rtol=1e-6)
    np.testing.assert_allclose(result[ANCHORS_KEY], (0.2 * 1 + 0.6 * 2) / 0.8, rtol=1e-6)
    assert agg["num-replies"] == 2 and agg["num-rejected"] == 0
    assert agg["client-relevance-min"] == pytest.approx(0.2)
    assert agg["client-relevance-max"] == pytest.approx(0.6)
    assert agg["mean-relevance"] == pytest.approx(0.4)  # equal token counts


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("examples", (100 * 1 + 1 * 4) / 101),
        ("relevance-x-examples", (0.2 * 50 * 1 + 0.6 * 400 * 4) / (0.2 * 50 + 0.6 * 400)),
    ],
)
def test_other_weightings(kind, expected):
    strategy = configured(FedASO(aggregation_weight=kind), payload(0.0, 0.0))
    replies = [
        train_reply(1, payload(1.0, 1.0), metrics(relevance=0.2, examples=100, tokens=50)),
        train_reply(2, payload(4.0, 2.0), metrics(relevance=0.6, examples=1, tokens=400)),
    ]
    arrays, _ = strategy.aggregate_train(1, replies)
    np.testing.assert_allclose(record_to_arrays(arrays)["w"], expected, rtol=1e-6)


def bad_replies():
    nan_arrays = payload(1.0, 1.0)
    nan_arrays["w"][0, 0] = np.nan
    missing_metric = metrics(0.5)
    del missing_metric["mean-relevance"]
    two_records = train_reply(8, payload(1.0, 1.0), metrics(0.5))
    two_records.content["extra"] = ArrayRecord()
    return {
        "client error": error_reply(3),
        "non-finite": train_reply(4, nan_arrays, metrics(0.5)),
        "metric 'mean-relevance'": train_reply(5, payload(1.0, 1.0), missing_metric),
        "shape": train_reply(6, payload(1.0, 1.0, shape=(3, 3)), metrics(0.5)),
        "anchor shape": train_reply(7, payload(1.0, 1.0, anchors_shape=(5, 3)), metrics(0.5)),
        "two array records": two_records,
        "zero weight": train_reply(9, payload(1.0, 1.0), metrics(0.0)),
        "inf relevance": train_reply(10, payload(1.0, 1.0), metrics(float("inf"))),
        "no anchors": train_reply(11, {"w": np.ones((2, 3), np.float32)}, metrics(0.5)),
    }


@pytest.mark.parametrize("case", list(bad_replies()))
def test_a_bad_reply_is_dropped_and_the_round_goes_on(case):
    strategy = configured(FedASO(), payload(0.0, 0.0))
    good = train_reply(1, payload(2.0, 3.0), metrics(relevance=0.5))
    arrays, agg = strategy.aggregate_train(1, [good, bad_replies()[case]])
    result = record_to_arrays(arrays)
    np.testing.assert_allclose(result["w"], 2.0)
    assert agg["num-replies"] == 1
    assert agg["num-failures"] + agg["num-rejected"] == 1


def test_no_usable_reply_keeps_the_previous_state():
    strategy = configured(FedASO(), payload(0.0, 0.0))
    arrays, agg = strategy.aggregate_train(1, [error_reply(1), error_reply(2)])
    assert arrays is None
    assert agg["num-failures"] == 2


def test_absent_partition_still_counts_with_decay():
    strategy = configured(FedASO(anchor_staleness_decay=0.5), payload(0.0, 0.0))
    strategy.aggregate_train(1, [train_reply(1, payload(1.0, 4.0), metrics(0.5))])
    strategy.global_arrays = payload(1.0, 4.0)
    arrays, agg = strategy.aggregate_train(2, [train_reply(2, payload(1.0, 1.0), metrics(0.5))])
    # node 1 (age 1) weighs 0.5 * 0.5, node 2 weighs 0.5: (0.25*4 + 0.5*1) / 0.75 = 2
    np.testing.assert_allclose(record_to_arrays(arrays)[ANCHORS_KEY], 2.0, rtol=1e-6)
    assert agg["anchor-partitions"] == 2


def test_constructor_rejects_bad_values_by_name():
    with pytest.raises(ValueError, match="'median'"):
        FedASO(aggregation_weight="median")
    with pytest.raises(ValueError, match="anchor-staleness-decay=-1"):
        FedASO(anchor_staleness_decay=-1)


def test_records_round_trip():
    arrays = payload(1.5, 2.5)
    again = record_to_arrays(arrays_to_record(arrays))
    assert list(again) == list(arrays)
    for key in arrays:
        np.testing.assert_array_equal(again[key], arrays[key])
