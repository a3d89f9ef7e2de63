"""The FedASO ClientApp (Flower Message API).

``train`` receives the global model and, under FedASO, the global anchor set in one
ArrayRecord (``fedaso.wire``); it keeps its partition's own anchor set across rounds
(``clients.state``, on the node's disk, so that it survives a resume), blends the received
global set into it, runs ASO local training, and replies model + its anchor set in one
ArrayRecord and its metrics in one MetricRecord; under ``relevance-source = anchors-refit``
it trains against the received set as is and replies the model alone (the server owns the
anchors: ``strategies.refit``); under ``relevance-source = probe`` it scores relevance
with the probe ``(w, b)`` the message carries, and when nothing reads the anchors (the
probe without Eq. 5: ``ASOConfig.uses_anchors``) the message carries the probe alone and
the reply the model alone. With neither anchors nor a probe in the message (FedAvg,
FedProx, FedAdam) it trains plainly. ``evaluate`` reports loss and accuracy (and perplexity
for language models) on the partition's held-out split. ``query`` answers the federated
k-means of anchor initialization (docs/SPEC.md section 5b) with this partition's centroids and
cluster fractions.

Everything that leaves the client passes through ``clients.release`` first: under
``anchor-dp = local`` the anchor change is clipped and noised, the reply's metrics are built
from released values only (the relevance weight noised on request), DP-SGD's epsilon is
reported, and under ``update-dp = client-fixed`` Flower's ``fixedclipping_mod`` clips the
whole reply (model and anchors) last.

``query.partition`` reports the node's partition id, so that the server can sample clients
in partition order (``strategies.grids``).

The message's ConfigRecord is a ``fedaso.config.client.ClientConfig``: the run-config's client
keys (never the server-only ones), the server round and the run key; a missing key is an
error naming it. The node's ``partition-id`` and ``num-partitions`` come from its node
config. Replies carry the ``partition-id``, which the server keys its per-partition anchor
store and privacy accounting by (node ids change when a SuperLink restarts).
``clients.fault_injection`` (a testing aid, inert unless the server sends a fault) wraps the app.

A long-lived client process (a simulation's actor) serves many messages, of many runs:
what does not change between them is cached per process, keyed by everything it depends
on (an ``hf:`` model's pretrained weights and tokenizer by their files' identity,
``fedaso.models.cache``; tokenized corpora and partitions by their data config,
``fedaso.data``). Everything that trains is built fresh by ``load_job`` for each message
from the message's arrays, and every optimizer, Opacus or ASO state by ``train_local``,
so that nothing carries over from one round or run into the next
(tests/unit/clients/test_client_cache.py). On flwr 1.42 a deployed SuperNode starts a
fresh process per message, so there the caches live for one message only
(``benchmarks.client_round`` measures both).

The node's site policy (``clients.policy``; docs/SITE_POLICY.md) is checked on the parsed
config before any model is built or data loaded, and its epsilon budget
(``clients.ledger``) before a reply leaves; ``site_policy_mod``, outermost, keeps every
error's details on the site.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable, Mod
from torch import nn

from clients.fault_injection import fault_injection_mod
from clients.ledger import Release, SiteLedger, new_releases
from clients.policy import MessageConfigError, SitePolicy, site_policy, site_policy_mod
from clients.release import anchor_report, centroid_report, train_metrics, update_clipping_mod
from clients.state import PartitionState, load_state, partition_directory, state_root
from fedaso.aso.relevance import RelevanceProbe
from fedaso.config import RunConfig
from fedaso.config.client import ClientConfig
from fedaso.config.training import resolve_device
from fedaso.data import ClientData, load_partition, task_of
from fedaso.models.arrays import load_model_arrays, model_to_arrays
from fedaso.training.evaluate import embed, evaluate
from fedaso.training.trainer import train_local
from fedaso.wire import (
    ARRAYS,
    CENTROIDS,
    METRICS,
    NUM_EXAMPLES,
    NUM_PARTITIONS,
    PARTITION,
    PARTITION_ID,
    join_payload,
    probe_of,
    split_payload,
)
from flower_wire.records import arrays_to_record, metric_record, read_instruction

# The site policy's mod is outermost, so that no error of the others reaches the server
# with its details. Faults come next (a testing aid; inert without a fault record), so that
# a faulty reply still passes through the clipping mod like any other.
MODS = (site_policy_mod, fault_injection_mod, update_clipping_mod)


def node_partition(node_config: Mapping[str, Any]) -> tuple[int, int]:
    """Return ``(partition-id, num-partitions)`` from a node config, validated."""
    try:
        partition_id = int(node_config[PARTITION_ID])
        num_partitions = int(node_config[NUM_PARTITIONS])
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
    return run.federation.seed * 1_000_003 + server_round * 10_007 + partition_id


@dataclass
class ClientJob:
    """What one message asks of this client, parsed and loaded."""

    config: ClientConfig
    partition_id: int
    data: ClientData
    model: nn.Module  # the global model, loaded
    global_anchors: np.ndarray | None  # (M, d), under FedASO where anchors are used
    node_config: Mapping[str, Any]
    relevance_probe: RelevanceProbe | None = None  # the server's, under relevance-source=probe
    ledger: SiteLedger | None = None  # the site's epsilon budget, when its policy sets one

    @property
    def run(self) -> RunConfig:
        """The run-config's client view."""
        return self.config.run

    @property
    def seed(self) -> int:
        """This client's batch-order seed for this round."""
        return client_seed(self.run, self.config.server_round, self.partition_id)

    def state(self) -> PartitionState:
        """This partition's state as of the start of this round (``clients.state``)."""
        root = state_root(self.node_config)
        directory = partition_directory(root, self.config.run_key, self.partition_id)
        return load_state(directory, self.config.server_round)

    def charge_budget(self, before: Mapping[str, list[Release]], state: PartitionState) -> None:
        """Charge this reply's releases to the site's ledger; refuse if over its budget."""
        if self.ledger is not None:
            self.ledger.charge(new_releases(before, account_histories(state)))


def account_histories(state: PartitionState) -> dict[str, list[Release]]:
    """A copy of the partition's accountant histories, to see what a round adds."""
    return {name: list(account.accountant.history) for name, account in state.accounts.items()}


def load_job(msg: Message, context: Context) -> ClientJob:
    """Parse the message and load this partition's data and the global model."""
    try:
        record, arrays = read_instruction(msg.content)
        config = ClientConfig.from_message(dict(record))
    except ValueError as error:  # about the message alone: safe to tell its sender
        raise MessageConfigError(str(error)) from None
    partition_id, num_partitions = node_partition(context.node_config)
    policy = site_policy(context.node_config)
    ledger = None
    if policy is not None:
        policy.check(config.run)  # before anything is built or loaded
        ledger = budget_ledger(policy, context.node_config, partition_id, config.run.data.dataset)
    model = config.run.build_model()
    model_arrays, anchors = split_payload(arrays)
    probe = probe_of(arrays)
    load_model_arrays(model, model_arrays)
    model.to(resolve_device(config.run.training.device))
    data = load_partition(config.run.data_config(num_partitions=num_partitions), partition_id)
    if policy is not None:
        policy.check_steps(config.run, len(data.train))
    return ClientJob(
        config=config,
        partition_id=partition_id,
        data=data,
        model=model,
        global_anchors=anchors,
        node_config=context.node_config,
        ledger=ledger,
        relevance_probe=RelevanceProbe(*probe) if probe is not None else None,
    )


def budget_ledger(
    policy: SitePolicy, node_config: Mapping[str, Any], partition_id: int, dataset: str
) -> SiteLedger | None:
    """The site's ledger when its policy sets a budget, refusing a job once it is spent."""
    if policy.budget.epsilon_budget == math.inf:
        return None
    ledger = SiteLedger.of(policy, node_config, partition_id, dataset)
    ledger.check_open()
    return ledger


def blend_anchors(own: np.ndarray | None, global_anchors: np.ndarray, blend: float) -> np.ndarray:
    """Return the partition's own anchors with the received global set blended in.

    ``blend`` is the global set's share; a partition with no anchors yet adopts it whole.
    Rows stay index-aligned because every set descends from the same global set.
    """
    if own is None or own.shape != global_anchors.shape:
        return global_anchors.copy()
    return (1.0 - blend) * own + blend * global_anchors


def train(msg: Message, context: Context) -> Message:
    """Run ASO (or plain) local training on this partition and reply the update."""
    job = load_job(msg, context)
    state = job.state()
    spent_before = account_histories(state)
    if job.global_anchors is not None and not job.run.aso.uses_anchors:
        raise MessageConfigError(
            "the message carries anchors, but relevance-source='probe' with "
            "project-gradients=false uses none"
        )
    # FedASO's message carries anchors or the server's probe; the baselines' neither.
    fedaso = job.global_anchors is not None or job.relevance_probe is not None
    aso = job.run.aso if fedaso else None
    anchors = None
    if job.global_anchors is not None:
        own = state.anchors if job.run.aso.clients_move_anchors else None  # refit: server's only
        blended = blend_anchors(own, job.global_anchors, job.run.aso.anchor_blend)
        anchors = torch.from_numpy(blended.astype(np.float32))
    privacy = job.run.privacy
    result = train_local(
        job.model,
        job.data.train,
        anchors=anchors,
        aso=aso,
        train=job.run.training,
        seed=job.seed,
        # The run-config's `proximal-mu` travels in every config; it counts under FedProx only.
        proximal_mu=job.run.federation.applied_proximal_mu,
        dp_sgd=privacy.dp_sgd_config(),
        relevance_probe=job.relevance_probe,
    )
    metrics = train_metrics(result, privacy, state)
    reply_anchors = None
    if fedaso:
        metrics[PARTITION_ID] = job.partition_id
    if (
        job.global_anchors is not None
        and aso is not None
        and result.anchors is not None
        and aso.clients_move_anchors
    ):
        # The partition keeps its own, raw set; only its change (noised under anchor DP) leaves.
        state.anchors = result.anchors.numpy()
        reply_anchors, anchor_metrics = anchor_report(
            job.global_anchors, state.anchors, privacy, state
        )
        metrics |= anchor_metrics
    job.charge_budget(spent_before, state)
    state.save(job.config.server_round)
    content = RecordDict(
        {
            ARRAYS: arrays_to_record(join_payload(model_to_arrays(job.model), reply_anchors)),
            METRICS: metric_record(metrics),
        }
    )
    return Message(content=content, reply_to=msg)


def query_centroids(msg: Message, context: Context) -> Message:
    """Federated k-means: reply this partition's centroids and cluster fractions."""
    job = load_job(msg, context)
    state = job.state()
    spent_before = account_histories(state)
    arrays, metrics = centroid_report(
        embed(job.model, job.data.train),
        num_anchors=job.run.aso.num_anchors,
        seed=job.seed,
        privacy=job.run.privacy,
        state=state,
    )
    job.charge_budget(spent_before, state)
    state.save(job.config.server_round)
    metrics[PARTITION_ID] = job.partition_id
    content = RecordDict({CENTROIDS: arrays_to_record(arrays), METRICS: metric_record(metrics)})
    return Message(content=content, reply_to=msg)


def evaluate_global(msg: Message, context: Context) -> Message:
    """Evaluate the received global model on this partition's held-out split."""
    job = load_job(msg, context)
    if len(job.data.test) == 0:
        raise ValueError("this partition has no held-out split (raise test-fraction)")
    result = evaluate(job.model, job.data.test)
    metrics = {
        NUM_EXAMPLES: result.num_examples,
        "loss": result.loss,
        "accuracy": result.accuracy,
    }
    if task_of(job.run.data.dataset) == "lm":
        metrics["perplexity"] = math.exp(min(result.loss, 50.0))
    return Message(content=RecordDict({METRICS: metric_record(metrics)}), reply_to=msg)


def report_partition(msg: Message, context: Context) -> Message:
    """Tell the server this node's partition, so that it can sample in partition order."""
    partition_id, num_partitions = node_partition(context.node_config)
    metrics = MetricRecord({PARTITION_ID: partition_id, NUM_PARTITIONS: num_partitions})
    return Message(content=RecordDict({PARTITION: metrics}), reply_to=msg)


def node_config_mod(entries: Mapping[str, Any]) -> Mod:
    """A mod that adds ``entries`` to the node config of every node it runs on."""

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        context.node_config.update(entries)
        return call_next(msg, context)

    return mod


def build_client_app(node_config: Mapping[str, Any] | None = None) -> ClientApp:
    """The ClientApp; ``node_config`` entries join every node's own config.

    Flower's simulation engine gives its nodes only ``partition-id`` and ``num-partitions``;
    ``simulations.engine`` adds the site policy of its simulated sites this way.
    """
    extra = [node_config_mod(dict(node_config))] if node_config else []
    built = ClientApp(mods=[*extra, *MODS])
    built.train()(train)
    built.evaluate()(evaluate_global)
    built.query()(query_centroids)
    built.query("partition")(report_partition)
    return built


app = build_client_app()
