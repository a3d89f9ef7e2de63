"""Faults, time-outs and restarts in real federations on Flower's simulation engine (Ray).

The misbehaving clients are real ClientApps told by run-config ``fault-plan`` (a testing
aid, ``clients.fault_injection``) to raise, answer late, or send garbage.
"""

import numpy as np
import pytest
import torch

from simulations.engine import simulate
from strategies.server_app import run_federation
from strategies.server_state import Checkpoint, CheckpointError, read_checkpoint, write_checkpoint

TIMING_KEYS = {"round-seconds", "eval-seconds"}


@pytest.fixture
def base(tiny):
    """The tiny run, every client training at most 5 steps of one epoch each round."""
    return tiny.config(fraction_train=1.0, local_epochs=1, max_steps=5)


@pytest.fixture
def federation(ray_cluster):
    """``simulate`` on the session's Ray cluster."""

    def run(config, num_clients):
        return simulate(config, num_clients=num_clients, ray_address=ray_cluster.address)

    return run


def without_timing(rounds):
    return [
        {
            part: {k: v for k, v in values.items() if k not in TIMING_KEYS}
            if isinstance(values, dict)
            else values
            for part, values in record.items()
        }
        for record in rounds
    ]


def test_a_raising_and_a_garbage_client_cost_only_their_own_contribution(
    tmp_path, base, federation
):
    run = base.replace(num_server_rounds=1, fault_plan="1:raise,2:nan", out_dir=str(tmp_path))
    metrics = federation(run, num_clients=3)
    train = metrics["rounds"][1]["train"]
    counts = [train[k] for k in ("num-replies", "num-failures", "num-rejected", "num-timeouts")]
    assert counts == [1, 1, 1, 0]  # partition 0 used, 1 raised, 2 sent NaN
    assert train["anchor-partitions"] == 1
    assert metrics["rounds"][1]["central"]["loss"] < metrics["rounds"][0]["central"]["loss"]


def test_a_client_past_the_round_timeout_costs_only_its_own_contribution(
    tmp_path, base, federation
):
    """Partition 1 replies 2 s after every round's time-out.

    Round 1 also starts the clients' Ray actors, which on a busy machine can take longer
    than the time-out; round 2 runs on warm actors, which train their 5 steps well within
    the 10 s, so its counts are exact.
    """
    run = base.replace(
        num_server_rounds=2,
        fault_plan="1:delay",
        round_timeout=10.0,
        fault_delay=2.0,
        out_dir=str(tmp_path),
    )
    metrics = federation(run, num_clients=2)
    first, second = (metrics["rounds"][r]["train"] for r in (1, 2))
    assert first["num-timeouts"] >= 1  # at least partition 1
    assert (second["num-replies"], second["num-timeouts"], second["num-failures"]) == (1, 1, 0)
    assert metrics["rounds"][2]["central"]["loss"] < metrics["rounds"][0]["central"]["loss"]


def test_a_round_without_usable_replies_keeps_the_global_model(tmp_path, base, federation):
    run = base.replace(num_server_rounds=1, fault_plan="0:raise,1:shape", out_dir=str(tmp_path))
    metrics = federation(run, num_clients=2)
    before, after = metrics["rounds"][0]["central"], metrics["rounds"][1]["central"]
    assert after["loss"] == before["loss"]
    train = metrics["rounds"][1]["train"]
    assert (train["num-replies"], train["num-failures"], train["num-rejected"]) == (0, 1, 1)
    assert (tmp_path / "model.pt").exists()  # the unchanged initial model is still saved


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path, base, federation):
    straight = federation(
        base.replace(num_server_rounds=2, out_dir=str(tmp_path / "u")), num_clients=2
    )
    federation(base.replace(num_server_rounds=1, out_dir=str(tmp_path / "a")), num_clients=2)
    assert read_checkpoint(tmp_path / "a" / "checkpoint").server_round == 1
    resumed = federation(
        base.replace(
            num_server_rounds=2,
            out_dir=str(tmp_path / "b"),
            resume=str(tmp_path / "a" / "checkpoint"),
        ),
        num_clients=2,
    )
    assert without_timing(resumed["rounds"]) == without_timing(straight["rounds"])
    assert [r["round"] for r in resumed["rounds"]] == [0, 1, 2]
    np.testing.assert_array_equal(
        np.load(tmp_path / "u" / "anchors.npy"), np.load(tmp_path / "b" / "anchors.npy")
    )
    model_u, model_b = (torch.load(tmp_path / d / "model.pt") for d in ("u", "b"))
    assert all(torch.equal(model_u[k], model_b[k]) for k in model_u)
    assert read_checkpoint(tmp_path / "b" / "checkpoint").server_round == 2


def test_a_corrupt_checkpoint_stops_the_run_before_anything_and_stays_untouched(tmp_path, base):
    run = base.replace(num_server_rounds=2, checkpoint_dir=str(tmp_path))
    good = Checkpoint(server_round=1, config=run.to_flat(), arrays={"w": np.ones(2)}, history={})
    path = write_checkpoint(tmp_path, good)
    path.write_bytes(path.read_bytes()[:-100])
    damaged = path.read_bytes()
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        run_federation(None, run.replace(resume=str(tmp_path)))  # fails before using the grid
    assert path.read_bytes() == damaged


def test_fewer_simulated_clients_than_min_train_nodes_is_refused_at_once(tmp_path, base):
    run = base.replace(min_train_nodes=3, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"--num-clients=2 must be .*min-train-nodes=3"):
        simulate(run, num_clients=2)


def test_lying_clients_never_take_a_round_and_the_loss_still_falls(tmp_path, base, federation):
    # Issue 17: well-formed replies that claim a huge relevance and counts, a list where a
    # number belongs, another site's partition, or a new partition every round.
    plan = "1:relevance,2:fresh-partition,3:steal-partition,4:list-metric"
    run = base.replace(num_server_rounds=3, fault_plan=plan, out_dir=str(tmp_path))
    metrics = federation(run, num_clients=5)
    for record in metrics["rounds"][1:]:
        train = record["train"]
        counts = [train[k] for k in ("num-replies", "num-failures", "num-rejected")]
        assert counts == [2, 0, 3]  # partitions 0 and 1 used, the claims of 2, 3, 4 refused
        assert train["client-weight-share-max"] <= run.reliability.max_client_share
        assert train["mean-relevance"] <= 1.0  # partition 1's claim of 10^6 clipped
        assert train["anchor-partitions"] == 2  # no invented partition in the store
        honest = max(train["update-norm-max"], train["anchor-change-norm-max"])
        assert honest < run.reliability.max_update_norm / 10  # the default bound leaves honest room
    central = [record["central"]["loss"] for record in metrics["rounds"]]
    assert central[-1] < central[0]
