"""The simulation's message lookup against Flower's own, on Flower's real in-memory state."""

import secrets
import time
from queue import Queue

import flwr
import pytest
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.common.constant import (
    HEARTBEAT_INTERVAL_INF,
    NOOP_ACCOUNT_NAME,
    NOOP_FLWR_AID,
    RUN_ID_NUM_BYTES,
    SUPERLINK_NODE_ID,
    TASK_ID_NUM_BYTES,
)
from flwr.proto.task_pb2 import Task
from flwr.server.superlink.fleet.vce import vce_api
from flwr.server.superlink.linkstate import InMemoryLinkState, LinkStateFactory
from flwr.server.superlink.linkstate.in_memory_linkstate import RunRecord
from flwr.server.superlink.linkstate.utils import generate_rand_int_from_bytes
from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity
from flwr.superlink.federation import NoOpFederationManager
from flwr.superlink.grid import InMemoryGrid

from simulations.linkstate import (
    FLOWER_LOOKUP,
    FLOWER_STORE,
    FLOWER_SWEEP,
    PATCHED_FLOWER_VERSIONS,
    get_message_ins_for_node,
    indexed_message_lookup,
    pending_by_node,
    sweep_once,
    sweep_pending,
)


@pytest.fixture(autouse=True)
def server_task_identity():
    """Messages take their run and source from the process's task identity, which
    run_simulation sets for the ServerApp; set it likewise and restore it afterwards."""
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def populated_state(num_nodes=4, per_node=2, *, indexed=False):
    """Flower's in-memory state set up as run_simulation does, with instructions queued.

    Node 0 also has one instruction that has already expired. ``indexed`` stores them with
    the indexed store (as during a simulation); otherwise the index is built on first use.
    """
    factory = LinkStateFactory(
        FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory()
    )
    state = factory.state()
    run = Run.create_empty(run_id=generate_rand_int_from_bytes(RUN_ID_NUM_BYTES))
    run.primary_task_id = generate_rand_int_from_bytes(TASK_ID_NUM_BYTES)
    run.federation_id = NOOP_FEDERATION_ID
    state.run_ids[run.run_id] = RunRecord(run=run)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = (
        1,
        run.run_id,
        (SUPERLINK_NODE_ID),
    )
    state.task_store[run.primary_task_id] = Task(task_id=run.primary_task_id, run_id=run.run_id)
    nodes = []
    for _ in range(num_nodes):
        node_id = state.create_node(
            NOOP_FLWR_AID,
            NOOP_ACCOUNT_NAME,
            secrets.token_bytes(32),
            heartbeat_interval=HEARTBEAT_INTERVAL_INF,
        )
        state.acknowledge_node_heartbeat(node_id=node_id, heartbeat_interval=HEARTBEAT_INTERVAL_INF)
        nodes.append(node_id)
    grid = InMemoryGrid(state_factory=factory)
    grid.set_run(run)
    expired = Message(RecordDict(), nodes[0], "train", ttl=1.0, group_id="old")
    push(grid, nodes, range(per_node), extra=[expired], indexed=indexed)
    assert len(state.message_ins_store) == per_node * num_nodes + 1
    expired.metadata.__dict__["_created_at"] = time.time() - 60.0
    return state, nodes, grid


def push(grid, nodes, rounds, *, extra=(), indexed):
    """Push one instruction per node and round, as a ServerApp does."""
    messages = []
    for round_ in rounds:
        for k, node_id in enumerate(nodes):
            content = RecordDict({"config": ConfigRecord({"round": round_, "node": k})})
            messages.append(Message(content, node_id, "train", ttl=600.0, group_id=str(round_)))
    if indexed:
        with indexed_message_lookup():
            grid.push_messages([*messages, *extra])
    else:
        grid.push_messages([*messages, *extra])


def poll_everything(state, nodes, lookup):
    """Poll every node until nothing is left, as the engine does; record what each gets."""
    received = []
    while True:
        batch = [(node, m) for node in nodes for m in lookup(state, node, limit=1)]
        if not batch:
            return received
        received.extend(
            (node, dict(m.content["config"]), m.metadata.delivered_at != "") for node, m in batch
        )


def deliveries(lookup, *, indexed):
    """Everything each node receives over two batches of instructions, the second pushed
    after the first was delivered (a next round); nodes by index, as ids are random.

    ``indexed`` stores the first batch through the indexed store; the second batch goes
    through it whenever ``lookup`` is the indexed one, as inside ``indexed_message_lookup``.
    """
    state, nodes, grid = populated_state(indexed=indexed)
    received = poll_everything(state, nodes, lookup)
    push(grid, nodes, [2, 3], indexed=lookup is get_message_ins_for_node)
    received += poll_everything(state, nodes, lookup)
    index = {node: k for k, node in enumerate(nodes)}
    return [(index[n], config, delivered) for n, config, delivered in received], state


@pytest.mark.parametrize("indexed", [True, False], ids=["stored-indexed", "index-built-late"])
def test_each_node_receives_what_flowers_lookup_gives_it(indexed):
    want, flower_state = deliveries(FLOWER_LOOKUP, indexed=False)
    got, fast_state = deliveries(get_message_ins_for_node, indexed=indexed)
    assert got == want
    assert len(got) == 16 and all(delivered for _, _, delivered in got)
    # The expired instruction was dropped, not delivered, by both.
    assert len(fast_state.message_ins_store) == len(flower_state.message_ins_store) == 16


def test_limit_and_run_filter_behave_as_flowers():
    state, nodes, _ = populated_state(num_nodes=2, per_node=3, indexed=True)
    with pytest.raises(AssertionError, match="limit"):
        get_message_ins_for_node(state, nodes[1], limit=0)
    run_id = next(iter(state.run_ids))
    assert get_message_ins_for_node(state, nodes[1], limit=1, run_id=run_id + 1) == []
    assert len(get_message_ins_for_node(state, nodes[1], limit=None, run_id=run_id)) == 3
    assert get_message_ins_for_node(state, nodes[1], limit=None) == []  # all delivered


def test_the_swap_is_scoped_to_the_block():
    with indexed_message_lookup() as active:
        assert active == (flwr.__version__ in PATCHED_FLOWER_VERSIONS)
        if active:
            assert InMemoryLinkState.get_message_ins is get_message_ins_for_node
    assert InMemoryLinkState.get_message_ins is FLOWER_LOOKUP
    assert InMemoryLinkState.store_message_ins is FLOWER_STORE


def sweeps(state, nodes, sweep):
    """What each sweep queues, as (node index, config), until a sweep queues nothing."""
    index = {node: k for k, node in enumerate(nodes)}
    mapping = dict(index)  # node id -> partition id, as the engine registers them
    rounds = []
    while True:
        queue = Queue()
        sweep(state, queue, mapping)
        queued = [queue.get() for _ in range(queue.qsize())]
        if not queued:
            return rounds
        rounds.append(sorted((index[m.metadata.dst_node_id], str(m.content)) for m in queued))


def flowers_sweep(state, queue, nodes_mapping):
    """The body of Flower's ``add_messages_to_queue`` loop: every node, one lookup each."""
    for node_id in nodes_mapping:
        for message in state.get_message_ins(node_id=node_id, limit=1):
            queue.put(message)


def test_sweeping_only_nodes_with_pending_instructions_queues_what_flowers_sweep_does():
    want = sweeps(*populated_state(num_nodes=5, per_node=2)[:2], flowers_sweep)
    state, nodes, _ = populated_state(num_nodes=5, per_node=2, indexed=True)
    with indexed_message_lookup():
        got = sweeps(state, nodes, sweep_once)
    assert got == want and [len(batch) for batch in got] == [5, 5]
    assert pending_by_node(state) == {}  # nothing pending: nothing left to sweep


def test_the_swap_includes_the_engines_sweep():
    with indexed_message_lookup() as active:
        if active:
            assert vce_api.add_messages_to_queue is sweep_pending
    assert vce_api.add_messages_to_queue is FLOWER_SWEEP
