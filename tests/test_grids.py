"""Traffic counting and partition queries on real Flower messages (the grids run end to end
in tests/test_experiment_commands.py)."""

import time

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.metadata import Metadata

from clients.client_app import app
from fedaso.wire import ANCHORS_KEY
from flower_wire.records import arrays_to_record
from strategies.grids import (
    PARTITION_QUERY,
    PartitionOrderedGrid,
    RegisteredPartitions,
    RoundTraffic,
    partition_of_reply,
    payload_bytes,
    reported_steps,
    round_of,
)
from tests.test_linkstate import populated_state, server_task_identity  # noqa: F401


def test_payload_bytes_split_model_and_anchors():
    arrays = {
        "w": np.zeros((3, 4), dtype=np.float32),  # 48 bytes
        "b": np.zeros(5, dtype=np.float64),  # 40 bytes
        ANCHORS_KEY: np.zeros((2, 4), dtype=np.float32),  # 32 bytes
    }
    content = RecordDict({"arrays": arrays_to_record(arrays), "config": ConfigRecord({})})
    assert payload_bytes(content) == (88, 32)
    assert payload_bytes(RecordDict()) == (0, 0)


def metadata(message_type):
    return Metadata(
        run_id=1,
        message_id="q1",
        src_node_id=0,
        dst_node_id=9,
        reply_to_message_id="",
        group_id="0",
        created_at=time.time(),
        ttl=60.0,
        message_type=message_type,
    )


def test_round_and_steps_are_read_from_the_records():
    config = RecordDict({"config": ConfigRecord({"server-round": 7})})
    assert round_of(Message(content=config, metadata=metadata("train"))) == 7
    assert round_of(Message(content=RecordDict(), metadata=metadata("train"))) == 0
    assert reported_steps(RecordDict({"m": MetricRecord({"num-steps": 12})})) == 12
    assert reported_steps(RecordDict({"m": MetricRecord({"loss": 1.0})})) == 0


def test_round_traffic_adds_up_both_ways():
    metrics = RoundTraffic(model_bytes_down=10, model_bytes_up=5, anchor_bytes_up=2).as_metrics()
    assert metrics["model-bytes"] == 15 and metrics["anchor-bytes"] == 2
    assert metrics["train-partitions"] == [] and metrics["local-steps"] == 0


def test_the_client_app_answers_the_partition_query():
    context = Context(
        run_id=1,
        node_id=9,
        node_config={"partition-id": 4, "num-partitions": 6},
        state=RecordDict(),
        run_config={},
    )
    reply = app(Message(content=RecordDict(), metadata=metadata(PARTITION_QUERY)), context)
    assert not reply.has_error()
    assert partition_of_reply(reply) == 4
    empty = Message(RecordDict({"m": MetricRecord({"x": 1.0})}), reply_to=reply)
    assert partition_of_reply(empty) is None


@pytest.mark.usefixtures("server_task_identity")
def test_registered_partitions_order_the_nodes_without_a_message_to_any():
    state, nodes, grid = populated_state(num_nodes=4, per_node=0)
    state.message_ins_store.clear()  # populated_state's one expired instruction
    registered = RegisteredPartitions()
    registered.publish({node: 3 - k for k, node in enumerate(nodes)})
    ordered = PartitionOrderedGrid(grid, registered=registered)
    assert list(ordered.get_node_ids()) == nodes[::-1]
    assert not state.message_ins_store  # no partition query was sent
    assert ordered.partition(nodes[0]) == 3 and ordered.node_of_partition(0) == nodes[3]
    assert ordered.partition_of == {}  # the registrar's mapping is read, not copied


@pytest.mark.usefixtures("server_task_identity")
def test_a_node_missing_from_the_registration_is_queried_and_listed_last():
    state, nodes, grid = populated_state(num_nodes=3, per_node=0)
    state.message_ins_store.clear()
    registered = RegisteredPartitions()
    registered.publish({nodes[1]: 0, nodes[2]: 1})
    ordered = PartitionOrderedGrid(grid, timeout=0.2, registered=registered)
    assert list(ordered.get_node_ids()) == [nodes[1], nodes[2], nodes[0]]
    # One query went out, to the unregistered node, and found no client to answer it.
    assert [m.metadata.dst_node_id for m in state.message_ins_store.values()] == [nodes[0]]
    assert ordered.partition(nodes[0]) is None


def test_an_unpublished_registration_is_empty_after_its_timeout_then_not_waited_for():
    registered = RegisteredPartitions()
    assert registered.wait(timeout=0.01) == {}
    start = time.perf_counter()
    assert registered.wait(timeout=60.0) == {}
    assert time.perf_counter() - start < 1.0
    registered.publish({7: 0})
    assert registered.wait() == {7: 0}
