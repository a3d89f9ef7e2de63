"""Which node may speak for which partition: ``partition-id`` bound on first use.

A training reply says which partition it comes from (metric ``partition-id``), and FedASO
keeps one anchor report per partition (``fedaso.aso.aggregation.PartitionAnchorStore``). Taken
as sent, that claim would let a node speak for another site (its real replies then look
like repeats and are dropped) or invent a new partition every round (the anchor store and
the checkpoint grow without bound). :class:`PartitionRegistry` therefore binds

- each anchor-store key (``partition-K``, or ``node-N`` for a reply without a partition
  id) to the node that first reported it, and each node to that one key: a node that
  claims a key bound to another connected node, or that switches keys, is refused. The
  first report is the node's partition id as the grid knows it before any training (from
  the simulation engine's registration, or the node's answer to the partition query,
  read from its node config: ``strategies.grids``), where there is one. Only nodes that
  are sampled are bound; a key no node is bound to yet belongs to the node the grid knows
  to hold it (``known``), so nodes that never train leave no state here;
- partition ids to the federation's size: ``K`` must be below the largest number of nodes
  seen connected at once, and keys without a partition id are at most that many.

A key whose node is no longer connected passes to the next node that claims it: a SuperNode
that restarts gets a new node id from the SuperLink (under SuperNode authentication, the id
follows its key), and a resumed run sees new node ids throughout. The binding is part of
the strategy's checkpoint. Trust is on first use: the node that speaks first for a
partition holds it while it stays connected (docs/RELIABILITY.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

PARTITION_PREFIX = "partition-"


def partition_key_of(index: int) -> str:
    """The anchor-store key of partition ``index``."""
    return f"{PARTITION_PREFIX}{index}"


def partition_index(key: str) -> int | None:
    """``K`` of a ``partition-K`` store key; None for a ``node-N`` key."""
    return int(key[len(PARTITION_PREFIX) :]) if key.startswith(PARTITION_PREFIX) else None


class KnownPartitions(Protocol):
    """Partition ids known before any training (``strategies.grids.PartitionOrderedGrid``)."""

    def partition(self, node: int) -> int | None:
        """The partition id ``node`` is known to hold, or None."""

    def node_of_partition(self, partition: int) -> int | None:
        """The node known to hold ``partition``, or None."""


class PartitionRegistry:
    """Binds anchor-store keys to nodes (see the module docstring)."""

    def __init__(self) -> None:
        self.node_of: dict[str, int] = {}  # store key -> the node bound to it
        self.key_of: dict[int, str] = {}  # node -> the store key it is bound to
        self.federation_size = 0  # most nodes seen connected at once; 0 while unknown
        self.connected: frozenset[int] | None = None  # None while unknown: all bound count
        self.known: KnownPartitions | None = None  # who holds what before any training

    def observe(self, node_ids: Iterable[int]) -> None:
        """Note the nodes connected now (each round, before sampling)."""
        self.connected = frozenset(node_ids)
        self.federation_size = max(self.federation_size, len(self.connected))

    def claim(self, node_id: int, key: str) -> str | None:
        """Bind ``key`` to ``node_id`` and return None, or return why the node may not hold it."""
        problem = self.problem(node_id, key)
        if problem is None:
            self.bind(node_id, key)
        return problem

    def problem(self, node_id: int, key: str) -> str | None:
        """Why ``node_id`` may not hold ``key``, or None if it may."""
        own = self.key_of.get(node_id)
        if own is not None and own != key:
            return f"node {node_id} speaks for {own}; it cannot switch to {key}"
        holder = self.holder(key, node_id)
        if holder is not None and holder != node_id and self.is_connected(holder):
            return f"{key} belongs to node {holder}, which is still connected"
        if holder is None and self.federation_size:
            index = partition_index(key)
            if index is not None and index >= self.federation_size:
                return (
                    f"{key} is beyond the federation's size: at most {self.federation_size} "
                    "nodes have been connected at once"
                )
            if index is None:
                unnumbered = sum(partition_index(k) is None for k in self.node_of)
                if unnumbered >= self.federation_size:
                    return f"already {unnumbered} nodes without a partition-id; {key} is one more"
        return None

    def holder(self, key: str, claimant: int) -> int | None:
        """The node bound to ``key``, else the node known to hold it, else None."""
        bound = self.node_of.get(key)
        index = partition_index(key)
        if bound is not None or index is None or self.known is None:
            return bound
        if self.known.partition(claimant) == index:  # its own: the others need no look-up
            return claimant
        return self.known.node_of_partition(index)

    def is_connected(self, node_id: int) -> bool:
        """Whether ``node_id`` is connected now (every node counts while that is unknown)."""
        return self.connected is None or node_id in self.connected

    def bind(self, node_id: int, key: str) -> None:
        """Bind ``key`` to ``node_id``, releasing the key's previous node, if any."""
        previous = self.node_of.get(key)
        if previous is not None and previous != node_id:
            del self.key_of[previous]
        self.node_of[key] = node_id
        self.key_of[node_id] = key

    def state_dict(self) -> dict[str, Any]:
        """The binding and the federation size, for a checkpoint."""
        return {"node-of": dict(self.node_of), "federation-size": self.federation_size}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (the connected nodes are observed anew)."""
        self.node_of = {str(key): int(node) for key, node in state["node-of"].items()}
        self.key_of = {node: key for key, node in self.node_of.items()}
        self.federation_size = int(state["federation-size"])
        self.connected = None
