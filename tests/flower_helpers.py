"""Build real Flower reply messages for strategy tests (no mocks: Flower's own classes)."""

import time

import numpy as np
from flwr.app import Error, Message, MetricRecord, RecordDict
from flwr.app.metadata import Metadata

from fedaso.wire import ANCHORS_KEY
from flower_wire.records import arrays_to_record


def reply_metadata(node_id: int) -> Metadata:
    return Metadata(
        run_id=1,
        message_id="",
        src_node_id=node_id,
        dst_node_id=0,
        reply_to_message_id="instruction",
        group_id="1",
        created_at=time.time(),
        ttl=60.0,
        message_type="train",
    )


def train_reply(node_id, arrays, metrics):
    content = RecordDict({"arrays": arrays_to_record(arrays), "metrics": MetricRecord(metrics)})
    return Message(content=content, metadata=reply_metadata(node_id))


def error_reply(node_id, reason="client crashed"):
    return Message(error=Error(code=1, reason=reason), metadata=reply_metadata(node_id))


def payload(weight_value, anchor_value, shape=(2, 3), anchors_shape=(4, 3)):
    """A tiny global payload: one model array and an anchor set, filled with constants."""
    return {
        "w": np.full(shape, weight_value, dtype=np.float32),
        ANCHORS_KEY: np.full(anchors_shape, anchor_value, dtype=np.float32),
    }


def metrics(relevance, examples=10, tokens=100, loss=1.0):
    return {
        "num-examples": examples,
        "num-tokens": tokens,
        "num-steps": 1,
        "train-loss": loss,
        "mean-relevance": relevance,
        "high-relevance-fraction": 0.5,
    }
