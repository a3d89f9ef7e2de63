"""The real ClientApp driven with real Flower messages: reply shape, anchor state, modes."""

import tempfile
import time

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.app.metadata import Metadata

from clients.client_app import app, node_partition
from clients.policy import SITE_POLICY_KEY, MessageConfigError
from clients.state import STATE_DIR_KEY, load_state, partition_directory, state_root
from fedaso.config import server_only_keys
from fedaso.config.client import ClientConfig
from fedaso.models.arrays import model_to_arrays
from fedaso.wire import ANCHORS_KEY, join_payload, with_probe
from flower_wire.records import arrays_to_record, record_to_arrays
from tests.config_helpers import micro_run

RUN_KEY = "test-run"
RUN = micro_run(local_epochs=1)


def instruction(run, anchors, message_type="train", server_round=1):
    model_arrays = model_to_arrays(run.build_model())
    content = RecordDict(
        {
            "arrays": arrays_to_record(join_payload(model_arrays, anchors)),
            "config": ConfigRecord(client_config(run, server_round)),
        }
    )
    metadata = Metadata(
        run_id=1,
        message_id=f"m{server_round}",
        src_node_id=0,
        dst_node_id=3,
        reply_to_message_id="",
        group_id=str(server_round),
        created_at=time.time(),
        ttl=60.0,
        message_type=message_type,
    )
    return Message(content=content, metadata=metadata)


def client_config(run, server_round=1):
    """What the ServerApp sends: the client view, the round and the run key."""
    return ClientConfig(run=run, server_round=server_round, run_key=RUN_KEY).to_message()


def context(partition_id=1, num_partitions=4, site_policy=None):
    """A node of its own: a fresh state directory, so nothing is carried over from elsewhere.

    Without ``site_policy`` the node is a deployed one's: the strict default applies.
    """
    policy = {} if site_policy is None else {SITE_POLICY_KEY: site_policy}
    return Context(
        run_id=1,
        node_id=3,
        node_config={
            "partition-id": partition_id,
            "num-partitions": num_partitions,
            STATE_DIR_KEY: tempfile.mkdtemp(prefix="fedaso-client-state-"),
        }
        | policy,
        state=RecordDict(),
        run_config={},
    )


def kept_anchors(ctx, before_round=2):
    """The partition's own anchor set on the node's disk, as the next round would see it."""
    directory = partition_directory(
        state_root(ctx.node_config), RUN_KEY, int(ctx.node_config["partition-id"])
    )
    return load_state(directory, before_round).anchors


def test_train_replies_one_arrayrecord_with_anchors_and_one_metricrecord():
    anchors = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    ctx = context()
    reply = app(instruction(RUN, anchors), ctx)
    assert len(reply.content.array_records) == 1 and len(reply.content.metric_records) == 1
    arrays = record_to_arrays(reply.content["arrays"])
    assert list(arrays)[-1] == ANCHORS_KEY and arrays[ANCHORS_KEY].shape == (8, 16)
    metrics = reply.content["metrics"]
    assert metrics["num-examples"] > 0 and 0 < metrics["mean-relevance"] < 1
    # The partition keeps its own anchor set for the next round.
    stored = kept_anchors(ctx)
    np.testing.assert_array_equal(stored, arrays[ANCHORS_KEY])


def test_next_round_blends_the_global_set_into_the_partitions_own():
    rng = np.random.default_rng(1)
    ctx = context()
    app(instruction(RUN, rng.standard_normal((8, 16)).astype(np.float32)), ctx)
    own = kept_anchors(ctx)
    new_global = rng.standard_normal((8, 16)).astype(np.float32)
    # Without anchor DP the change leaves unclipped: the blend itself is seen.
    static = RUN.replace(update_anchors=False, anchor_blend=0.25)
    reply = app(instruction(static, new_global, server_round=2), ctx)
    sent = record_to_arrays(reply.content["arrays"])[ANCHORS_KEY]
    np.testing.assert_allclose(sent, 0.75 * own + 0.25 * new_global, rtol=1e-5, atol=1e-6)


def test_without_anchors_the_client_trains_plainly():
    reply = app(instruction(RUN.replace(strategy="fedavg"), None), context())
    assert ANCHORS_KEY not in record_to_arrays(reply.content["arrays"])
    assert "mean-relevance" not in reply.content["metrics"]


def test_the_probe_without_eq5_turns_aso_on_without_anchors():
    run = RUN.replace(relevance_source="probe", project_gradients=False)
    message = instruction(run, None)
    arrays = record_to_arrays(message.content["arrays"])
    probe = with_probe(arrays, np.full(16, 0.1, dtype=np.float32), -0.2)
    message.content["arrays"] = arrays_to_record(probe)
    reply = app(message, context())
    assert set(record_to_arrays(reply.content["arrays"])) == set(arrays)  # the model alone
    metrics = reply.content["metrics"]
    assert 0 < metrics["mean-relevance"] < 1 and metrics["partition-id"] == 1
    # Anchors sent to such a run are a malformed message, refused before training.
    anchors = np.zeros((8, 16), dtype=np.float32)
    with_anchors = instruction(run, anchors)
    with_anchors.content["arrays"] = arrays_to_record(
        with_probe(join_payload(arrays, anchors), np.ones(16, dtype=np.float32), 0.0)
    )
    with pytest.raises(MessageConfigError, match="carries anchors, but"):
        app(with_anchors, context())


def test_evaluate_reports_loss_accuracy_and_perplexity():
    reply = app(instruction(RUN, None, message_type="evaluate"), context())
    metrics = reply.content["metrics"]
    assert metrics["loss"] > 0 and 0 <= metrics["accuracy"] <= 1
    assert metrics["perplexity"] == pytest.approx(np.exp(metrics["loss"]), rel=1e-6)


def test_missing_node_config_is_explained():
    with pytest.raises(ValueError, match="partition-id"):
        node_partition({})
    with pytest.raises(ValueError, match="partition-id=5"):
        node_partition({"partition-id": 5, "num-partitions": 4})


def test_clients_receive_every_key_but_the_server_only_ones():
    sent = client_config(RUN)
    assert not server_only_keys() & set(sent)
    assert set(RUN.to_flat()) - server_only_keys() <= set(sent)  # new keys flow on their own
    assert {"out-dir", "resume", "initial-model", "fault-plan"} <= server_only_keys()
    parsed = ClientConfig.from_message(sent)
    assert parsed.run.client_view() == RUN.client_view() and parsed.run_key == RUN_KEY


@pytest.mark.parametrize("key", ["lr", "anchor-dp", "server-round", "run-key"])
def test_a_missing_key_is_an_error_naming_it_not_a_default(key):
    msg = instruction(RUN, None)
    del msg.content["config"][key]
    with pytest.raises(ValueError, match=f"lacks required key.*{key}"):
        app(msg, context())


def test_a_server_only_key_in_a_client_message_is_refused():
    msg = instruction(RUN, None)
    msg.content["config"]["out-dir"] = "/tmp/x"
    with pytest.raises(ValueError, match=r"server-only key.*out-dir"):
        app(msg, context())
