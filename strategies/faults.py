"""Fault injection, server side (a testing aid): tell only the faulty nodes their fault.

With run-config ``fault-plan`` set (e.g. ``"1:raise,2:nan"``, see ``fedaso.faults``), this
grid wrapper adds a ``fault`` ConfigRecord (``fedaso.wire.FAULT``) to the training messages
of the listed partitions only; ``clients.faults`` acts on it. No client ever receives the
plan itself, and a healthy client's messages are unchanged. Never set ``fault-plan`` in a
real run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedaso.faults import parse_fault_plan
from fedaso.run_config import RunConfig
from fedaso.wire import FAULT, FAULT_DELAY, FAULT_KIND, TRAIN
from strategies.grids import GridProxy


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
        self.plan = parse_fault_plan(run.fault_plan)
        self.delay = run.round_timeout + run.fault_delay
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
