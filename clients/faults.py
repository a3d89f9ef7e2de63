"""Fault injection (a testing aid): a ClientApp mod that makes chosen partitions misbehave.

With run-config ``fault-plan`` set (e.g. ``"1:raise,2:nan"``, see ``fedaso.faults``), the
ClientApp of each listed partition spoils its *training* replies in the named way: it
raises, replies late, or replies arrays and metrics a broken or hostile client could send.
The spoiled reply travels through Flower like any other, so tests watch the real server
path drop it and carry on. With an empty plan (the default) the mod passes every message
through untouched. Never set ``fault-plan`` in a real run.
"""

from __future__ import annotations

import time

import numpy as np
from flwr.app import Array, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from clients.records import arrays_to_record, record_to_arrays
from fedaso.faults import parse_fault_plan
from fedaso.payload import ANCHORS_KEY, split_payload
from fedaso.run_config import RunConfig

NORM_FACTOR = 1e4  # the "norm" fault multiplies the model update by this


def fault_injection_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Apply this partition's fault from ``fault-plan`` to a training message, if any."""
    kind = planned_fault(msg, context)
    if kind is None:
        return call_next(msg, context)
    if kind == "raise":
        raise RuntimeError(f"fault-plan: partition raises (fault {kind!r})")
    if kind == "delay":
        run = fault_run(msg)
        # Miss the round's time-out however long the healthy clients take: answer
        # fault-delay seconds after it, counted from when the server created the message.
        deadline = msg.metadata.created_at + run.round_timeout + run.fault_delay
        time.sleep(max(0.0, deadline - time.time()))
        return call_next(msg, context)
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    content = spoil(kind, reply.content, record_to_arrays(msg.content["arrays"]))
    return Message(content=content, reply_to=msg)


def fault_run(msg: Message) -> RunConfig:
    """The run-config the server sent with ``msg``."""
    return RunConfig.from_flat(dict(msg.content["config"]), strict=False)


def planned_fault(msg: Message, context: Context) -> str | None:
    """The fault planned for this node's partition on this message, or None."""
    if msg.metadata.message_type != "train" or "config" not in msg.content.config_records:
        return None
    plan = parse_fault_plan(str(msg.content["config"].get("fault-plan", "")))
    if not plan:
        return None
    partition = context.node_config.get("partition-id")
    return None if partition is None else plan.get(int(partition))


def spoil(kind: str, content: RecordDict, sent: dict[str, np.ndarray]) -> RecordDict:
    """Return the reply ``content`` spoiled as ``kind`` says (``sent``: the global arrays)."""
    arrays = record_to_arrays(content["arrays"])
    metrics = dict(content["metrics"])
    model, _ = split_payload(arrays)
    first = next(iter(model))
    if kind in ("nan", "inf"):
        arrays[first] = arrays[first].copy()
        arrays[first].flat[0] = np.nan if kind == "nan" else np.inf
    elif kind == "shape":
        arrays[first] = np.append(arrays[first].ravel(), arrays[first].flat[0])
    elif kind in ("float16", "int"):
        dtype = np.float16 if kind == "float16" else np.int64
        arrays |= {name: array.astype(dtype) for name, array in model.items()}
    elif kind == "norm":
        arrays |= {name: sent[name] + NORM_FACTOR * (a - sent[name]) for name, a in model.items()}
    elif kind == "anchors-shape":
        arrays[ANCHORS_KEY] = arrays[ANCHORS_KEY][:-1]
    elif kind == "weight":
        metrics["mean-relevance"] = -1.0
    record = arrays_to_record(arrays)
    if kind == "garbage":
        record[first] = Array(dtype="float32", shape=(7, 7), stype="numpy.ndarray", data=b"junk")
    if kind == "no-metrics":
        return RecordDict({"arrays": record})
    return RecordDict({"arrays": record, "metrics": MetricRecord(metrics)})
