"""A linear-time message lookup for Flower's in-memory link state during simulations.

Flower 1.41's simulation engine polls its in-memory link state once per simulated node,
every 0.1 s, for that node's next instruction (``add_messages_to_queue`` in
``flwr/server/superlink/fleet/vce/vce_api.py``). ``InMemoryLinkState.get_message_ins``
answers each poll by running the full validity check (clock read, TTL, federation lookup)
on *every* stored instruction, whoever it is for, under the state's lock. A round with N
sampled nodes therefore costs N x N checks per polling sweep, and the sweeps repeat all
round long: at N = 200 the driver spent about 30 ms of CPU per client task on it, beside
tasks that train for about 80 ms, on a machine whose cores the clients need.

:func:`fast_message_lookup` swaps in a lookup that skips instructions addressed to other
nodes, or already delivered, with two attribute comparisons before running the same
validity check on the rest. What a node receives, and when instructions are marked
delivered, are unchanged (tests/test_linkstate.py compares both lookups on Flower's own
state). The only difference: an expired instruction is dropped when its own node polls,
not when any node does. The swap is undone on exit and applies only to the Flower version
it was written against.
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

PATCHED_FLOWER_VERSION = "1.41.0"  # the version whose get_message_ins this mirrors


def get_message_ins_for_node(
    self: InMemoryLinkState, node_id: int, limit: int | None, *, run_id: int | None = None
) -> list[Message]:
    """``InMemoryLinkState.get_message_ins``, checking only this node's pending messages."""
    if limit is not None and limit < 1:
        raise AssertionError("`limit` must be >= 1")
    found = []
    with self.lock:
        for message_id, message in list(self.message_ins_store.items()):
            metadata = message.metadata
            if (
                metadata.dst_node_id != node_id
                or metadata.delivered_at != ""
                or (run_id is not None and metadata.run_id != run_id)
            ):
                continue
            self._check_stored_messages({message_id})  # drops it if expired or invalid
            if message_id in self.message_ins_store:
                found.append(message)
            if limit and len(found) == limit:
                break
    delivered_at = now().isoformat()
    for message in found:
        message.metadata.delivered_at = delivered_at
    return found


@contextmanager
def fast_message_lookup() -> Iterator[bool]:
    """Use :func:`get_message_ins_for_node` inside the block; yields whether it is in use."""
    if flwr.__version__ != PATCHED_FLOWER_VERSION:
        log(
            WARNING,
            "FedASO: flwr %s is not %s; keeping Flower's own message lookup",
            flwr.__version__,
            PATCHED_FLOWER_VERSION,
        )
        yield False
        return
    original = InMemoryLinkState.get_message_ins
    InMemoryLinkState.get_message_ins = get_message_ins_for_node
    try:
        yield True
    finally:
        InMemoryLinkState.get_message_ins = original
