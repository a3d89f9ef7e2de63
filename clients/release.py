"""What may leave a client, and its privacy cost (docs/SPEC.md section 7; docs/PRIVACY.md).

- ``train_metrics``: a training reply's metrics, built from released values only.
- ``anchor_report``: the anchor set a client sends is ``A_global + Delta_k`` without anchor
  DP (no clip: the server's robustness bound is relative to the round's median change), and
  ``A_global + clip(Delta_k) + N(0, (2 sigma C)^2)`` under ``anchor-dp = local``, with
  ``C = anchor-clip * sqrt(M)``: then the raw set never leaves the client.
- ``relevance_report``: the mean relevance, optionally noised (it is the client's weight).
- ``dp_sgd_metrics``: the client's cumulative DP-SGD epsilon over the rounds it trained.
- ``centroid_report``: the client's answer to the federated k-means query (section 5b).
- ``update_clipping_mod``: Flower's ``fixedclipping_mod``, applied to the train messages of
  ``update-dp = client-fixed`` runs (the ones that carry Flower's clipping-norm key).

Each client keeps one Opacus accountant history per mechanism in its partition's state
(``clients.state``, on the node's disk, surviving a resume), so the epsilon it reports
covers every release it made, not only this round's. Against the server,
who sees which clients reply, a client's releases get no subsampling amplification: they are
accounted with sample rate 1.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Context, Message, MessageType
from flwr.clientapp.mod import fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from clients.state import PartitionState
from fedaso.aso.anchors import local_centroids
from fedaso.privacy import (
    PrivacyConfig,
    fresh_rng,
    local_release,
    noisy_relevance,
    release_centroids,
)
from fedaso.training.trainer import LocalTrainResult
from fedaso.wire import (
    ANCHOR_EPSILON,
    CENTROID_ARRAYS,
    DP_SGD_EPSILON,
    FRACTION_ARRAYS,
    HIGH_RELEVANCE_FRACTION,
    MEAN_RELEVANCE,
    NUM_EXAMPLES,
    NUM_STEPS,
    NUM_TOKENS,
    RELEVANCE_EPSILON,
    TRAIN_LOSS,
)

MAX_QUERY_TOKENS = 20_000  # a client's k-means over more tokens buys little


def record_release(
    state: PartitionState, name: str, *, noise_multiplier: float, delta: float, steps: int = 1
) -> float:
    """Compose one more release of mechanism ``name``; return the client's epsilon."""
    account = state.account(name)
    account.record(noise_multiplier=noise_multiplier, sample_rate=1.0, steps=steps)
    return account.epsilon(delta)


def train_metrics(
    result: LocalTrainResult, privacy: PrivacyConfig, state: PartitionState
) -> dict[str, float]:
    """A training reply's metrics, built from released values only (docs/SPEC.md section 7).

    Counts and the training loss always; under ASO the mean relevance as released by
    :func:`relevance_report` (noised when ``relevance-noise`` > 0) and, only without
    relevance noise, the fraction of high-relevance tokens: no un-noised relevance
    statistic is ever put in the reply, so none can slip through. DP-SGD's epsilon if on.
    """
    metrics: dict[str, float] = {
        NUM_EXAMPLES: result.num_examples,
        NUM_TOKENS: result.num_tokens,
        NUM_STEPS: result.num_steps,
        TRAIN_LOSS: result.train_loss,
    }
    metrics |= dp_sgd_metrics(result.dp_history, privacy, state)
    if not result.trained_with_aso:
        return metrics
    relevance, relevance_metrics = relevance_report(result.mean_relevance, privacy, state)
    metrics |= relevance_metrics | {MEAN_RELEVANCE: relevance}
    if privacy.relevance_noise == 0:
        metrics[HIGH_RELEVANCE_FRACTION] = result.high_relevance_fraction
    return metrics


def anchor_report(
    global_anchors: np.ndarray, trained: np.ndarray, privacy: PrivacyConfig, state: PartitionState
) -> tuple[np.ndarray, dict[str, float]]:
    """The anchor set to send and its metrics: ``A_global + Delta`` whole, or privatized.

    Under ``anchor-dp = local`` the change is clipped to ``C = anchor-clip * sqrt(M)`` and
    noised; under ``central`` the trusted server clips it on receipt. Without anchor DP no
    privacy clip applies (docs/SPEC.md section 13): a bound sized for a small anchor set would cut
    an honest change of a large one, and the server bounds outliers relative to the round.
    """
    delta = trained.astype(np.float64) - global_anchors
    if privacy.anchor_dp != "local":
        return (global_anchors + delta).astype(np.float32), {}
    released = local_release(
        delta,
        clip=privacy.anchor_change_bound(len(delta)),
        noise_multiplier=privacy.anchor_noise_multiplier,
        rng=fresh_rng(),
    )
    return (global_anchors + released).astype(np.float32), anchor_release_metrics(privacy, state)


def anchor_release_metrics(privacy: PrivacyConfig, state: PartitionState) -> dict[str, float]:
    """Account one local anchor release (updates or centroids); return ``anchor-epsilon``."""
    epsilon = record_release(
        state,
        "anchors",
        noise_multiplier=privacy.anchor_noise_multiplier,
        delta=privacy.anchor_delta,
    )
    return {ANCHOR_EPSILON: epsilon}


def relevance_report(
    mean_relevance: float, privacy: PrivacyConfig, state: PartitionState
) -> tuple[float, dict[str, float]]:
    """The mean relevance to send (noised if ``relevance-noise`` > 0) and its epsilon."""
    if privacy.relevance_noise == 0:
        return mean_relevance, {}
    value = noisy_relevance(mean_relevance, noise=privacy.relevance_noise, rng=fresh_rng())
    epsilon = record_release(
        state,
        "relevance",
        noise_multiplier=privacy.relevance_noise,
        delta=privacy.anchor_delta,
    )
    return value, {RELEVANCE_EPSILON: epsilon}


def dp_sgd_metrics(
    history: tuple[tuple[float, float, int], ...], privacy: PrivacyConfig, state: PartitionState
) -> dict[str, float]:
    """Compose this round's DP-SGD steps into the client's history; return its epsilon."""
    if not privacy.dp_sgd:
        return {}
    account = state.account("dp-sgd")
    for noise_multiplier, sample_rate, steps in history:
        account.record(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
    return {DP_SGD_EPSILON: account.epsilon(privacy.dp_delta)}


def centroid_report(
    embeddings: np.ndarray,
    *,
    num_anchors: int,
    seed: int,
    privacy: PrivacyConfig,
    state: PartitionState,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """k-means centroids and cluster fractions of this client's embeddings, to send.

    In local mode they are privatized here (``fedaso.privacy.release_centroids``); in
    central mode the trusted server privatizes them on receipt.
    """
    if len(embeddings) > MAX_QUERY_TOKENS:
        rows = np.random.default_rng(seed).choice(len(embeddings), MAX_QUERY_TOKENS, False)
        embeddings = embeddings[np.sort(rows)]
    centroids, fractions = local_centroids(
        embeddings=embeddings, num_clusters=num_anchors, seed=seed
    )
    metrics: dict[str, float] = {}
    if privacy.anchor_dp == "local":
        centroids, fractions = release_centroids(
            centroids,
            fractions,
            clip=privacy.anchor_init_clip,
            noise_multiplier=privacy.anchor_noise_multiplier,
            replace_one=True,  # the server sees this answer
            rng=fresh_rng(),
        )
        metrics = anchor_release_metrics(privacy, state)
    arrays = {
        CENTROID_ARRAYS: centroids.astype(np.float32),
        FRACTION_ARRAYS: fractions.astype(np.float32),
    }
    return arrays, metrics


def update_clipping_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower's ``fixedclipping_mod`` on train messages that carry its clipping norm.

    ``DifferentialPrivacyClientSideFixedClipping`` adds the norm to the train config; other
    runs and other message types pass through untouched.
    """
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, context)
    configs = list(msg.content.config_records.values())
    if not any(KEY_CLIPPING_NORM in config for config in configs):
        return call_next(msg, context)
    return fixedclipping_mod(msg, context, call_next)
