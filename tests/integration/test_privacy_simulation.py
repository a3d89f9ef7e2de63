"""Private federations on Flower's simulation engine: each mode completes and reports epsilon."""

import math

import pytest
from opacus.accountants import RDPAccountant

from simulations.engine import simulate
from strategies.server_state import read_checkpoint

# Two rounds of at most 3 local steps: each release is counted, none needs to train well.
SHORT = {"num_server_rounds": 2, "fraction_train": 1.0, "local_epochs": 1, "max_steps": 3}


@pytest.fixture
def federation(tiny, ray_cluster):
    """Run the tiny federation with ``changes`` on the session's Ray cluster: its metrics."""

    def run(num_clients, **changes):
        config = tiny.config(**SHORT | changes)
        return simulate(config, num_clients=num_clients, ray_address=ray_cluster.address)

    return run


@pytest.fixture
def run_rounds(tiny, federation):
    """Rounds 1 and 2's train metrics of a private federation, checked as they go."""

    def run(tmp_path, num_clients=3, **changes):
        rounds = federation(num_clients, out_dir=str(tmp_path), **changes)["rounds"]
        assert [r["round"] for r in rounds] == [0, 1, 2]
        assert all(math.isfinite(r["central"]["loss"]) for r in rounds)
        # Under central DP the sample is secret: metrics.json must not list it (issue 17).
        listed = ["train-partitions" in r["traffic"] for r in rounds[1:]]
        assert listed == [not tiny.config(**changes).privacy.central_dp] * 2
        return [r["train"] for r in rounds[1:]]

    return run


def opacus_epsilon(history, delta=1e-5):
    accountant = RDPAccountant()
    accountant.history = list(history)
    return accountant.get_epsilon(delta=delta)


def test_central_anchor_dp_with_federated_kmeans_init(tmp_path, run_rounds):
    train = run_rounds(tmp_path, anchor_dp="central", anchor_init="federated")
    # All 3 of 3 clients answer the k-means query and train each round: sample rate 1.
    # The initialization is one release, each round one more.
    for server_round, metrics in enumerate(train, start=1):
        expected = opacus_epsilon([(1.0, 1.0, 1 + server_round)])
        assert metrics["anchor-epsilon"] == pytest.approx(expected)
        assert metrics["num-replies"] == 3
    assert (tmp_path / "anchors.npy").exists()


def test_local_anchor_dp_with_relevance_noise_and_dp_sgd(tmp_path, run_rounds):
    train = run_rounds(
        tmp_path, anchor_dp="local", relevance_noise=0.05, dp_sgd=True, dp_noise_multiplier=1.0
    )
    for server_round, metrics in enumerate(train, start=1):
        expected = opacus_epsilon([(1.0, 1.0, server_round)])
        assert metrics["anchor-epsilon"] == pytest.approx(expected)
        # The server's count and the clients' own accountants agree.
        assert metrics["client-anchor-epsilon-max"] == pytest.approx(expected)
        assert 0 < metrics["client-relevance-epsilon-max"] < math.inf
    dp_sgd = [metrics["client-dp-sgd-epsilon-max"] for metrics in train]
    assert 0 < dp_sgd[0] < dp_sgd[1] < math.inf


@pytest.mark.parametrize("update_dp", ["server-fixed", "client-fixed"])
def test_fedaso_inside_flowers_dp_wrapper(tmp_path, run_rounds, update_dp):
    train = run_rounds(
        tmp_path,
        update_dp=update_dp,
        update_clip=5.0,
        update_noise_multiplier=0.5,
        aggregation_weight="uniform",
        anchor_staleness_decay=0.0,
        num_clients=2,
    )
    for server_round, metrics in enumerate(train, start=1):
        assert metrics["update-epsilon"] == pytest.approx(
            opacus_epsilon([(0.5, 1.0, server_round)])
        )
        assert metrics["update-noise-std"] == pytest.approx(0.5 * 5.0 / 2)
        assert metrics["num-replies"] == 2


@pytest.mark.parametrize("anchor_init", ["server", "federated"])
@pytest.mark.parametrize("anchor_dp", ["local", "central"])
def test_server_epsilon_is_the_clients_and_opacus_despite_rejected_and_outlier_replies(
    tmp_path, run_rounds, anchor_dp, anchor_init
):
    # Issue 12, defect 1: partition 1 replies NaN (rejected), partition 2 an outlier update.
    # Under central DP no median-relative outlier filter runs (issue 17), so there the
    # outlier is left out of the plan: nothing would drop its 10^4-times update.
    central = anchor_dp == "central"
    train = run_rounds(
        tmp_path,
        num_clients=4,
        anchor_dp=anchor_dp,
        anchor_init=anchor_init,
        fault_plan="1:nan" if central else "1:nan,2:norm",
        max_update_norm_ratio=10.0,
    )
    initialization = 1 if anchor_init == "federated" else 0
    for server_round, metrics in enumerate(train, start=1):
        assert (metrics["num-replies"], metrics["num-rejected"]) == ((3, 1) if central else (2, 2))
        expected = opacus_epsilon([(1.0, 1.0, initialization + server_round)])
        assert metrics["anchor-epsilon"] == pytest.approx(expected)
        if anchor_dp == "local":  # every client, accepted or not, counted the same releases
            assert metrics["client-anchor-epsilon-max"] == pytest.approx(expected)


def test_a_resumed_run_keeps_counting_where_the_clients_left_off(tmp_path, federation):
    # Issue 12, defect 2: client-side accounting survives a server restart.
    private = {"anchor_dp": "local", "relevance_noise": 0.5, "dp_sgd": True}
    one_round = private | {"num_server_rounds": 1}
    first = federation(2, out_dir=str(tmp_path / "a"), **one_round)["rounds"][1]["train"]
    resumed = federation(
        2, out_dir=str(tmp_path / "b"), resume=str(tmp_path / "a" / "checkpoint"), **private
    )["rounds"][2]["train"]
    expected = opacus_epsilon([(1.0, 1.0, 2)])
    assert resumed["anchor-epsilon"] == pytest.approx(expected)
    assert resumed["client-anchor-epsilon-max"] == pytest.approx(expected)
    assert resumed["client-relevance-epsilon-max"] == pytest.approx(opacus_epsilon([(0.5, 1.0, 2)]))
    assert resumed["client-dp-sgd-epsilon-max"] > first["client-dp-sgd-epsilon-max"]


def test_update_dp_keeps_every_accountant_and_the_anchor_store_across_a_resume(
    tmp_path, federation
):
    # Issue 17: UpdateDPAccounting was not in the checkpoint, and it hid FedASO inside it.
    private = {
        "update_dp": "server-fixed",
        "update_clip": 5.0,
        "update_noise_multiplier": 0.5,
        "aggregation_weight": "uniform",
        "anchor_staleness_decay": 0.0,
        "anchor_dp": "local",
    }
    first = tmp_path / "a"
    federation(2, out_dir=str(first), **private | {"num_server_rounds": 1})
    saved = read_checkpoint(first / "checkpoint").components
    assert saved["strategy"]["update-accountant"] == [[0.5, 1.0, 1]]
    fedaso_state = saved["strategy.inner.inner"]  # FedASO inside Flower's wrapper
    assert fedaso_state["local-releases"] == {"partition-0": 1, "partition-1": 1}
    assert fedaso_state["anchor-store"]["partitions"] == ["partition-0", "partition-1"]
    resumed = federation(
        2, out_dir=str(tmp_path / "b"), resume=str(first / "checkpoint"), **private
    )["rounds"][2]["train"]
    assert resumed["update-epsilon"] == pytest.approx(opacus_epsilon([(0.5, 1.0, 2)]))
    assert resumed["anchor-epsilon"] == pytest.approx(opacus_epsilon([(1.0, 1.0, 2)]))
