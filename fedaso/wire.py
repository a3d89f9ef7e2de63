"""What server and clients say to each other: the wire protocol (docs/SPEC.md section 10).

One place names every message type, record, config key, reserved array key and metric key
that crosses between ``strategies`` and ``clients``, and splits and joins the one array
payload that carries a model and its anchor set. Plain strings and NumPy only: Flower's
record types are converted at the boundary by ``flower_wire.records``.

The payload: Flower's reply check accepts exactly one ArrayRecord per reply, and its DP
wrappers clip and noise every array of it against the global arrays. So the anchor set
travels *inside* the model's array payload under a reserved key: wrappers then clip and
noise model and anchors together, and FedASO splits them again to aggregate the model by
relevance and merge the anchors per partition. The global model a user saves or evaluates
never has the reserved key.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# -- message types (equal to Flower's MessageType values) --------------------------------
TRAIN = "train"
EVALUATE = "evaluate"
QUERY = "query"  # federated k-means of anchor initialization (docs/SPEC.md section 5b)
PARTITION_QUERY = "query.partition"  # which partition a node holds (strategies.grids)

# -- record names --------------------------------------------------------------------------
ARRAYS = "arrays"  # server -> client and train reply: the payload
CONFIG = "config"  # server -> client: the client configuration
METRICS = "metrics"  # client -> server: train and evaluate metrics
CENTROIDS = "centroids"  # client -> server: a k-means answer (arrays below)
PARTITION = "partition"  # client -> server: the answer to a partition query
FAULT = "fault"  # server -> one client, testing aid only: the fault it must commit
FAULT_KIND = "kind"  # in the FAULT record: one of fedaso.fault_plan.FAULT_KINDS
FAULT_DELAY = "delay"  # in the FAULT record: seconds after creation a "delay" fault answers

# -- config keys that are not run-config keys -----------------------------------------------
SERVER_ROUND = "server-round"  # set by Flower's strategies; 0 for the k-means query
RUN_KEY = "run-key"  # names a run across resumes: clients key their on-disk state by it

# -- array keys -----------------------------------------------------------------------------
RESERVED_PREFIX = "aso."  # no model parameter may start with this
ANCHORS_KEY = "aso.anchors"
# relevance-source = probe: the server's logistic probe, server -> client only
PROBE_WEIGHT_KEY = "aso.probe-weight"  # (d,) float32: w
PROBE_BIAS_KEY = "aso.probe-bias"  # (1,) float32: b
PROBE_KEYS = (PROBE_WEIGHT_KEY, PROBE_BIAS_KEY)
CENTROID_ARRAYS = "centroids"  # (k, d) in the CENTROIDS record
FRACTION_ARRAYS = "fractions"  # (k,) in the CENTROIDS record

# -- metric keys ----------------------------------------------------------------------------
NUM_EXAMPLES = "num-examples"
NUM_TOKENS = "num-tokens"
NUM_STEPS = "num-steps"
TRAIN_LOSS = "train-loss"
MEAN_RELEVANCE = "mean-relevance"
HIGH_RELEVANCE_FRACTION = "high-relevance-fraction"
PARTITION_ID = "partition-id"  # also a node config key
NUM_PARTITIONS = "num-partitions"  # also a node config key
ANCHOR_EPSILON = "anchor-epsilon"
RELEVANCE_EPSILON = "relevance-epsilon"
DP_SGD_EPSILON = "dp-sgd-epsilon"
REQUIRED_TRAIN_METRICS = (NUM_EXAMPLES, NUM_TOKENS, MEAN_RELEVANCE, TRAIN_LOSS)
COUNT_METRICS = (NUM_EXAMPLES, NUM_TOKENS)  # must be integers >= 1
CLIENT_EPSILONS = (ANCHOR_EPSILON, RELEVANCE_EPSILON, DP_SGD_EPSILON)
# Read by the server when present, so each must then be one number (epsilons may be inf).
OPTIONAL_TRAIN_METRICS = (HIGH_RELEVANCE_FRACTION, NUM_STEPS, PARTITION_ID, *CLIENT_EPSILONS)


def join_payload(
    model_arrays: Mapping[str, np.ndarray], anchors: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Return the model's arrays followed by the anchors under ``ANCHORS_KEY`` (if any)."""
    clash = [name for name in model_arrays if name.startswith(RESERVED_PREFIX)]
    if clash:
        raise ValueError(f"model array names {clash} use the reserved prefix {RESERVED_PREFIX!r}")
    payload = dict(model_arrays)
    if anchors is not None:
        payload[ANCHORS_KEY] = np.asarray(anchors, dtype=np.float32)
    return payload


def split_payload(
    payload: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Return ``(model_arrays, anchors)``; anchors is None when the payload has none."""
    model_arrays = {k: v for k, v in payload.items() if not k.startswith(RESERVED_PREFIX)}
    return model_arrays, payload.get(ANCHORS_KEY)


def with_probe(
    payload: Mapping[str, np.ndarray], weight: np.ndarray, bias: float
) -> dict[str, np.ndarray]:
    """Return ``payload`` with a relevance probe's ``w`` ``(d,)`` and ``b`` under its keys."""
    joined = without_probe(payload)
    joined[PROBE_WEIGHT_KEY] = np.asarray(weight, dtype=np.float32)
    joined[PROBE_BIAS_KEY] = np.array([bias], dtype=np.float32)
    return joined


def without_probe(payload: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return ``payload`` less the probe's keys: what a client's reply must match."""
    return {k: v for k, v in payload.items() if k not in PROBE_KEYS}


def probe_of(payload: Mapping[str, np.ndarray]) -> tuple[np.ndarray, float] | None:
    """Return the probe's ``(w, b)`` if the payload carries one, else None."""
    if PROBE_WEIGHT_KEY not in payload or PROBE_BIAS_KEY not in payload:
        return None
    bias = np.asarray(payload[PROBE_BIAS_KEY]).reshape(-1)
    if bias.shape != (1,):
        raise ValueError(f"{PROBE_BIAS_KEY!r} must hold one number, got shape {bias.shape}")
    return np.asarray(payload[PROBE_WEIGHT_KEY]), float(bias[0])
