"""Grid wrappers of the ServerApp: each one watches or changes what passes through a grid.

Flower's strategies sample clients with ``random.sample(list(grid.get_node_ids()), k)``.
Node ids are random 64-bit integers drawn anew by every SuperLink (and every simulation),
and ``get_node_ids`` returns them as a set, so even with ``random.seed(seed)`` two runs
sample different partitions. :class:`PartitionOrderedGrid` lists node ids in partition
order, so that the same seed samples the same partitions in every run: strategies compared
on one seed then see the same clients in the same rounds. Where the nodes were registered
by this process (Flower's simulation engine), the registrar publishes node id -> partition
id in :class:`RegisteredPartitions` and no node is asked anything; otherwise (a deployed
SuperLink) each node is asked once for its ``partition-id`` (a ``query.partition``
message answered by the ClientApp).

:class:`MeteredGrid` tallies the arrays carried by the messages each round: model bytes
and anchor bytes (the reserved ``aso.`` keys of ``fedaso.wire``), sent to and received
from the clients, counted from the ArrayRecords actually passed through the grid. It also
sums the local steps the clients report (``num-steps``), for the rounds- and
steps-to-target measure.

Replies collected as soon as they arrive: Flower 1.42's ``HttpGrid.send_and_receive`` (the
Deployment Engine's grid) pulls replies, then sleeps 3 s whenever some are missing, so every
exchange of a deployed round waits on average 1.5 s, and up to 3 s, after its last reply has
reached the SuperLink. :class:`PromptGrid` pushes the same messages and pulls the same
replies through the wrapped grid, every ``POLL_SECONDS``; the round's time-out is kept. A
pull is one small request to the SuperLink (the replies' ids).

Fault injection, server side (a testing aid): with run-config ``fault-plan`` set (e.g.
``"1:raise,2:nan"``, see ``fedaso.fault_plan``), :class:`FaultPlanGrid` adds a ``fault``
ConfigRecord (``fedaso.wire.FAULT``) to the training messages of the listed partitions only;
``clients.fault_injection`` acts on it. No client ever receives the plan itself, and a
healthy client's messages are unchanged. Never set ``fault-plan`` in a real run.

All delegate everything else to the grid they wrap (:class:`GridProxy`), so they stack.
"""

from __future__ import annotations

import math
import threading
import time
from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.common import log
from flwr.proto.node_pb2 import NodeInfo  # pylint: disable=no-name-in-module
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from fedaso.config import RunConfig
from fedaso.fault_plan import parse_fault_plan
from fedaso.wire import (
    FAULT,
    FAULT_DELAY,
    FAULT_KIND,
    NUM_STEPS,
    PARTITION_ID,
    PARTITION_QUERY,
    RESERVED_PREFIX,
    SERVER_ROUND,
    TRAIN,
)


class GridProxy(Grid):
    """A Grid that forwards every call to ``inner``; subclasses override what they watch."""

    def __init__(self, inner: Grid) -> None:
        self.inner = inner

    def set_run(self, run: Run) -> None:
        """Set the run on the wrapped grid."""
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        """The wrapped grid's run."""
        return self.inner.run

    def create_message(  # pylint: disable=too-many-arguments
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """Create a message on the wrapped grid."""
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        """Node ids of the wrapped grid."""
        return self.inner.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:
        """Nodes of the wrapped grid."""
        return self.inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Push through the wrapped grid."""
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Pull through the wrapped grid."""
        return self.inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Send and receive through the wrapped grid."""
        return self.inner.send_and_receive(messages, timeout=timeout)

    def known_partitions(self) -> Mapping[int, int]:
        """Node id -> its partition id (``PartitionOrderedGrid``); else empty."""
        return self.inner.known_partitions() if isinstance(self.inner, GridProxy) else {}

    def partition(self, node: int) -> int | None:
        """The partition id ``node`` is known to hold (``PartitionOrderedGrid``); else None."""
        return self.known_partitions().get(node)

    def node_of_partition(self, partition: int) -> int | None:
        """The node known to hold ``partition`` (``PartitionOrderedGrid``); else None."""
        if isinstance(self.inner, GridProxy):
            return self.inner.node_of_partition(partition)
        return None


# How long the first node listing waits for the registrar (then nodes are queried instead).
REGISTRATION_TIMEOUT = 600.0


class RegisteredPartitions:
    """Node id -> partition id, published once by whoever registered the nodes.

    Flower's simulation engine registers its nodes after it has started the ServerApp's
    thread, and knows which partition each one loads (``simulations.registration``
    publishes it here). A grid that waits for the publication lists a complete federation
    in partition order without a message to any node. The mapping is the registrar's own,
    not a copy: the server keeps no per-node state of its own for it.
    """

    def __init__(self) -> None:
        self._mapping: dict[int, int] = {}
        self._published = threading.Event()
        self._gave_up = False  # waited once in vain: later callers do not wait again

    def publish(self, mapping: dict[int, int]) -> None:
        """Make ``mapping`` (node id -> partition id) known; call once registration is done."""
        self._mapping = mapping
        self._published.set()

    def wait(self, timeout: float = REGISTRATION_TIMEOUT) -> dict[int, int]:
        """The published mapping; empty if none was published within ``timeout`` seconds."""
        if not self._gave_up and not self._published.wait(timeout):
            self._gave_up = True
            log(WARNING, "no node registration was published in %g s", timeout)
        return self._mapping


class PartitionOrderedGrid(GridProxy):
    """Lists node ids in the order of their ``partition-id``.

    A node's partition id comes from ``registered`` (nodes this process registered; the
    first listing waits for their publication), else from one partition query per
    node. A node that does not answer (or answers without a partition id) is listed after
    the known ones, in id order, and asked again the next time the node list is needed.
    """

    def __init__(
        self,
        inner: Grid,
        *,
        timeout: float | None = None,
        registered: RegisteredPartitions | None = None,
    ) -> None:
        super().__init__(inner)
        self.timeout = timeout
        self.registered = registered
        self.partition_of: dict[int, int] = {}  # node id -> partition id, from the query
        self._nodes_of: dict[int, int] | None = None  # partition -> node, built on demand

    def get_node_ids(self) -> Iterable[int]:
        """Connected node ids, sorted by partition id."""
        known = self.known_partitions()
        node_ids = sorted(self.inner.get_node_ids())
        unknown = [node for node in node_ids if node not in known]
        if unknown:
            self.partition_of |= self._ask_partitions(unknown)
            self._nodes_of = None

        def order(node: int) -> tuple[bool, int, int]:  # known partitions first, then by id
            partition = known.get(node)
            return partition is None, partition or 0, node

        return sorted(node_ids, key=order)

    def known_partitions(self) -> Mapping[int, int]:
        """Node id -> partition id: registered, or reported to the partition query (a view)."""
        if self.registered is None:
            return self.partition_of
        return ChainMap(self.partition_of, self.registered.wait())

    def node_of_partition(self, partition: int) -> int | None:
        """The node known to hold ``partition``, or None.

        The reverse index is built on first use only: FedASO asks for it when a node claims
        a partition other than its own known one, which no honest simulated node does.
        """
        if self._nodes_of is None:
            self._nodes_of = {p: node for node, p in self.known_partitions().items()}
        return self._nodes_of.get(partition)

    def _ask_partitions(self, node_ids: list[int]) -> dict[int, int]:
        messages = [
            Message(content=RecordDict(), message_type=PARTITION_QUERY, dst_node_id=node)
            for node in node_ids
        ]
        answers: dict[int, int] = {}
        for reply in self.inner.send_and_receive(messages, timeout=self.timeout):
            partition = None if reply.has_error() else partition_of_reply(reply)
            if partition is None:
                log(WARNING, "node %s did not report its partition-id", reply.metadata.src_node_id)
                continue
            answers[reply.metadata.src_node_id] = partition
        log(INFO, "PartitionOrderedGrid: %d of %d nodes reported", len(answers), len(node_ids))
        return answers


def partition_of_reply(reply: Message) -> int | None:
    """The ``partition-id`` of a partition query's reply, or None if it has none."""
    for record in reply.content.metric_records.values():
        value = record.get(PARTITION_ID)
        if isinstance(value, int | float) and math.isfinite(value):
            return int(value)
    return None


@dataclass
class RoundTraffic:
    """What the messages of one server round carried (bytes of array payload)."""

    model_bytes_down: int = 0  # model arrays sent to clients
    anchor_bytes_down: int = 0  # reserved arrays (anchors, the probe) sent to clients
    model_bytes_up: int = 0  # model arrays in the clients' replies
    anchor_bytes_up: int = 0  # reserved arrays (anchors) in the clients' replies
    messages: int = 0  # instructions sent
    replies: int = 0  # replies received (errors included)
    local_steps: int = 0  # sum of the replies' num-steps
    train_partitions: list[int] = field(default_factory=list)  # partitions sent train messages

    def as_metrics(self) -> dict[str, int | list[int]]:
        """Kebab-case metrics, with the totals each way added up."""
        metrics = {key.replace("_", "-"): value for key, value in asdict(self).items()}
        metrics["model-bytes"] = self.model_bytes_down + self.model_bytes_up
        metrics["anchor-bytes"] = self.anchor_bytes_down + self.anchor_bytes_up
        return metrics


def payload_bytes(content: RecordDict) -> tuple[int, int]:
    """``(model bytes, anchor bytes)`` of all arrays in ``content``'s ArrayRecords."""
    model, anchors = 0, 0
    for record in content.array_records.values():
        for name, array in record.items():
            size = math.prod(array.shape) * np.dtype(array.dtype).itemsize
            if name.startswith(RESERVED_PREFIX):
                anchors += size
            else:
                model += size
    return model, anchors


def round_of(message: Message) -> int:
    """The server round a strategy's message belongs to (``server-round`` of its config)."""
    for record in message.content.config_records.values():
        value = record.get(SERVER_ROUND)
        if isinstance(value, int):
            return value
    return 0


class MeteredGrid(GridProxy):
    """Tallies per server round the bytes of arrays sent and received, and local steps.

    With ``partition_of`` (node id -> partition id or None), it also lists the partitions
    that were sent a training instruction each round (sorted); without it the metrics carry
    no ``train-partitions`` (under central DP the sample must stay secret).
    """

    def __init__(
        self, inner: Grid, partition_of: Callable[[int], int | None] | None = None
    ) -> None:
        super().__init__(inner)
        self.partition_of = partition_of
        self.rounds: dict[int, RoundTraffic] = {}
        self._round_of_message: dict[str, int] = {}

    def _tally(self, server_round: int) -> RoundTraffic:
        return self.rounds.setdefault(server_round, RoundTraffic())

    def _count_sent(self, messages: list[Message]) -> int:
        server_round = round_of(messages[0]) if messages else 0
        tally = self._tally(server_round)
        for message in messages:
            model, anchors = payload_bytes(message.content)
            tally.model_bytes_down += model
            tally.anchor_bytes_down += anchors
            tally.messages += 1
            if self.partition_of is not None and message.metadata.message_type == TRAIN:
                partition = self.partition_of(message.metadata.dst_node_id)
                if partition is not None:
                    tally.train_partitions.append(partition)
        tally.train_partitions.sort()
        return server_round

    def _count_received(self, server_round: int, replies: list[Message]) -> None:
        tally = self._tally(server_round)
        for reply in replies:
            tally.replies += 1
            if reply.has_error():
                continue
            model, anchors = payload_bytes(reply.content)
            tally.model_bytes_up += model
            tally.anchor_bytes_up += anchors
            tally.local_steps += reported_steps(reply.content)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Send and receive through the wrapped grid, counting both ways."""
        messages = list(messages)
        server_round = self._count_sent(messages)
        replies = list(self.inner.send_and_receive(messages, timeout=timeout))
        self._count_received(server_round, replies)
        return replies

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Push through the wrapped grid, counting what is sent."""
        messages = list(messages)
        server_round = self._count_sent(messages)
        message_ids = list(self.inner.push_messages(messages))
        self._round_of_message |= dict.fromkeys(message_ids, server_round)
        return message_ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Pull through the wrapped grid, counting each reply under its instruction's round."""
        replies = list(self.inner.pull_messages(message_ids))
        for reply in replies:
            server_round = self._round_of_message.get(reply.metadata.reply_to_message_id, 0)
            self._count_received(server_round, [reply])
        return replies

    def state_dict(self) -> dict[str, Any]:
        """Every round's tally so far, for a checkpoint (a resumed run keeps the history)."""
        return {"rounds": {r: asdict(tally) for r, tally in self.rounds.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the tallies saved by :meth:`state_dict`."""
        self.rounds = {int(r): RoundTraffic(**tally) for r, tally in state["rounds"].items()}

    def traffic(self, server_round: int) -> dict[str, int | list[int]]:
        """The metrics of ``server_round``; empty if nothing was sent in it (round 0)."""
        tally = self.rounds.get(server_round)
        if tally is None:
            return {}
        metrics = tally.as_metrics()
        if self.partition_of is None:
            del metrics["train-partitions"]
        return metrics


def reported_steps(content: RecordDict) -> int:
    """``num-steps`` of a reply's MetricRecord (0 when it reports none)."""
    for record in content.metric_records.values():
        value = record.get(NUM_STEPS)
        if isinstance(value, int | float) and math.isfinite(value):
            return int(value)
    return 0


POLL_SECONDS = 0.1  # as often as Flower's in-memory grid (simulation) pulls


class PromptGrid(GridProxy):
    """``send_and_receive`` through the wrapped grid's push and pull, polling every 0.1 s."""

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push ``messages``; pull their replies until all came or ``timeout`` s passed."""
        waiting = set(self.inner.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while waiting:
            pulled = list(self.inner.pull_messages(waiting))
            replies.extend(pulled)
            waiting.difference_update(reply.metadata.reply_to_message_id for reply in pulled)
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(POLL_SECONDS)
        return replies


class FaultPlanGrid(GridProxy):
    """Adds each planned fault to the training messages of its partition's node.

    Parameters
    ----------
    inner : Grid
        The grid to send through.
    run : RunConfig
        Its ``fault-plan``; a ``delay`` fault answers ``round-timeout + fault-delay``
        seconds after the message was created.
    partition_of : callable
        Node id -> partition id, or None while unknown.
    """

    def __init__(
        self, inner: Grid, run: RunConfig, partition_of: Callable[[int], int | None]
    ) -> None:
        super().__init__(inner)
        self.plan = parse_fault_plan(run.reliability.fault_plan)
        self.delay = run.reliability.round_timeout + run.reliability.fault_delay
        self.partition_of = partition_of

    def with_fault(self, message: Message) -> Message:
        """``message``, or a copy that carries its node's planned fault."""
        partition = self.partition_of(message.metadata.dst_node_id)
        kind = None if partition is None else self.plan.get(partition)
        if kind is None or message.metadata.message_type != TRAIN:
            return message
        fault = ConfigRecord({FAULT_KIND: kind, FAULT_DELAY: self.delay})
        return Message(
            content=RecordDict({**message.content, FAULT: fault}),
            dst_node_id=message.metadata.dst_node_id,
            message_type=message.metadata.message_type,
            ttl=message.metadata.ttl,
            group_id=message.metadata.group_id,
        )

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Send and receive through the wrapped grid, faults added."""
        return self.inner.send_and_receive(map(self.with_fault, messages), timeout=timeout)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Push through the wrapped grid, faults added."""
        return self.inner.push_messages(map(self.with_fault, messages))
