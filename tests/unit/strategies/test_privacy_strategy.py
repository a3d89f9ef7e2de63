"""FedASO's anchor privacy on real Flower messages: central DP-FedAvg, local, staleness."""

import math

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from fedaso.aso.robust import ReplyBounds
from fedaso.privacy import PrivacyConfig
from fedaso.wire import ANCHORS_KEY
from flower_wire.records import record_to_arrays
from strategies.fedaso import CENTRAL_RELEASES, FedASO
from tests.flower_helpers import error_reply, metrics, payload, train_reply


def configured(strategy, global_payload, sampled=2, sample_rate=0.5):
    # The state configure_train sets: the global arrays, the sample count and rate.
    strategy.global_arrays = {k: v.copy() for k, v in global_payload.items()}
    strategy.sampled_count, strategy.sample_rate = sampled, sample_rate
    return strategy


def central(sigma=0.0, clip=1.0, gamma=0.0):
    privacy = PrivacyConfig(anchor_dp="central", anchor_clip=clip, anchor_noise_multiplier=sigma)
    return FedASO(anchor_staleness_decay=gamma, privacy=privacy)


def test_central_mode_is_dp_fedavg_uniform_clipped_fixed_denominator():
    # Anchors are (4, 3): anchor-clip 0.5 per row is C = 0.5 sqrt(4) = 1; a change of 1.0
    # per entry has norm sqrt(12) > C.
    strategy = configured(central(clip=0.5), payload(0.0, 0.0), sampled=3)
    replies = [
        train_reply(1, payload(1.0, 1.0), metrics(relevance=0.9)),
        train_reply(2, payload(1.0, 0.1), metrics(relevance=0.1)),  # norm 0.35: not clipped
    ]
    arrays, agg = strategy.aggregate_train(1, replies)
    anchors = record_to_arrays(arrays)[ANCHORS_KEY]
    # Uniform weights (relevance ignored), sum of clipped changes over n = 3 sampled clients.
    expected = (1.0 / math.sqrt(12) + 0.1) / 3
    np.testing.assert_allclose(anchors, expected, rtol=1e-5)
    # Only the privatized release is stored, never a raw report.
    assert list(strategy.anchor_store.reports) == [CENTRAL_RELEASES]
    assert agg["anchor-epsilon"] == math.inf  # sigma = 0: no noise, no finite epsilon


def test_central_staleness_reuses_only_privatized_releases():
    strategy = configured(central(clip=100.0, gamma=0.5), payload(0.0, 0.0), sampled=1)
    strategy.aggregate_train(1, [train_reply(1, payload(0.0, 4.0), metrics(0.5))])
    strategy.global_arrays = payload(0.0, 4.0)
    arrays, _ = strategy.aggregate_train(2, [train_reply(2, payload(0.0, 1.0), metrics(0.5))])
    # releases: round 1 -> 4, round 2 -> 4 + (1 - 4) = 1; merged (0.5 * 4 + 1 * 1) / 1.5 = 2
    np.testing.assert_allclose(record_to_arrays(arrays)[ANCHORS_KEY], 2.0, rtol=1e-6)


def test_central_epsilon_is_opacus_for_the_same_history_and_grows():
    strategy = configured(central(sigma=1.2, clip=1.0), payload(0.0, 0.0), sample_rate=0.25)
    reference = RDPAccountant()
    epsilons = []
    for server_round in (1, 2, 3):
        _, agg = strategy.aggregate_train(
            server_round, [train_reply(1, payload(0, 1), metrics(0.5))]
        )
        reference.step(noise_multiplier=1.2, sample_rate=0.25)
        assert agg["anchor-epsilon"] == pytest.approx(reference.get_epsilon(delta=1e-5))
        assert agg["anchor-delta"] == 1e-5
        epsilons.append(agg["anchor-epsilon"])
    assert epsilons[0] < epsilons[1] < epsilons[2] < math.inf


def test_central_noise_is_added_once_with_std_sigma_c_over_n_and_c_scales_with_sqrt_m():
    strategy = configured(
        central(sigma=2.0, clip=1.5), payload(0.0, 0.0, anchors_shape=(100, 100)), sampled=4
    )
    replies = [
        train_reply(k, payload(0.0, 0.0, anchors_shape=(100, 100)), metrics(0.5)) for k in (1, 2)
    ]
    arrays, _ = strategy.aggregate_train(1, replies)
    noise = record_to_arrays(arrays)[ANCHORS_KEY]  # the changes are zero: all of it is noise
    bound = 1.5 * math.sqrt(100)  # C = anchor-clip * sqrt(M), M = 100 anchors
    assert noise.std() == pytest.approx(2.0 * bound / 4, rel=0.03)


def test_local_mode_epsilon_counts_the_busiest_client_without_amplification():
    privacy = PrivacyConfig(anchor_dp="local", anchor_noise_multiplier=0.9)
    strategy = configured(FedASO(anchor_staleness_decay=0.5, privacy=privacy), payload(0.0, 0.0))
    strategy.aggregate_train(1, [train_reply(1, payload(0, 1), metrics(0.5))])
    strategy.global_arrays = payload(0.0, 1.0)
    _, agg = strategy.aggregate_train(
        2,
        [train_reply(1, payload(0, 1), metrics(0.5)), train_reply(2, payload(0, 1), metrics(0.5))],
    )
    reference = RDPAccountant()
    reference.history = [(0.9, 1.0, 2)]  # node 1 released twice, seen by the server
    assert agg["anchor-epsilon"] == pytest.approx(reference.get_epsilon(delta=1e-5))
    assert agg["anchor-partitions"] == 2


@pytest.mark.parametrize(
    ("gamma", "age", "expected"), [(0.0, 1, 1.0), (0.5, 2, (0.25 * 4 + 1) / 1.25)]
)
def test_staleness_weighs_gamma_to_the_age(gamma, age, expected):
    strategy = configured(FedASO(anchor_staleness_decay=gamma), payload(0.0, 0.0))
    strategy.aggregate_train(1, [train_reply(1, payload(1.0, 4.0), metrics(0.5))])
    arrays, _ = strategy.aggregate_train(1 + age, [train_reply(2, payload(1.0, 1.0), metrics(0.5))])
    np.testing.assert_allclose(record_to_arrays(arrays)[ANCHORS_KEY], expected, rtol=1e-6)


def test_without_anchor_dp_no_epsilon_is_claimed():
    strategy = configured(FedASO(), payload(0.0, 0.0))
    _, agg = strategy.aggregate_train(1, [train_reply(1, payload(1, 1), metrics(0.5))])
    assert "anchor-epsilon" not in agg


def test_client_epsilons_are_maxed_over_replies():
    strategy = configured(FedASO(), payload(0.0, 0.0))
    replies = [
        train_reply(1, payload(1, 1), metrics(0.5) | {"dp-sgd-epsilon": 2.5}),
        train_reply(2, payload(1, 1), metrics(0.5) | {"dp-sgd-epsilon": 4.0}),
    ]
    _, agg = strategy.aggregate_train(1, replies)
    assert agg["client-dp-sgd-epsilon-max"] == 4.0


@pytest.mark.parametrize("mode", ["local", "central"])
def test_every_round_reports_epsilon_even_without_a_usable_reply(mode):
    # Issue 12, defect 3: a round whose replies all fail still states the privacy figure.
    privacy = PrivacyConfig(anchor_dp=mode, anchor_noise_multiplier=1.0)
    strategy = configured(FedASO(privacy=privacy), payload(0.0, 0.0), sample_rate=1.0)
    _, first = strategy.aggregate_train(1, [train_reply(1, payload(0, 1), metrics(0.5))])
    _, empty = strategy.aggregate_train(2, [error_reply(1)])
    assert empty["num-replies"] == 0
    assert empty["anchor-epsilon"] == pytest.approx(first["anchor-epsilon"])
    assert empty["anchor-delta"] == 1e-5


def test_central_release_store_stays_flat_over_1000_rounds():
    # Issue 12, defect 4: memory, merge time and checkpoint size do not grow with rounds.
    # Sample rate 1: Opacus' epsilon is then closed-form, so 1,000 rounds take seconds.
    strategy = configured(
        central(sigma=1.0, clip=1.0, gamma=0.5), payload(0.0, 0.0), sampled=1, sample_rate=1.0
    )
    sizes = {}
    for server_round in range(1, 1001):
        arrays, _ = strategy.aggregate_train(
            server_round, [train_reply(1, payload(0.0, 0.1), metrics(0.5))]
        )
        strategy.global_arrays = record_to_arrays(arrays)
        if server_round in (10, 1000):
            state = strategy.state_dict()["anchor-store"]
            sizes[server_round] = (
                len(state["anchors"]),
                len(strategy.anchor_account.to_lists()["noise"]),
            )
    assert sizes[10] == sizes[1000] == (1, 1)
    assert np.isfinite(strategy.global_arrays[ANCHORS_KEY]).all()


def test_central_running_release_equals_the_decayed_average_of_every_release():
    strategy = configured(central(clip=100.0, gamma=0.5), payload(0.0, 0.0), sampled=1)
    releases = [4.0, 1.0, -2.0, 3.0]
    for server_round, value in enumerate(releases, start=1):
        arrays, _ = strategy.aggregate_train(
            server_round, [train_reply(1, payload(0.0, value), metrics(0.5))]
        )
        strategy.global_arrays = payload(0.0, 0.0)  # each release is the reported value
    weights = [0.5**age for age in range(len(releases) - 1, -1, -1)]
    expected = np.average(releases, weights=weights)
    np.testing.assert_allclose(record_to_arrays(arrays)[ANCHORS_KEY], expected, rtol=1e-6)


def test_local_mode_counts_the_releases_of_rejected_and_outlier_replies():
    # Issue 12, defect 1: a reply the server drops was released by its client all the same.
    privacy = PrivacyConfig(anchor_dp="local", anchor_noise_multiplier=1.0)
    strategy = configured(
        FedASO(privacy=privacy, bounds=ReplyBounds.off(max_update_norm_ratio=10.0)),
        payload(0.0, 0.0),
        sample_rate=1.0,
    )
    nan = payload(0.0, 1.0)
    nan["w"][0, 0] = np.nan
    outlier = payload(1e6, 1.0)

    def reply(partition, arrays):
        return train_reply(partition, arrays, metrics(0.5) | {"partition-id": partition})

    strategy.aggregate_train(1, [reply(0, payload(1.0, 1.0)), reply(1, nan)])
    strategy.global_arrays = payload(0.0, 0.0)
    strategy.aggregate_train(2, [reply(1, nan)])
    strategy.global_arrays = payload(0.0, 0.0)
    healthy = [reply(k, payload(1.0 + k / 10, 1.0)) for k in (2, 3, 4)]
    _, agg = strategy.aggregate_train(3, [*healthy, reply(1, outlier)])
    assert agg["num-norm-outliers"] == 1
    reference = RDPAccountant()
    reference.history = [(1.0, 1.0, 3)]  # partition 1 released in all three rounds
    assert agg["anchor-epsilon"] == pytest.approx(reference.get_epsilon(delta=1e-5))


@pytest.mark.parametrize("privacy", [{"anchor_dp": "central"}, {"update_dp": "server-fixed"}])
def test_central_dp_lets_no_reply_decide_whether_another_counts(privacy):
    # Issue 17: a median-relative outlier filter makes one client's inclusion depend on the
    # others' data, which central DP's sensitivity C / n does not cover: it is off there.
    strategy = configured(
        FedASO(
            privacy=PrivacyConfig(**privacy), bounds=ReplyBounds.off(max_update_norm_ratio=10.0)
        ),
        payload(0.0, 0.0),
        sampled=4,
    )
    assert strategy.bounds.max_update_norm_ratio == 0.0
    replies = [train_reply(k, payload(1.0 + k / 10, 0.1), metrics(0.5)) for k in (1, 2, 3)]
    _, agg = strategy.aggregate_train(
        1, [*replies, train_reply(4, payload(1e6, 0.1), metrics(0.5))]
    )
    assert (agg["num-replies"], agg["num-norm-outliers"]) == (4, 0)
    local = FedASO(
        privacy=PrivacyConfig(anchor_dp="local"), bounds=ReplyBounds.off(max_update_norm_ratio=10.0)
    )
    assert local.bounds.max_update_norm_ratio == 10.0
