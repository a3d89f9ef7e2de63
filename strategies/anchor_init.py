"""Federated anchor initialization (docs/SPEC.md section 5b): k-means over the clients' centroids.

Before the first round, ``federated_initial_anchors`` sends a ``query`` message with the
initial model to a sample of the connected nodes, checks each answer like a training reply
(shapes, the model's embedding width, finite values, fractions that count tokens, which are
then normalized so that every answer weighs the same in k-means), privatizes the answers in
central mode (local mode: they arrive privatized), accounts the release in the strategy,
and runs weighted k-means over what arrived.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from logging import INFO, WARNING

import numpy as np
import torch
from flwr.app import (
    ConfigRecord,
    Message,
    MessageType,
    RecordDict,
)
from flwr.common import log
from flwr.serverapp import Grid

from fedaso.aso.anchors import federated_kmeans, kmeans_anchors
from fedaso.config import RunConfig
from fedaso.data import CentralData
from fedaso.privacy import fresh_rng, release_centroids
from fedaso.training.evaluate import embed
from fedaso.wire import (
    ARRAYS,
    CENTROID_ARRAYS,
    CENTROIDS,
    CONFIG,
    FRACTION_ARRAYS,
    SERVER_ROUND,
)
from flower_wire.records import arrays_to_record, record_to_arrays
from strategies.fedaso import FedASO
from strategies.replies import released_partition
from strategies.update_dp import expected_sample_size


def federated_initial_anchors(
    grid: Grid,
    run: RunConfig,
    model_arrays: dict[str, np.ndarray],
    strategy: FedASO,
    client_config: ConfigRecord,
    width: int,
) -> np.ndarray:
    """Federated k-means (docs/SPEC.md section 5b): sampled clients send centroids, server merges.

    Sends a ``query`` message with the initial model to a sample of connected nodes (the
    training sample size), checks every answer like a training reply (an error, a missing
    record, wrong shapes, non-finite values or fractions that are not a distribution are
    logged and skipped), privatizes the answers on receipt in central mode (in local mode
    they arrive privatized), accounts the release in ``strategy``, and runs weighted k-means
    over all centroids, each weighing its cluster fraction. ``client_config`` is what every
    client message carries (``fedaso.config.client.ClientConfig`` less the server round);
    ``width`` is the model's embedding width, which every centroid must have.

    Raises
    ------
    ValueError
        If no answer is usable: there is nothing to initialize the anchors from.
    """
    nodes = wait_for_nodes(
        grid, run.federation.min_train_nodes, timeout=run.reliability.round_timeout
    )
    sampled = random.sample(nodes, min(len(nodes), expected_sample_size(run, len(nodes))))
    content = RecordDict(
        {
            ARRAYS: arrays_to_record(model_arrays),
            CONFIG: ConfigRecord(dict(client_config) | {SERVER_ROUND: 0}),
        }
    )
    messages = [
        Message(content=content, message_type=MessageType.QUERY, dst_node_id=node)
        for node in sampled
    ]
    replies = list(grid.send_and_receive(messages, timeout=run.reliability.round_timeout))
    answers = usable_centroids(
        replies, run.aso.num_anchors, noised=run.privacy.anchor_dp == "local", width=width
    )
    if run.privacy.anchor_dp == "local":  # every answer that arrived was released, usable or not
        strategy.record_local_releases(
            key for key in map(released_partition, replies) if key is not None
        )
    elif run.privacy.anchor_dp == "central":
        strategy.anchor_account.record(
            noise_multiplier=run.privacy.anchor_noise_multiplier,
            sample_rate=len(sampled) / len(nodes),
        )
    log(INFO, "anchor-init: federated k-means over %d clients' centroids", len(answers))
    if not answers:
        raise ValueError(
            f"anchor-init='federated' got no usable k-means answer from the {len(sampled)} "
            "sampled nodes (see the warnings above)"
        )
    if run.privacy.anchor_dp == "central":
        answers = [central_centroid_release(c, f, run) for c, f in answers]
    return federated_kmeans(
        centroid_sets=[c for c, _ in answers],
        fraction_sets=[f for _, f in answers],
        num_anchors=run.aso.num_anchors,
        seed=run.federation.seed,
    )


def usable_centroids(
    replies: Iterable[Message], num_anchors: int, *, noised: bool, width: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(centroids, fractions)`` of every usable k-means answer; others are logged."""
    answers = []
    for reply in replies:
        parsed = centroid_answer(reply, num_anchors, noised=noised, width=width)
        if isinstance(parsed, str):
            log(WARNING, "anchor-init: dropped node %s: %s", reply.metadata.src_node_id, parsed)
            continue
        answers.append(parsed)
    return answers


def centroid_answer(
    reply: Message, num_anchors: int, *, noised: bool, width: int | None = None
) -> tuple[np.ndarray, np.ndarray] | str:
    """A k-means answer's centroids ``(k, d)`` and fractions ``(k,)``, or why it is unusable.

    Centroids must have the model's embedding ``width`` (None skips that check).
    Raw fractions (``noised`` False) must count the client's tokens (non-negative, a
    positive sum); noised ones (local mode) may be anything finite, since noise can push
    them below 0, and are clipped at 0 first. Either way the fractions returned are
    normalized to sum to 1 (uniform when none is positive), so that no answer outweighs
    another however large the numbers it sends.
    """
    if reply.has_error():
        return f"client error: {reply.error.reason}"
    record = reply.content.array_records.get(CENTROIDS)
    if record is None:
        return f"no ArrayRecord {CENTROIDS!r} (got {sorted(reply.content.array_records)})"
    try:
        arrays = record_to_arrays(record)
    except Exception as error:  # any undecodable array drops the answer, not the run
        return f"arrays cannot be decoded: {error}"
    centroids, fractions = arrays.get(CENTROID_ARRAYS), arrays.get(FRACTION_ARRAYS)
    if centroids is None or fractions is None:
        return f"expected arrays {CENTROID_ARRAYS!r} and {FRACTION_ARRAYS!r}, got {sorted(arrays)}"
    if centroids.ndim != 2 or not 1 <= len(centroids) <= num_anchors:
        return f"centroids have shape {centroids.shape}, expected (k <= {num_anchors}, d)"
    if width is not None and centroids.shape[1] != width:
        return f"centroids have width {centroids.shape[1]}, expected the model's {width}"
    if fractions.shape != (len(centroids),):
        return f"fractions have shape {fractions.shape}, expected ({len(centroids)},)"
    if not (np.isfinite(centroids).all() and np.isfinite(fractions).all()):
        return "centroids or fractions hold non-finite values"
    fractions = fractions.astype(np.float64)
    if not noised and ((fractions < 0).any() or float(fractions.sum()) <= 0):
        return f"the cluster fractions {fractions.tolist()} do not count tokens (sum > 0)"
    return centroids.astype(np.float64), normalized(np.clip(fractions, 0.0, None))


def normalized(fractions: np.ndarray) -> np.ndarray:
    """Non-negative ``fractions`` scaled to sum to 1; uniform when their sum is 0.

    Divided by their largest first, so that fractions near the float maximum cannot
    overflow their sum.
    """
    largest = float(fractions.max())
    if largest <= 0:
        return np.full(len(fractions), 1.0 / len(fractions))
    scaled = fractions / largest
    return scaled / scaled.sum()


def central_centroid_release(
    centroids: np.ndarray, fractions: np.ndarray, run: RunConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Central mode: the trusted server privatizes a raw k-means answer on receipt."""
    return release_centroids(
        centroids,
        fractions,  # normalized by centroid_answer
        clip=run.privacy.anchor_init_clip,
        noise_multiplier=run.privacy.anchor_noise_multiplier,
        replace_one=False,  # the trusted server's own release: add/remove of a client
        rng=fresh_rng(),
    )


def wait_for_nodes(grid: Grid, minimum: int, *, timeout: float, poll: float = 1.0) -> list[int]:
    """The connected node ids, once at least ``minimum`` are connected.

    Raises
    ------
    TimeoutError
        If fewer than ``minimum`` nodes are connected after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while len(nodes := list(grid.get_node_ids())) < minimum:
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"only {len(nodes)} node(s) connected after {timeout:g} s, but "
                f"min-train-nodes={minimum} are needed: start more SuperNodes or lower "
                "min-train-nodes (round-timeout bounds this wait)"
            )
        log(INFO, "Waiting for nodes to connect: %d connected (need %d)", len(nodes), minimum)
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
    return nodes


MAX_KMEANS_TOKENS = 20_000  # k-means over more seed tokens buys little and costs seconds


def seed_embeddings(model: torch.nn.Module, central: CentralData, run: RunConfig) -> np.ndarray:
    """The seed corpus' embeddings ``(n, d)`` under ``model``, at most ``MAX_KMEANS_TOKENS``."""
    embeddings = embed(model, central.seed_corpus)  # (n, d)
    if len(embeddings) > MAX_KMEANS_TOKENS:
        rows = np.random.default_rng(run.federation.seed).choice(
            len(embeddings), MAX_KMEANS_TOKENS, False
        )
        embeddings = embeddings[np.sort(rows)]
    return embeddings


def initial_anchors(model: torch.nn.Module, central: CentralData, run: RunConfig) -> np.ndarray:
    """k-means anchors over the seed corpus' embeddings under the initial model."""
    embeddings = seed_embeddings(model, central, run)
    return kmeans_anchors(
        embeddings=embeddings, num_anchors=run.aso.num_anchors, seed=run.federation.seed
    )
