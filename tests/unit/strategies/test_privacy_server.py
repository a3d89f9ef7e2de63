"""Server-side privacy glue: Flower's DP wrappers around FedASO, sample sizes, accounting."""

import math
import random

import numpy as np
import pytest
from flwr.app import Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
)
from opacus.accountants import RDPAccountant

from fedaso.config import RunConfig
from fedaso.privacy import SEEDED_SAMPLING_ENV
from fedaso.wire import ANCHORS_KEY
from flower_wire.records import arrays_to_record, record_to_arrays
from strategies.anchor_init import centroid_answer, usable_centroids, wait_for_nodes
from strategies.factory import build_strategy
from strategies.fedaso import FedASO
from strategies.grids import MeteredGrid, RoundTraffic
from strategies.server_app import seed_client_sampling
from strategies.update_dp import (
    UpdateDPAccounting,
    build_update_dp,
    expected_sample_size,
    update_dp_calibrated,
)
from tests.flower_helpers import error_reply, metrics, payload, reply_metadata, train_reply
from tests.unit.simulations.test_linkstate import populated_state, server_task_identity  # noqa: F401

CALIBRATED = {"aggregation_weight": "uniform", "anchor_staleness_decay": 0.0}


def test_expected_sample_size_follows_flowers_formula():
    assert expected_sample_size(RunConfig.of(fraction_train=0.2, min_train_nodes=2), 20) == 4
    assert expected_sample_size(RunConfig.of(fraction_train=0.2, min_train_nodes=2), 5) == 2


def test_calibration_holds_only_for_uniform_fresh_aggregation():
    assert update_dp_calibrated(RunConfig.of(**CALIBRATED))
    assert not update_dp_calibrated(RunConfig.of(anchor_staleness_decay=0.0))  # relevance weights
    assert not update_dp_calibrated(RunConfig.of(aggregation_weight="uniform"))  # stale anchors
    assert not update_dp_calibrated(RunConfig.of(strategy="fedavg"))  # example weights


@pytest.mark.parametrize(
    ("mode", "wrapper"),
    [
        ("server-fixed", DifferentialPrivacyServerSideFixedClipping),
        ("client-fixed", DifferentialPrivacyClientSideFixedClipping),
    ],
)
def test_build_update_dp_wraps_fedaso_unchanged(mode, wrapper):
    run = RunConfig.of(update_dp=mode, update_clip=3.0, update_noise_multiplier=0.7)
    inner = build_strategy(run)
    strategy = build_update_dp(inner, run, num_sampled=4)
    assert isinstance(strategy, UpdateDPAccounting) and type(strategy.wrapped) is wrapper
    assert strategy.wrapped.strategy is inner and type(inner) is FedASO
    assert (strategy.wrapped.clipping_norm, strategy.wrapped.noise_multiplier) == (3.0, 0.7)
    assert strategy.wrapped.num_sampled_clients == 4
    assert build_update_dp(inner, RunConfig(), num_sampled=4) is inner


def accounted(run):
    """A server-side wrapped FedASO in the state its configure_train would leave."""
    inner = build_strategy(run)
    strategy = build_update_dp(inner, run, num_sampled=2)
    global_payload = payload(0.0, 0.0)
    inner.global_arrays = {k: v.copy() for k, v in global_payload.items()}
    strategy.wrapped.current_arrays = arrays_to_record(global_payload)
    strategy.sample_rate = 0.5
    return strategy


def test_server_side_wrapper_clips_fedasos_replies_and_reports_opacus_epsilon():
    run = RunConfig.of(
        update_dp="server-fixed", update_clip=1.0, update_noise_multiplier=0.0, **CALIBRATED
    )
    strategy = accounted(run)
    # Each reply moves w (2x3) and the anchors (4x3) by 1 per entry: norm sqrt(18) -> 1.
    replies = [train_reply(k, payload(1.0, 1.0), metrics(0.5)) for k in (1, 2)]
    arrays, agg = strategy.aggregate_train(1, replies)
    result = record_to_arrays(arrays)
    np.testing.assert_allclose(result["w"], 1 / math.sqrt(18), rtol=1e-5)
    np.testing.assert_allclose(result[ANCHORS_KEY], 1 / math.sqrt(18), rtol=1e-5)
    assert agg["update-epsilon"] == math.inf  # noise multiplier 0
    assert agg["num-replies"] == 2

    noisy = accounted(run.replace(update_noise_multiplier=1.3))
    reference = RDPAccountant()
    for server_round in (1, 2):
        replies = [train_reply(k, payload(1.0, 1.0), metrics(0.5)) for k in (1, 2)]
        _, agg = noisy.aggregate_train(server_round, replies)
        reference.step(noise_multiplier=1.3, sample_rate=0.5)
        assert agg["update-epsilon"] == pytest.approx(reference.get_epsilon(delta=1e-5))
        assert agg["update-noise-std"] == pytest.approx(1.3 * 1.0 / 2)


def test_uncalibrated_weights_report_infinite_update_epsilon():
    strategy = accounted(RunConfig.of(update_dp="server-fixed", update_noise_multiplier=1.0))
    replies = [train_reply(k, payload(1.0, 1.0), metrics(0.5)) for k in (1, 2)]
    _, agg = strategy.aggregate_train(1, replies)
    assert agg["update-epsilon"] == math.inf


def centroid_reply(node_id, arrays=None, record="centroids"):
    content = RecordDict({"metrics": MetricRecord({"partition-id": node_id})})
    if arrays is not None:
        content[record] = arrays_to_record(arrays)
    return Message(content=content, metadata=reply_metadata(node_id))


def answer(centroids=1.0, fractions=0.25):
    return {
        "centroids": np.full((4, 3), centroids, dtype=np.float32),
        "fractions": np.full(4, fractions, dtype=np.float32),
    }


def test_federated_kmeans_answers_are_checked_like_training_replies():
    # Issue 12, defect 6: a bad answer is logged and skipped, never a crash.
    replies = [
        centroid_reply(1, answer()),
        error_reply(2),
        centroid_reply(3),  # no record
        centroid_reply(4, answer(), record="other"),
        centroid_reply(5, answer(centroids=np.nan)),
        centroid_reply(6, answer(fractions=0.0)),  # a zero count
        centroid_reply(7, {"centroids": np.ones((9, 3), dtype=np.float32)}),
        centroid_reply(8, answer() | {"fractions": np.ones(3, dtype=np.float32)}),
    ]
    answers = usable_centroids(replies, num_anchors=4, noised=False)
    assert len(answers) == 1
    np.testing.assert_array_equal(answers[0][0], np.ones((4, 3)))
    reasons = [centroid_answer(reply, 4, noised=False) for reply in replies[1:]]
    assert all(isinstance(reason, str) for reason in reasons)
    assert "non-finite" in reasons[3] and "do not count tokens" in reasons[4]
    # Noised fractions (local mode) may sum below 0; the answer is used all the same.
    noised = centroid_reply(9, answer(fractions=-0.5))
    assert len(usable_centroids([noised], num_anchors=4, noised=True)) == 1


@pytest.mark.usefixtures("server_task_identity")
def test_waiting_for_nodes_times_out_with_a_clear_error():
    # Issue 12, defect 6: one node connected, two needed: no endless wait.
    _, nodes, grid = populated_state(num_nodes=1, per_node=0)
    assert wait_for_nodes(grid, 1, timeout=0.1) == nodes
    with pytest.raises(TimeoutError, match=r"only 1 node\(s\) connected after 0.2 s.*2"):
        wait_for_nodes(grid, 2, timeout=0.2, poll=0.05)


def sample_after_seeding(run: RunConfig) -> list[int]:
    seed_client_sampling(run)
    return random.sample(range(1000), 5)  # how Flower samples nodes


@pytest.mark.parametrize(
    "central", [{"anchor_dp": "central"}, {"update_dp": "server-fixed"}], ids=["anchor", "update"]
)
def test_central_dp_samples_clients_from_a_secret_seed(central, monkeypatch):
    """Issue 17: a sample drawn from the public run seed can be redone by anyone knowing it,
    which voids central DP's amplification by sampling."""
    assert sample_after_seeding(RunConfig()) == sample_after_seeding(RunConfig())
    run = RunConfig.of(**central)
    assert sample_after_seeding(run) != sample_after_seeding(run)
    monkeypatch.setenv(SEEDED_SAMPLING_ENV, "1")  # the documented switch for exact reruns
    assert sample_after_seeding(run) == sample_after_seeding(RunConfig())


def test_a_grid_without_partition_lookup_publishes_no_sampled_partitions():
    listed, unlisted = MeteredGrid(None, partition_of={}.get), MeteredGrid(None)
    for grid in (listed, unlisted):
        grid.rounds = {1: RoundTraffic(messages=2, train_partitions=[])}
    assert listed.traffic(1)["train-partitions"] == []
    assert "train-partitions" not in unlisted.traffic(1)
    assert unlisted.traffic(1)["messages"] == 2


def test_seeded_sampling_accepts_only_0_or_1(monkeypatch):
    monkeypatch.setenv(SEEDED_SAMPLING_ENV, "yes")
    with pytest.raises(ValueError, match=r"FEDASO_SEEDED_SAMPLING='yes' must be 0 or 1"):
        seed_client_sampling(RunConfig.of(anchor_dp="central"))
