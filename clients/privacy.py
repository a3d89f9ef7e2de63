"""The client side of FedASO's privacy (spec section 7; docs/PRIVACY.md).

- ``anchor_report``: the anchor set a client sends is ``A_global + clip(Delta_k)``, and under
  ``anchor-dp = local`` also ``+ N(0, (sigma C)^2)``: the raw set never leaves the client.
- ``relevance_report``: the mean relevance, optionally noised (it is the client's weight).
- ``dp_sgd_metrics``: the client's cumulative DP-SGD epsilon over the rounds it trained.
- ``centroid_report``: the client's answer to the federated k-means query (section 5b).
- ``update_clipping_mod``: Flower's ``fixedclipping_mod``, applied to the train messages of
  ``update-dp = client-fixed`` runs (the ones that carry Flower's clipping-norm key).

Each client keeps one Opacus accountant history per mechanism in ``context.state``, so the
epsilon it reports covers every release it made, not only this round's. Against the server,
who sees which clients reply, a client's releases get no subsampling amplification: they are
accounted with sample rate 1.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MessageType
from flwr.clientapp.mod import fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from fedaso.anchors import local_centroids
from fedaso.privacy import (
    PrivacyAccount,
    PrivacyConfig,
    clip_frobenius,
    fresh_rng,
    local_release,
    noisy_relevance,
    release_centroids,
)

ACCOUNT_PREFIX = "fedaso.account."  # context.state key prefix of a mechanism's history
MAX_QUERY_TOKENS = 20_000  # a client's k-means over more tokens buys little


def load_account(context: Context, name: str) -> PrivacyAccount:
    """This client's accountant history of mechanism ``name`` (empty at first)."""
    stored = context.state.config_records.get(ACCOUNT_PREFIX + name)
    if stored is None:
        return PrivacyAccount()
    return PrivacyAccount.from_lists({key: list(stored[key]) for key in stored})


def save_account(context: Context, name: str, account: PrivacyAccount) -> None:
    """Keep ``account`` in ``context.state`` for the next rounds."""
    context.state[ACCOUNT_PREFIX + name] = ConfigRecord(account.to_lists())


def record_release(
    context: Context, name: str, *, noise_multiplier: float, delta: float, steps: int = 1
) -> float:
    """Compose one more release of mechanism ``name``; return the client's epsilon."""
    account = load_account(context, name)
    account.record(noise_multiplier=noise_multiplier, sample_rate=1.0, steps=steps)
    save_account(context, name, account)
    return account.epsilon(delta)


def anchor_report(
    global_anchors: np.ndarray, trained: np.ndarray, privacy: PrivacyConfig, context: Context
) -> tuple[np.ndarray, dict[str, float]]:
    """The anchor set to send, ``A_global + clip(Delta)`` (+ noise in local mode), and metrics."""
    delta = trained.astype(np.float64) - global_anchors
    metrics: dict[str, float] = {}
    if privacy.anchor_dp == "local":
        released = local_release(
            delta,
            clip=privacy.anchor_clip,
            noise_multiplier=privacy.anchor_noise_multiplier,
            rng=fresh_rng(),
        )
        metrics = anchor_release_metrics(privacy, context)
    else:
        released = clip_frobenius(delta, privacy.anchor_clip)
    return (global_anchors + released).astype(np.float32), metrics


def anchor_release_metrics(privacy: PrivacyConfig, context: Context) -> dict[str, float]:
    """Account one local anchor release (updates or centroids); return ``anchor-epsilon``."""
    epsilon = record_release(
        context,
        "anchors",
        noise_multiplier=privacy.anchor_noise_multiplier,
        delta=privacy.anchor_delta,
    )
    return {"anchor-epsilon": epsilon}


def relevance_report(
    mean_relevance: float, privacy: PrivacyConfig, context: Context
) -> tuple[float, dict[str, float]]:
    """The mean relevance to send (noised if ``relevance-noise`` > 0) and its epsilon."""
    if privacy.relevance_noise == 0:
        return mean_relevance, {}
    value = noisy_relevance(mean_relevance, noise=privacy.relevance_noise, rng=fresh_rng())
    epsilon = record_release(
        context,
        "relevance",
        noise_multiplier=privacy.relevance_noise,
        delta=privacy.anchor_delta,
    )
    return value, {"relevance-epsilon": epsilon}


def dp_sgd_metrics(
    history: tuple[tuple[float, float, int], ...], privacy: PrivacyConfig, context: Context
) -> dict[str, float]:
    """Compose this round's DP-SGD steps into the client's history; return its epsilon."""
    if not privacy.dp_sgd:
        return {}
    account = load_account(context, "dp-sgd")
    for noise_multiplier, sample_rate, steps in history:
        account.record(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
    save_account(context, "dp-sgd", account)
    return {"dp-sgd-epsilon": account.epsilon(privacy.dp_delta)}


def centroid_report(
    embeddings: np.ndarray,
    *,
    num_anchors: int,
    seed: int,
    privacy: PrivacyConfig,
    context: Context,
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
            rng=fresh_rng(),
        )
        metrics = anchor_release_metrics(privacy, context)
    arrays = {
        "centroids": centroids.astype(np.float32),
        "fractions": fractions.astype(np.float32),
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
