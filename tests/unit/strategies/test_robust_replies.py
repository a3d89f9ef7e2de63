"""Bad replies never poison or stop a round: dtypes, norms, counts, partitions, evaluation.

Real Flower messages; the spoiled replies come from ``clients.fault_injection.spoil``, the same code
the fault-injection mod runs inside real ClientApps.
"""

import itertools
import json

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.fault_injection import NORM_FACTOR, spoil
from fedaso.aso.aggregation import weighted_average
from fedaso.aso.robust import (
    MAX_REPORTED_COUNT,
    ReplyBounds,
    capped_shares,
    norm_outliers,
    update_norm,
)
from fedaso.config import RunConfig
from fedaso.fault_plan import FAULT_KINDS, LYING_KINDS, parse_fault_plan
from fedaso.wire import ANCHORS_KEY
from flower_wire.records import arrays_to_record, record_to_arrays
from strategies.anchor_init import centroid_answer
from strategies.fedaso import FedASO, anchor_change_limit
from strategies.grids import PartitionOrderedGrid, RegisteredPartitions
from strategies.replies import ClientUpdate
from strategies.server_state import decode, encode
from tests.flower_helpers import error_reply, metrics, payload, reply_metadata, train_reply
from tests.unit.simulations.test_linkstate import populated_state, server_task_identity  # noqa: F401
from tests.unit.strategies.test_privacy_server import accounted

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


@pytest.mark.parametrize("kind", sorted(set(FAULT_KINDS) - {"raise", "delay"} - LYING_KINDS))
def test_every_spoiled_reply_is_dropped_and_the_others_aggregated(kind):
    strategy = configured(bounds=ReplyBounds.off(max_update_norm_ratio=10.0))
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


# -- Issue 17: one client cannot take a round, one reply cannot end the run ---------------


def liar(node, partition, value=100.0, **claims):
    """A well-formed reply that lies: its update is ``value`` everywhere, its claims huge."""
    return train_reply(
        node, payload(value, value), metrics(0.5) | {"partition-id": partition} | claims
    )


def test_claimed_relevance_is_clipped_to_one_and_counts_to_the_bound():
    bounds = ReplyBounds.off(max_reported_count=1000)
    update = configured(bounds=bounds).parse_reply(
        liar(9, 3, **{"mean-relevance": 1e6, "num-tokens": 1e308, "num-examples": 1e308})
    )
    assert isinstance(update, ClientUpdate)
    assert update.weight == 1.0
    assert (update.metrics["num-tokens"], update.metrics["num-examples"]) == (1000, 1000)
    for kind in ("relevance-x-examples", "examples"):
        weighted = configured(bounds=bounds, aggregation_weight=kind).parse_reply(
            liar(9, 3, **{"mean-relevance": 1e6, "num-tokens": 1e308, "num-examples": 1e308})
        )
        assert weighted.weight == 1000.0


def test_two_replies_with_1e308_examples_do_not_overflow_the_round():
    strategy = configured(aggregation_weight="examples", bounds=ReplyBounds.off())
    huge = {"num-examples": 1e308, "num-tokens": 1e308}
    arrays, agg = strategy.aggregate_train(1, [liar(1, 0, 1.0, **huge), liar(2, 1, 3.0, **huge)])
    np.testing.assert_allclose(record_to_arrays(arrays)["w"], 2.0)
    assert agg["num-examples"] == 2 * MAX_REPORTED_COUNT


@pytest.mark.parametrize(
    "value", [[0.5, 0.5], float("nan"), float("-inf")], ids=["list", "nan", "-inf"]
)
def test_a_metric_the_server_reads_must_be_one_finite_number(value):
    strategy = configured()
    bad = liar(9, 2, **{"high-relevance-fraction": value})
    arrays, agg = strategy.aggregate_train(1, [good(0), good(1), bad])
    assert (agg["num-replies"], agg["num-rejected"]) == (2, 1)
    np.testing.assert_allclose(record_to_arrays(arrays)["w"], 1.0)
    reason = strategy.parse_reply(bad)
    assert reason.startswith("metric 'high-relevance-fraction' is not a finite number")


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    weights=st.lists(
        st.floats(min_value=1e-300, max_value=1e300, allow_nan=False), min_size=1, max_size=40
    ),
    cap=st.one_of(
        st.floats(min_value=1e-3, max_value=1.0), st.integers(1, 40).map(lambda n: 1 / n)
    ),
)
def test_no_share_exceeds_the_cap_and_the_shares_keep_their_order(weights, cap):
    shares, leftover = capped_shares(weights, cap)
    assert (shares <= cap).all() and leftover >= 0
    assert shares.sum() + leftover == pytest.approx(1.0, abs=1e-9)
    order = np.argsort(weights, kind="stable")
    assert (np.diff(shares[order]) >= -1e-15).all()  # a larger weight never gets less
    if len(weights) * cap >= 1:
        assert leftover == 0.0
    if cap == 1.0:
        scaled = np.asarray(weights) / max(weights)
        # capped_shares floors a weight at float64's smallest normal number (2.2e-308) of
        # the largest, so that it never underflows to 0: shares that small may differ.
        np.testing.assert_allclose(shares, scaled / scaled.sum(), rtol=1e-9, atol=1e-300)


def test_the_share_cap_is_exact_where_cutting_redistributes():
    shares, leftover = capped_shares([100.0, 100.0, 1.0], 0.45)
    np.testing.assert_allclose(shares, [0.45, 0.45, 0.1])
    shares, leftover = capped_shares([0.9, 0.1], 0.5)
    np.testing.assert_allclose(shares, [0.5, 0.5])
    shares, leftover = capped_shares([5.0], 0.5)  # one reply: half the round stays put
    assert (shares.tolist(), leftover) == ([0.5], 0.5)
    with pytest.raises(ValueError, match="max_share=0"):
        capped_shares([1.0], 0.0)


@pytest.mark.parametrize("num_honest", [1, 2, 4])
def test_a_liar_never_holds_more_than_the_cap_of_the_model_or_the_anchors(num_honest):
    cap = 0.5
    strategy = configured(bounds=ReplyBounds.off(max_client_share=cap))
    honest = [good(p, 0.0, relevance=0.01) for p in range(num_honest)]
    replies = [*honest, liar(99, num_honest, 100.0, **{"mean-relevance": 1e9})]
    arrays, agg = strategy.aggregate_train(1, replies)
    result = record_to_arrays(arrays)
    assert result["w"].max() <= 100.0 * cap + 1e-4
    assert result[ANCHORS_KEY].max() <= 100.0 * cap + 1e-4
    assert agg["client-weight-share-max"] <= cap


def test_an_absolute_norm_bound_catches_a_huge_update_among_two_replies():
    replies = [
        good(0, 1.0),
        train_reply(101, payload(1e4, 1.0), metrics(0.5) | {"partition-id": 1}),
    ]
    _, relative_only = configured(
        bounds=ReplyBounds.off(max_update_norm_ratio=10.0)
    ).aggregate_train(1, replies)
    assert relative_only["num-norm-outliers"] == 0  # the median of two is their mean
    bounded = configured(bounds=ReplyBounds.off(max_update_norm_ratio=10.0, max_update_norm=100.0))
    arrays, agg = bounded.aggregate_train(1, replies)
    assert (agg["num-replies"], agg["num-norm-outliers"]) == (1, 1)
    np.testing.assert_allclose(record_to_arrays(arrays)["w"], 1.0)


def test_a_node_claiming_another_sites_partition_is_refused_and_the_site_is_not():
    strategy = configured()
    strategy.partitions.observe([100, 101, 102, 200])
    strategy.aggregate_train(1, [good(0), good(1)])
    thief = liar(200, 0)  # claims partition 0, bound to node 100, which is connected
    _, agg = strategy.aggregate_train(2, [thief, good(0), good(1)])
    assert (agg["num-replies"], agg["num-rejected"]) == (2, 1)
    assert strategy.parse_reply(thief).partition == "partition-0"
    assert strategy.partitions.claim(200, "partition-0") == (
        "partition-0 belongs to node 100, which is still connected"
    )


def test_a_node_cannot_switch_partitions_nor_invent_one_beyond_the_federation():
    strategy = configured()
    strategy.partitions.observe([100, 101, 102])
    strategy.aggregate_train(1, [good(0), good(1), good(2)])
    for server_round in range(2, 6):  # a fresh partition id every round
        _, agg = strategy.aggregate_train(server_round, [good(0), liar(102, server_round + 2)])
        assert (agg["num-replies"], agg["num-rejected"]) == (1, 1)
    assert set(strategy.anchor_store.reports) == {"partition-0", "partition-1", "partition-2"}
    assert "cannot switch" in strategy.partitions.claim(102, "partition-7")
    assert "beyond the federation's size" in strategy.partitions.claim(103, "partition-3")


def test_a_partition_passes_to_a_new_node_only_once_its_node_is_gone_and_survives_resume():
    strategy = configured()
    strategy.partitions.observe([100, 101])
    strategy.aggregate_train(1, [good(0), good(1)])
    arrays: list[np.ndarray] = []  # the checkpoint's own encoding (JSON and arrays)
    saved = decode(json.loads(json.dumps(encode(strategy.state_dict(), arrays))), arrays)
    resumed = configured()
    resumed.load_state_dict(saved)
    assert resumed.partitions.node_of == {"partition-0": 100, "partition-1": 101}
    assert "still connected" in resumed.partitions.claim(500, "partition-0")  # not yet observed
    resumed.partitions.observe([101, 500])  # node 100 restarted as node 500
    _, agg = resumed.aggregate_train(2, [liar(500, 0, 1.0), good(1)])
    assert agg["num-replies"] == 2
    assert resumed.partitions.node_of["partition-0"] == 500


def test_under_update_dp_a_bad_reply_is_dropped_before_the_wrapper_sees_it():
    # Flower's wrapper skips the whole round for one error reply and clips before FedASO's
    # checks; FedASO.admit now filters first.
    run = RunConfig.of(
        update_dp="server-fixed",
        update_clip=100.0,
        update_noise_multiplier=0.0,
        aggregation_weight="uniform",
        anchor_staleness_decay=0.0,
    )
    strategy = accounted(run)
    replies = [
        train_reply(1, payload(1.0, 1.0), metrics(0.5) | {"partition-id": 0}),
        train_reply(2, payload(1.0, 1.0), metrics(0.5) | {"partition-id": 1}),
        error_reply(3),
        train_reply(4, payload(1.0, 1.0, shape=(3, 3)), metrics(0.5)),
    ]
    arrays, agg = strategy.aggregate_train(1, replies)
    assert arrays is not None
    np.testing.assert_allclose(record_to_arrays(arrays)["w"], 1.0, rtol=1e-5)
    assert (agg["num-replies"], agg["num-failures"], agg["num-rejected"]) == (2, 1, 1)


def centroids_reply(node, centroids, fractions):
    content = RecordDict(
        {
            "centroids": arrays_to_record(
                {"centroids": np.asarray(centroids), "fractions": np.asarray(fractions)}
            )
        }
    )
    return Message(content=content, metadata=reply_metadata(node))


def test_kmeans_answers_are_checked_for_width_and_their_fractions_normalized():
    wide = centroids_reply(1, np.ones((2, 5), np.float32), np.full(2, 0.5, np.float32))
    assert centroid_answer(wide, 4, noised=False, width=3) == (
        "centroids have width 5, expected the model's 3"
    )
    huge = centroids_reply(2, np.ones((2, 3), np.float32), np.full(2, 3e38, np.float32))
    _, fractions = centroid_answer(huge, 4, noised=False, width=3)
    np.testing.assert_allclose(fractions, [0.5, 0.5])
    noised = centroids_reply(3, np.ones((2, 3), np.float32), np.array([-1.0, 3.0], np.float32))
    _, fractions = centroid_answer(noised, 4, noised=True, width=3)
    np.testing.assert_allclose(fractions, [0.0, 1.0])
    negative = centroids_reply(4, np.ones((2, 3), np.float32), np.array([-1.0, -3.0], np.float32))
    _, fractions = centroid_answer(negative, 4, noised=True, width=3)
    np.testing.assert_allclose(fractions, [0.5, 0.5])


@pytest.mark.usefixtures("server_task_identity")
def test_the_partition_query_answers_bind_partitions_before_any_training():
    _, nodes, grid = populated_state(num_nodes=3, per_node=0)
    ordered = PartitionOrderedGrid(grid)
    ordered.partition_of = {node: k for k, node in enumerate(nodes)}  # as the query answered
    strategy = FedASO(fraction_train=1.0, min_train_nodes=1, min_available_nodes=1)
    messages = strategy.configure_train(1, arrays_to_record(GLOBAL), ConfigRecord(), ordered)
    assert len(list(messages)) == 3
    assert strategy.partitions.node_of == {f"partition-{k}": node for k, node in enumerate(nodes)}
    # The first training reply is a thief's: partition 0 is its node's all the same.
    _, agg = strategy.aggregate_train(1, [liar(nodes[2], 0, 1.0), liar(nodes[0], 0, 1.0)])
    assert (agg["num-replies"], agg["num-rejected"]) == (1, 1)
    assert strategy.partitions.node_of["partition-0"] == nodes[0]


def test_anchor_changes_are_bounded_by_the_anchors_own_norm_not_max_update_norm():
    # Without anchor DP a client's anchor change is not clipped (docs/SPEC.md section 13): a large
    # honest move passes whole however small max-update-norm is, and only a change beyond
    # ANCHOR_CHANGE_LIMIT times the global anchors' norm is dropped.
    strategy = configured(bounds=ReplyBounds.off(max_update_norm=5.0))
    strategy.global_arrays = payload(1.0, 1.0)
    limit = anchor_change_limit(strategy.anchors(), strategy.privacy)  # 10 ||ones(4, 3)||
    honest_value = 1.0 + 0.5 * limit / np.sqrt(strategy.anchors().size)  # change = limit / 2
    honest = train_reply(100, payload(1.0, honest_value), metrics(0.5) | {"partition-id": 0})
    wild_value = 1.0 + 2 * limit / np.sqrt(strategy.anchors().size)  # change = 2 x limit
    wild = train_reply(101, payload(1.0, wild_value), metrics(0.5) | {"partition-id": 1})
    _, agg = strategy.aggregate_train(1, [honest, wild])
    assert (agg["num-replies"], agg["num-norm-outliers"]) == (1, 1)


@pytest.mark.usefixtures("server_task_identity")
def test_only_sampled_nodes_are_bound_and_an_unsampled_nodes_partition_stays_its_own():
    _, nodes, grid = populated_state(num_nodes=4, per_node=0)
    registered = RegisteredPartitions()
    registered.publish({node: k for k, node in enumerate(nodes[:3])})  # nodes[3]: unknown
    ordered = PartitionOrderedGrid(grid, timeout=0.1, registered=registered)
    strategy = FedASO(fraction_train=0.5, min_train_nodes=1, min_available_nodes=1)
    messages = strategy.configure_train(1, arrays_to_record(GLOBAL), ConfigRecord(), ordered)
    sampled = {m.metadata.dst_node_id for m in messages}
    assert len(sampled) == 2
    assert set(strategy.partitions.key_of) == sampled - {nodes[3]}  # nobody else is bound
    assert ordered._nodes_of is None  # nor was a partition -> node index built for them
    # Whoever has no known partition cannot take one whose node is known, sampled or not.
    assert "belongs to node" in strategy.partitions.claim(nodes[3], "partition-0")
    assert strategy.partitions.claim(nodes[3], "partition-3") is None
