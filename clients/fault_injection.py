"""Fault injection (a testing aid): a ClientApp mod that makes chosen partitions misbehave.

With run-config ``fault-plan`` set (e.g. ``"1:raise,2:nan"``, see ``fedaso.fault_plan``), the
server adds a ``fault`` record to the training messages of each listed partition
(``strategies.grids``; no client sees the plan), and this mod spoils that partition's
reply in the named way: it raises, replies late, or replies arrays and metrics a broken or
hostile client could send.
The spoiled reply travels through Flower like any other, so tests watch the real server
path drop it and carry on. With an empty plan (the default) the mod passes every message
through untouched. Never set ``fault-plan`` in a real run.
"""

from __future__ import annotations

import time

import numpy as np
from flwr.app import Array, Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from fedaso.fault_plan import FAULT_KINDS
from fedaso.wire import (
    ANCHORS_KEY,
    ARRAYS,
    CONFIG,
    FAULT,
    FAULT_DELAY,
    FAULT_KIND,
    HIGH_RELEVANCE_FRACTION,
    MEAN_RELEVANCE,
    METRICS,
    NUM_EXAMPLES,
    NUM_TOKENS,
    PARTITION_ID,
    SERVER_ROUND,
    TRAIN,
    split_payload,
)
from flower_wire.records import arrays_to_record, metric_record, record_to_arrays

NORM_FACTOR = 1e4  # the "norm" fault multiplies the model update by this
FRESH_PARTITION = 10**6  # the "fresh-partition" fault claims this + the round


def fault_injection_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Commit the fault the server sent with a training message, if any."""
    fault = msg.content.config_records.get(FAULT)
    if fault is None or msg.metadata.message_type != TRAIN:
        return call_next(msg, context)
    kind = str(fault[FAULT_KIND])
    if kind not in FAULT_KINDS:
        raise ValueError(f"fault {kind!r} is not one of {', '.join(FAULT_KINDS)}")
    if kind == "raise":
        raise RuntimeError(f"fault-plan: partition raises (fault {kind!r})")
    if kind == "delay":
        # Miss the round's time-out however long the healthy clients take: answer
        # round-timeout + fault-delay seconds after the server created the message.
        delay = fault[FAULT_DELAY]
        if not isinstance(delay, int | float):
            raise ValueError(f"fault delay={delay!r} must be a number of seconds")
        deadline = msg.metadata.created_at + float(delay)
        time.sleep(max(0.0, deadline - time.time()))
        return call_next(msg, context)
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    sent = record_to_arrays(msg.content.array_records[ARRAYS])
    server_round = msg.content.config_records[CONFIG].get(SERVER_ROUND, 0)
    if not isinstance(server_round, int):
        raise ValueError(f"{SERVER_ROUND}={server_round!r} must be an integer")
    content = spoil(kind, reply.content, sent, server_round=server_round)
    return Message(content=content, reply_to=msg)


def spoil(
    kind: str, content: RecordDict, sent: dict[str, np.ndarray], *, server_round: int = 0
) -> RecordDict:
    """Return the reply ``content`` spoiled as ``kind`` says (``sent``: the global arrays)."""
    arrays = record_to_arrays(content.array_records[ARRAYS])
    metrics = dict(content.metric_records[METRICS])
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
        metrics[MEAN_RELEVANCE] = -1.0
    elif kind == "relevance":
        metrics |= {MEAN_RELEVANCE: 1e6, NUM_EXAMPLES: 1e308, NUM_TOKENS: 1e308}
    elif kind == "list-metric":
        metrics[HIGH_RELEVANCE_FRACTION] = [0.5, 0.5]
    elif kind == "steal-partition":
        metrics[PARTITION_ID] = 0
    elif kind == "fresh-partition":
        metrics[PARTITION_ID] = FRESH_PARTITION + server_round
    record = arrays_to_record(arrays)
    if kind == "garbage":
        record[first] = Array(dtype="float32", shape=(7, 7), stype="numpy.ndarray", data=b"junk")
    if kind == "no-metrics":
        return RecordDict({ARRAYS: record})
    return RecordDict({ARRAYS: record, METRICS: metric_record(metrics)})
