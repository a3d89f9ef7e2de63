"""An indexed message lookup for Flower's in-memory link state during simulations.

Flower's simulation engine (1.41 and 1.42) polls its in-memory link state once per simulated node,
every 0.1 s, for that node's next instruction (``add_messages_to_queue`` in
``flwr/server/superlink/fleet/vce/vce_api.py``). ``InMemoryLinkState.get_message_ins``
answers each poll by scanning *every* stored instruction, whoever it is for, under the
state's lock, so a polling sweep over N nodes with N instructions in flight costs N x N
checks, and the sweeps repeat all round long. Profiled with py-spy at N = 500, even a scan
that skipped other nodes' instructions after two attribute reads took 40% of the driver's
CPU, on a machine whose two cores the clients need (benchmarks/BENCHMARKS.md).

:func:`indexed_message_lookup` keeps, beside Flower's store, each node's undelivered
instruction ids in arrival order: :func:`store_message_ins_indexed` adds to it, and
:func:`get_message_ins_for_node` reads only the polling node's ids, running Flower's own
validity check (clock, TTL, federation) on each before delivering it. A sweep then costs
O(N + instructions). What a node receives, in which order, and when instructions are marked
delivered are unchanged (tests/unit/simulations/test_linkstate.py compares both lookups on
Flower's own state); an expired instruction is dropped when its own node polls, not when any
node does.

The sweep itself still visits every registered node: 100,000 lookups every 0.1 s, all
round long, for the hundred nodes sampled. :func:`sweep_pending` replaces the engine's
sweep (``add_messages_to_queue``) with one over the nodes that have an instruction in the
index, one instruction per node per sweep as Flower's does, so that it costs
O(instructions); a node's entry leaves the index once it has nothing pending. The swaps are
undone on exit and apply only to the Flower versions they were written against.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from logging import WARNING
from queue import Queue

import flwr
from flwr.app import Message
from flwr.common import log
from flwr.server.superlink.fleet.vce import vce_api
from flwr.server.superlink.linkstate import LinkState
from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
from flwr.supercore.date import now

# The versions whose lookup this mirrors: in_memory_linkstate.py is the same file in both,
# and both scan every stored instruction per poll (measured: benchmarks/BENCHMARKS.md).
PATCHED_FLOWER_VERSIONS = ("1.41.0", "1.42.0")
FLOWER_STORE = InMemoryLinkState.store_message_ins
FLOWER_LOOKUP = InMemoryLinkState.get_message_ins
FLOWER_SWEEP = vce_api.add_messages_to_queue
SWEEP_INTERVAL = 0.1  # seconds between sweeps, as Flower's
INDEX_ATTRIBUTE = "_fedaso_pending_by_node"


def pending_by_node(state: InMemoryLinkState) -> dict[int, list[str]]:
    """The state's index: node id -> ids of its stored instructions, oldest first.

    Built from the store on first use, so instructions stored before the swap are found.
    Callers hold ``state.lock``.
    """
    index = state.__dict__.get(INDEX_ATTRIBUTE)
    if index is None:
        index = {}
        for message_id, message in state.message_ins_store.items():
            index.setdefault(message.metadata.dst_node_id, []).append(message_id)
        state.__dict__[INDEX_ATTRIBUTE] = index
    return index


def store_message_ins_indexed(self: InMemoryLinkState, message: Message) -> str | None:
    """``InMemoryLinkState.store_message_ins``, also recording the id in the node's index."""
    message_id = FLOWER_STORE(self, message)
    if message_id is not None:
        with self.lock:
            pending = pending_by_node(self).setdefault(message.metadata.dst_node_id, [])
            if message_id not in pending:  # Flower accepts a re-stored id silently
                pending.append(message_id)
    return message_id


def get_message_ins_for_node(
    self: InMemoryLinkState, node_id: int, limit: int | None, *, run_id: int | None = None
) -> list[Message]:
    """``InMemoryLinkState.get_message_ins``, reading only this node's pending instructions."""
    if limit is not None and limit < 1:
        raise AssertionError("`limit` must be >= 1")
    found: list[Message] = []
    with self.lock:
        pending = pending_by_node(self).get(node_id, [])
        still_pending = []
        for message_id in pending:
            message = self.message_ins_store.get(message_id)
            if message is None or message.metadata.delivered_at != "":
                continue  # deleted or delivered elsewhere: forget it
            if (limit and len(found) == limit) or (
                run_id is not None and message.metadata.run_id != run_id
            ):
                still_pending.append(message_id)
                continue
            self._check_stored_messages({message_id})  # drops it if expired or invalid
            if message_id in self.message_ins_store:
                found.append(message)
        if still_pending:
            pending[:] = still_pending
        else:  # the index holds only nodes with something pending
            pending_by_node(self).pop(node_id, None)
    delivered_at = now().isoformat()
    for message in found:
        message.metadata.delivered_at = delivered_at
    return found


def nodes_with_pending(state: InMemoryLinkState) -> list[int]:
    """Nodes with an undelivered instruction in the index, in the order they got one."""
    with state.lock:
        return list(pending_by_node(state))


def sweep_once(state: LinkState, queue: Queue[Message], nodes_mapping: Mapping[int, int]) -> None:
    """Queue at most one instruction for each registered node that has one pending."""
    if not isinstance(state, InMemoryLinkState):  # only the in-memory state has the index
        nodes = list(nodes_mapping)
    else:
        nodes = [node for node in nodes_with_pending(state) if node in nodes_mapping]
    for node_id in nodes:
        for message in state.get_message_ins(node_id=node_id, limit=1):
            queue.put(message)


def sweep_pending(
    state: LinkState,
    queue: Queue[Message],
    nodes_mapping: Mapping[int, int],
    f_stop: threading.Event,
) -> None:
    """``vce_api.add_messages_to_queue``, sweeping only the nodes with instructions pending."""
    while not f_stop.is_set():
        sweep_once(state, queue, nodes_mapping)
        f_stop.wait(SWEEP_INTERVAL)


@contextmanager
def indexed_message_lookup() -> Iterator[bool]:
    """Use the indexed store, lookup and sweep inside the block; yields whether in use."""
    if flwr.__version__ not in PATCHED_FLOWER_VERSIONS:
        log(
            WARNING,
            "FedASO: flwr %s is not one of %s; keeping Flower's own message lookup",
            flwr.__version__,
            ", ".join(PATCHED_FLOWER_VERSIONS),
        )
        yield False
        return
    # setattr: replacing methods of Flower's class is the point here (undone below).
    setattr(InMemoryLinkState, "store_message_ins", store_message_ins_indexed)  # noqa: B010
    setattr(InMemoryLinkState, "get_message_ins", get_message_ins_for_node)  # noqa: B010
    setattr(vce_api, "add_messages_to_queue", sweep_pending)  # noqa: B010
    try:
        yield True
    finally:
        setattr(InMemoryLinkState, "store_message_ins", FLOWER_STORE)  # noqa: B010
        setattr(InMemoryLinkState, "get_message_ins", FLOWER_LOOKUP)  # noqa: B010
        setattr(vce_api, "add_messages_to_queue", FLOWER_SWEEP)  # noqa: B010
