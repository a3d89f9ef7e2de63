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
delivered are unchanged (tests/test_linkstate.py compares both lookups on Flower's own
state); an expired instruction is dropped when its own node polls, not when any node does.
The swap is undone on exit and applies only to the Flower version it was written against.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from logging import WARNING

import flwr
from flwr.app import Message
from flwr.common import log
from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
from flwr.supercore.date import now

# The versions whose lookup this mirrors: in_memory_linkstate.py is the same file in both,
# and both scan every stored instruction per poll (measured: benchmarks/BENCHMARKS.md).
PATCHED_FLOWER_VERSIONS = ("1.41.0", "1.42.0")
FLOWER_STORE = InMemoryLinkState.store_message_ins
FLOWER_LOOKUP = InMemoryLinkState.get_message_ins
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
        pending[:] = still_pending
    delivered_at = now().isoformat()
    for message in found:
        message.metadata.delivered_at = delivered_at
    return found


@contextmanager
def indexed_message_lookup() -> Iterator[bool]:
    """Use the indexed store and lookup inside the block; yields whether they are in use."""
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
    try:
        yield True
    finally:
        setattr(InMemoryLinkState, "store_message_ins", FLOWER_STORE)  # noqa: B010
        setattr(InMemoryLinkState, "get_message_ins", FLOWER_LOOKUP)  # noqa: B010
