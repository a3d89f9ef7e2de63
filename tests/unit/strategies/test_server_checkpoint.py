"""Server checkpoints: round trip, atomic writes, corrupt files, resumability checks."""

import json
import math
import random

import numpy as np
import pytest
import torch
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    Result,
)

from fedaso.config import RunConfig
from fedaso.wire import ANCHORS_KEY
from strategies.fedaso import FedASO
from strategies.grids import MeteredGrid, RoundTraffic
from strategies.server_state import (
    CHECKPOINT_FILE,
    Checkpoint,
    CheckpointError,
    Checkpoints,
    FedOptState,
    RandomState,
    check_resumable,
    decode,
    encode,
    read_checkpoint,
    strategy_components,
    write_checkpoint,
)
from strategies.update_dp import build_update_dp
from tests.flower_helpers import metrics, payload, train_reply


def a_checkpoint(server_round=2, **components):
    return Checkpoint(
        server_round=server_round,
        config=RunConfig.of(num_server_rounds=5).to_flat(),
        arrays=payload(1.5, 2.5),
        history={"train": {1: {"loss": 1.0, "n": 3}}, "evaluate": {}, "central": {0: {"x": 2.0}}},
        components=components,
    )


def test_encode_decode_round_trips_nested_state():
    state = {
        ("release", 3): [1, 2.5, None, True, "s"],
        7: (np.arange(6, dtype=np.int32).reshape(2, 3), torch.tensor([1, 2], dtype=torch.uint8)),
        "nan": math.nan,
        "nested": {"__array__": "not an array marker"},
    }
    arrays: list[np.ndarray] = []
    again = decode(encode(state, arrays), arrays)
    assert again[("release", 3)] == [1, 2.5, None, True, "s"]
    np.testing.assert_array_equal(again[7][0], state[7][0])
    assert torch.equal(again[7][1], state[7][1])
    assert math.isnan(again["nan"])
    assert again["nested"] == {"__array__": "not an array marker"}


def test_encode_refuses_what_it_cannot_restore():
    with pytest.raises(TypeError, match=r"state\[.x.\]: cannot checkpoint a object"):
        encode({"x": object()}, [])


def test_write_then_read_gives_the_same_checkpoint(tmp_path):
    path = write_checkpoint(tmp_path, a_checkpoint(store={"k": np.ones(3)}))
    assert path == tmp_path / CHECKPOINT_FILE
    again = read_checkpoint(tmp_path)
    assert again.server_round == 2
    assert again.config == RunConfig.of(num_server_rounds=5).to_flat()
    assert list(again.arrays) == ["w", ANCHORS_KEY]
    np.testing.assert_array_equal(again.arrays[ANCHORS_KEY], payload(1.5, 2.5)[ANCHORS_KEY])
    assert again.arrays["w"].dtype == np.float32
    assert again.history["train"] == {1: {"loss": 1.0, "n": 3}}
    np.testing.assert_array_equal(again.components["store"]["k"], np.ones(3))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_a_failed_write_keeps_the_last_good_checkpoint(tmp_path):
    write_checkpoint(tmp_path, a_checkpoint(server_round=1))
    with pytest.raises(TypeError):
        write_checkpoint(tmp_path, a_checkpoint(server_round=2, bad=object()))
    assert read_checkpoint(tmp_path).server_round == 1
    assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "text"])
def test_a_damaged_checkpoint_is_refused_clearly(tmp_path, damage):
    path = write_checkpoint(tmp_path, a_checkpoint())
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "empty":
        data = bytearray()
    else:
        data = bytearray(b"not a checkpoint")
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"(truncated or corrupt|is corrupt)"):
        read_checkpoint(tmp_path)


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        read_checkpoint(tmp_path / "nowhere")


def test_resume_must_keep_the_settings_that_change_the_math():
    saved = RunConfig.of(num_server_rounds=2).to_flat()
    check_resumable(saved, RunConfig.of(num_server_rounds=9, out_dir="/x", round_timeout=5.0), "d")
    with pytest.raises(CheckpointError, match=r"model-width=64, this run has model-width=32"):
        check_resumable(saved, RunConfig.of(model_width=32, model_heads=2), "d")


def test_resume_beyond_the_last_round_is_refused(tmp_path):
    write_checkpoint(tmp_path, a_checkpoint(server_round=4))
    with pytest.raises(CheckpointError, match=r"num-server-rounds=3 is invalid.*round 4"):
        Checkpoints(RunConfig.of(num_server_rounds=3, resume=str(tmp_path)))


def test_random_state_restores_all_three_generators():
    state = RandomState().state_dict()
    arrays: list[np.ndarray] = []
    saved = decode(encode(state, arrays), arrays)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    RandomState().load_state_dict(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_fedadam_moments_round_trip():
    strategy = FedAdam()
    assert FedOptState(strategy).state_dict() == {"m_t": None, "v_t": None}
    strategy.m_t, strategy.v_t = {"w": np.ones(2)}, {"w": np.full(2, 3.0)}
    state = FedOptState(strategy).state_dict()
    fresh = FedAdam()
    FedOptState(fresh).load_state_dict(state)
    np.testing.assert_array_equal(fresh.v_t["w"], [3.0, 3.0])


def test_fedaso_anchor_store_round_trips_under_partition_keys(tmp_path):
    strategy = FedASO(anchor_staleness_decay=0.5)
    strategy.global_arrays = payload(0.0, 0.0)
    reply = train_reply(11, payload(1.0, 4.0), metrics(0.5) | {"partition-id": 3})
    strategy.aggregate_train(1, [reply])
    assert list(strategy.anchor_store.reports) == ["partition-3"]
    write_checkpoint(tmp_path, a_checkpoint(strategy=strategy.state_dict()))
    fresh = FedASO(anchor_staleness_decay=0.5)
    fresh.load_state_dict(read_checkpoint(tmp_path).components["strategy"])
    np.testing.assert_array_equal(fresh.anchor_store.merge(2), strategy.anchor_store.merge(2))
    assert fresh.anchor_store.reports["partition-3"].server_round == 1


def test_strategy_components_reach_through_wrappers():
    inner = FedASO()
    wrapped = DifferentialPrivacyServerSideFixedClipping(
        inner, noise_multiplier=1.0, clipping_norm=1.0, num_sampled_clients=2
    )
    assert strategy_components(wrapped) == {"strategy.inner": inner}
    assert isinstance(strategy_components(FedAdam())["strategy"], FedOptState)


def test_update_dp_accounting_is_saved_and_reaches_fedaso_inside_the_wrapper():
    run = RunConfig.of(update_dp="server-fixed", update_noise_multiplier=0.5)
    inner = FedASO()
    outer = build_update_dp(inner, run, num_sampled=2)
    outer.account.record(noise_multiplier=0.5, sample_rate=0.2, steps=3)
    components = strategy_components(outer)
    assert components == {"strategy": outer, "strategy.inner.inner": inner}
    arrays: list[np.ndarray] = []
    state = decode(json.loads(json.dumps(encode(outer.state_dict(), arrays))), arrays)
    fresh = build_update_dp(FedASO(), run, num_sampled=2)
    fresh.load_state_dict(state)
    assert fresh.account.accountant.history == [(0.5, 0.2, 3)]
    assert fresh.account.epsilon(1e-5) == outer.account.epsilon(1e-5)


def test_checkpoints_restore_refuses_a_checkpoint_without_a_component(tmp_path):
    write_checkpoint(tmp_path, a_checkpoint(rng=RandomState().state_dict()))
    checkpoints = Checkpoints(RunConfig.of(num_server_rounds=5, resume=str(tmp_path)))
    checkpoints.register_strategy(FedASO())
    with pytest.raises(CheckpointError, match=r"holds no state for \['strategy'\]"):
        checkpoints.restore(Result())


def test_metered_traffic_history_round_trips(tmp_path):
    metered = MeteredGrid(None, partition_of={}.get)
    metered.rounds = {1: RoundTraffic(model_bytes_down=5, messages=2, train_partitions=[0, 1])}
    write_checkpoint(tmp_path, a_checkpoint(traffic=metered.state_dict()))
    fresh = MeteredGrid(None, partition_of={}.get)
    fresh.load_state_dict(read_checkpoint(tmp_path).components["traffic"])
    assert fresh.traffic(1) == metered.traffic(1)
    assert fresh.traffic(1)["train-partitions"] == [0, 1]
