"""FedASO's server math: weights, weighted averaging and staleness-decayed anchor merging."""

import numpy as np
import pytest

from fedaso.aso.aggregation import (
    AnchorReport,
    PartitionAnchorStore,
    client_weight,
    weighted_average,
)


def test_client_weight_kinds():
    kwargs = {"mean_relevance": 0.25, "num_tokens": 80, "num_examples": 5}
    assert client_weight(kind="relevance", **kwargs) == 0.25
    assert client_weight(kind="relevance-x-examples", **kwargs) == 20.0
    assert client_weight(kind="examples", **kwargs) == 5.0
    with pytest.raises(ValueError, match="'tokens'"):
        client_weight(kind="tokens", **kwargs)


def test_weighted_average_matches_hand_computation():
    sets = [{"a": np.array([1.0, 2.0], dtype=np.float32)}, {"a": np.array([3.0, 6.0], np.float32)}]
    got = weighted_average(sets, [1.0, 3.0])
    np.testing.assert_allclose(got["a"], [(1 + 9) / 4, (2 + 18) / 4])
    assert got["a"].dtype == np.float32
    with pytest.raises(ValueError, match="sum to 0"):
        weighted_average(sets, [0.0, 0.0])


def test_staleness_decay_weights_absent_partitions_by_gamma_to_the_age():
    store = PartitionAnchorStore(staleness_decay=0.5)
    store.record("a", AnchorReport(np.zeros((2, 2)), weight=1.0, server_round=1))
    store.record("b", AnchorReport(np.ones((2, 2)), weight=1.0, server_round=4))
    assert store.decayed_weights(4) == {"a": 0.5**3, "b": 1.0}
    merged = store.merge(4)
    np.testing.assert_allclose(merged, np.full((2, 2), 1.0 / (1.0 + 0.125)))


def test_zero_decay_uses_only_this_rounds_reports():
    store = PartitionAnchorStore(staleness_decay=0.0)
    store.record("old", AnchorReport(np.zeros((2, 2)), weight=5.0, server_round=1))
    store.record("new", AnchorReport(np.full((2, 2), 3.0), weight=1.0, server_round=2))
    np.testing.assert_allclose(store.merge(2), np.full((2, 2), 3.0))
    assert store.merge(3) is None  # nobody reported in round 3


def test_bad_decay_names_the_value():
    with pytest.raises(ValueError, match=r"anchor-staleness-decay=1\.5"):
        PartitionAnchorStore(staleness_decay=1.5)
