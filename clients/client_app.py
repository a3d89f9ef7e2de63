"""The FedASO ClientApp (Flower Message API).

``train`` receives the global model and, under FedASO, the global anchor set in one
ArrayRecord (``fedaso.payload``); it keeps its partition's own anchor set in
``context.state`` across rounds, blends the received global set into it, runs ASO local
training, and replies model + its anchor set in one ArrayRecord and its metrics in one
MetricRecord. Without anchors in the message (FedAvg, FedProx, FedAdam) it trains plainly.
``evaluate`` reports loss and accuracy (and perplexity for language models) on the
partition's held-out split. ``query`` answers the federated k-means of anchor
initialization (spec section 5b) with this partition's centroids and cluster fractions.

Everything that leaves the client passes through ``clients.privacy`` first: the anchor
change is clipped (and noised under ``anchor-dp = local``), the relevance weight is noised
on request, DP-SGD's epsilon is reported, and under ``update-dp = client-fixed`` Flower's
``fixedclipping_mod`` clips the whole reply (model and anchors) last.

``query.partition`` reports the node's partition id, so that the server can sample clients
in partition order (``strategies.grids``).

All hyperparameters arrive in the message's ConfigRecord, sent by the server from the
validated run-config; the node's ``partition-id`` and ``num-partitions`` come from its
node config. Under FedASO the reply's metrics carry the ``partition-id``, which the server
keys its per-partition anchor store by (node ids change when a SuperLink restarts).
``clients.faults`` (a testing aid, off by default) wraps the app as a mod.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from clients.faults import fault_injection_mod
from clients.privacy import (
    anchor_report,
    centroid_report,
    dp_sgd_metrics,
    relevance_report,
    update_clipping_mod,
)
from clients.records import arrays_to_record, read_instruction
from fedaso.config import resolve_device
from fedaso.data import ClientData, load_partition, task_of
from fedaso.payload import join_payload, load_model_arrays, model_to_arrays, split_payload
from fedaso.run_config import RunConfig
from fedaso.trainer import LocalTrainResult, embed, evaluate, train_local

LOCAL_ANCHORS_KEY = "fedaso.local-anchors"  # context.state key of the partition's own anchors

# Faults are injected outermost (a testing aid; inert without `fault-plan`), so that a faulty
# reply still passes through the clipping mod like any other.
app = ClientApp(mods=[fault_injection_mod, update_clipping_mod])


def node_partition(node_config: dict) -> tuple[int, int]:
    """Return ``(partition-id, num-partitions)`` from a node config, validated."""
    try:
        partition_id = int(node_config["partition-id"])
        num_partitions = int(node_config["num-partitions"])
    except KeyError as missing:
        raise ValueError(
            f"node config lacks {missing}: start the SuperNode with "
            "--node-config 'partition-id=K num-partitions=N'"
        ) from None
    if not 0 <= partition_id < num_partitions:
        raise ValueError(
            f"partition-id={partition_id} is not in [0, num-partitions={num_partitions})"
        )
    return partition_id, num_partitions


def client_seed(run: RunConfig, server_round: int, partition_id: int) -> int:
    """A batch-order seed that differs per client and per round, reproducibly."""
    return run.seed * 1_000_003 + server_round * 10_007 + partition_id


@dataclass
class ClientJob:
    """What one message asks of this client, parsed and loaded."""

    run: RunConfig
    config: ConfigRecord  # the raw ConfigRecord, for keys Flower's strategies add
    partition_id: int
    data: ClientData
    model: nn.Module  # the global model, loaded
    global_anchors: np.ndarray | None  # (M, d), present under FedASO only


def load_job(msg: Message, context: Context) -> ClientJob:
    """Parse the message and load this partition's data and the global model."""
    config, arrays = read_instruction(msg.content)
    run = RunConfig.from_flat(dict(config), strict=False)
    partition_id, num_partitions = node_partition(context.node_config)
    model = run.build_model()
    model_arrays, anchors = split_payload(arrays)
    load_model_arrays(model, model_arrays)
    model.to(resolve_device(run.device))
    return ClientJob(
        run=run,
        config=config,
        partition_id=partition_id,
        data=load_partition(run.data(num_partitions=num_partitions), partition_id),
        model=model,
        global_anchors=anchors,
    )


def blend_anchors(context: Context, global_anchors: np.ndarray, blend: float) -> np.ndarray:
    """Return this partition's anchors with the received global set blended in.

    ``blend`` is the global set's share; a partition with no anchors yet adopts it whole.
    Rows stay index-aligned because every set descends from the same global set.
    """
    stored = context.state.array_records.get(LOCAL_ANCHORS_KEY)
    own = None if stored is None else stored["anchors"].numpy()
    if own is None or own.shape != global_anchors.shape:
        return global_anchors.copy()
    return (1.0 - blend) * own + blend * global_anchors


def train_metrics(
    result: LocalTrainResult, aso_enabled: bool, privacy_metrics: dict[str, float]
) -> MetricRecord:
    """The reply's metrics; ASO metrics only when ASO ran, so all replies share keys.

    ``privacy_metrics`` carries the client's epsilons and, under ``relevance-noise``, the
    noised ``mean-relevance`` that replaces the raw one.
    """
    metrics = {
        "num-examples": result.num_examples,
        "num-tokens": result.num_tokens,
        "num-steps": result.num_steps,
        "train-loss": result.train_loss,
    }
    if aso_enabled:
        metrics["mean-relevance"] = result.mean_relevance
        metrics["high-relevance-fraction"] = result.high_relevance_fraction
    return MetricRecord(metrics | privacy_metrics)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Run ASO (or plain) local training on this partition and reply the update."""
    job = load_job(msg, context)
    aso = job.run.aso(enabled=job.global_anchors is not None)
    anchors = None
    if aso.enabled:
        blended = blend_anchors(context, job.global_anchors, job.run.anchor_blend)
        anchors = torch.from_numpy(blended.astype(np.float32))
    server_round = int(job.config.get("server-round", 0))
    # Flower's FedProx sends its proximal weight in the config. The run-config's own
    # `proximal-mu` key travels in every config too, so it only counts under FedProx.
    proximal_mu = (
        float(job.config.get("proximal-mu", 0.0)) if job.run.strategy == "fedprox" else 0.0
    )
    privacy = job.run.privacy()
    result = train_local(
        job.model,
        job.data.train,
        anchors=anchors,
        aso=aso,
        train=job.run.train(
            seed=client_seed(job.run, server_round, job.partition_id), proximal_mu=proximal_mu
        ),
        dp_sgd=privacy.dp_sgd_config(),
    )
    privacy_metrics = dp_sgd_metrics(result.dp_history, privacy, context)
    reply_anchors = None
    if result.anchors is not None:
        # The partition keeps its own, raw set; only the clipped (noised) change leaves.
        trained = result.anchors.numpy()
        context.state[LOCAL_ANCHORS_KEY] = arrays_to_record({"anchors": trained})
        reply_anchors, anchor_metrics = anchor_report(job.global_anchors, trained, privacy, context)
        relevance, relevance_metrics = relevance_report(result.mean_relevance, privacy, context)
        privacy_metrics |= anchor_metrics | relevance_metrics | {"mean-relevance": relevance}
        privacy_metrics["partition-id"] = job.partition_id
    content = RecordDict(
        {
            "arrays": arrays_to_record(join_payload(model_to_arrays(job.model), reply_anchors)),
            "metrics": train_metrics(result, aso.enabled, privacy_metrics),
        }
    )
    return Message(content=content, reply_to=msg)


@app.query()
def query_centroids(msg: Message, context: Context) -> Message:
    """Federated k-means: reply this partition's centroids and cluster fractions."""
    job = load_job(msg, context)
    server_round = int(job.config.get("server-round", 0))
    arrays, metrics = centroid_report(
        embed(job.model, job.data.train),
        num_anchors=job.run.num_anchors,
        seed=client_seed(job.run, server_round, job.partition_id),
        privacy=job.run.privacy(),
        context=context,
    )
    content = RecordDict({"centroids": arrays_to_record(arrays), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_global(msg: Message, context: Context) -> Message:
    """Evaluate the received global model on this partition's held-out split."""
    job = load_job(msg, context)
    if len(job.data.test) == 0:
        raise ValueError("this partition has no held-out split (raise test-fraction)")
    result = evaluate(job.model, job.data.test)
    metrics = {
        "num-examples": result.num_examples,
        "loss": result.loss,
        "accuracy": result.accuracy,
    }
    if task_of(job.run.dataset) == "lm":
        metrics["perplexity"] = math.exp(min(result.loss, 50.0))
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


@app.query("partition")
def report_partition(msg: Message, context: Context) -> Message:
    """Tell the server this node's partition, so that it can sample in partition order."""
    partition_id, num_partitions = node_partition(context.node_config)
    metrics = MetricRecord({"partition-id": partition_id, "num-partitions": num_partitions})
    return Message(content=RecordDict({"partition": metrics}), reply_to=msg)
