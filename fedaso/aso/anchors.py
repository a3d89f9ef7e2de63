"""The semantic anchor set: k-means initialization and the online update (docs/SPEC.md section 5).

Anchors are M vectors in the model's embedding space. They are initialized with k-means
(scikit-learn) over embeddings of a seed corpus, as in the report (section 5.1), and moved
online by the report's Eq. 1: after each local step, each anchor j takes a step of size
alpha towards the embedding of the batch token most similar to it,

    x* = argmax_i c_ij,      a_j <- (1 - alpha) a_j + alpha e(x*),

reusing the similarity matrix ``c`` already computed for relevance scoring.

Without a seed corpus, anchors come from federated k-means (docs/SPEC.md section 5b): each sampled
client summarizes its own embeddings by ``local_centroids`` and the server runs weighted
k-means over all the centroids it received (``federated_kmeans``).
"""

from __future__ import annotations

import numpy as np
import torch
from threadpoolctl import threadpool_limits


def kmeans_anchors(
    *,
    embeddings: np.ndarray,
    num_anchors: int,
    seed: int,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Return ``num_anchors`` k-means centroids ``(M, d)`` of ``embeddings`` ``(n, d)``.

    Parameters
    ----------
    embeddings : np.ndarray
        Seed-corpus embeddings, shape ``(n, d)``.
    num_anchors : int
        Number of anchors M; needs at least M distinct seed embeddings.
    seed : int
        Random state of k-means, so that every process gets the same anchors.
    sample_weight : np.ndarray or None
        Non-negative weight of each row ``(n,)`` (weighted k-means), e.g. the cluster sizes
        behind centroids that clients sent; None weighs every row 1.
    """
    num_points = embeddings.shape[0]
    if num_anchors > num_points:
        raise ValueError(
            f"num-anchors={num_anchors} exceeds the {num_points} seed-corpus embeddings "
            "available for k-means; lower num-anchors or enlarge the seed corpus"
        )
    return fit_kmeans(embeddings, num_anchors, seed=seed, sample_weight=sample_weight)[0]


def refit_anchors(*, embeddings: np.ndarray, previous: np.ndarray, seed: int) -> np.ndarray:
    """k-means of ``embeddings`` ``(n, d)`` warm-started from ``previous`` anchors ``(M, d)``.

    ``relevance-source = anchors-refit`` (docs/SPEC.md section 13): each round the server re-fits
    the anchors over its seed corpus under the current model. Starting from the last
    centroids keeps anchor j where it was as far as the data allow, so that rows stay
    index-aligned across rounds, and converges in a few iterations.
    """
    num_anchors = previous.shape[0]
    if num_anchors > embeddings.shape[0]:
        raise ValueError(
            f"num-anchors={num_anchors} exceeds the {embeddings.shape[0]} seed-corpus "
            "embeddings available for k-means; lower num-anchors or enlarge the seed corpus"
        )
    return fit_kmeans(embeddings, num_anchors, seed=seed, init=previous)[0]


def fit_kmeans(
    points: np.ndarray,
    num_clusters: int,
    *,
    seed: int,
    sample_weight: np.ndarray | None = None,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's k-means (one init) of ``points`` ``(n, d)``: centroids ``(k, d)``
    float32 and each point's cluster ``(n,)``; ``init`` ``(k, d)`` warm-starts it."""
    # Imported here: sklearn takes about as long to import as torch, and every client process
    # imports this module for the EMA update, which needs no k-means.
    from sklearn.cluster import KMeans

    start = "k-means++" if init is None else np.asarray(init, dtype=np.float64)
    kmeans = KMeans(n_clusters=num_clusters, init=start, n_init=1, random_state=seed)
    # One BLAS/OpenMP thread: k-means over at most tens of thousands of points is fast on
    # one, while a thread per core next to busy simulation actors has been seen to spin
    # for minutes instead of seconds.
    with threadpool_limits(limits=1):
        labels = kmeans.fit_predict(
            np.asarray(points, dtype=np.float64), sample_weight=sample_weight
        )
    return kmeans.cluster_centers_.astype(np.float32), labels


def local_centroids(
    *, embeddings: np.ndarray, num_clusters: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A client's k-means summary: centroids ``(k, d)`` and cluster fractions ``(k,)``.

    ``k = min(num_clusters, n)``; the fractions are the cluster sizes over ``n``, so they
    sum to 1 whatever the client's size (the client's size itself is not released).
    """
    num_clusters = min(num_clusters, embeddings.shape[0])
    centroids, labels = fit_kmeans(embeddings, num_clusters, seed=seed)
    counts = np.bincount(labels, minlength=num_clusters).astype(np.float64)
    return centroids, counts / counts.sum()


def federated_kmeans(
    *,
    centroid_sets: list[np.ndarray],
    fraction_sets: list[np.ndarray],
    num_anchors: int,
    seed: int,
) -> np.ndarray:
    """Server side of federated k-means: weighted k-means over every client's centroids.

    Each centroid weighs its (possibly noisy) cluster fraction, clipped at a small positive
    floor, since noise can push a fraction below 0 and k-means needs positive weights.
    """
    if not centroid_sets:
        raise ValueError("federated k-means received no centroids from any client")
    points = np.concatenate(centroid_sets)  # (sum k, d)
    if points.shape[0] < num_anchors:
        raise ValueError(
            f"num-anchors={num_anchors} exceeds the {points.shape[0]} centroids the clients "
            "sent; sample more clients (fraction-train) or lower num-anchors"
        )
    weights = np.clip(np.concatenate(fraction_sets), 1e-6, None)  # (sum k,)
    return kmeans_anchors(
        embeddings=points, num_anchors=num_anchors, seed=seed, sample_weight=weights
    )


def ema_update_towards(
    *,
    anchors: torch.Tensor,
    embeddings: torch.Tensor,
    nearest_token: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    """Return ``(1 - alpha) a_j + alpha e(x*_j)`` for each anchor j (Eq. 1).

    Parameters
    ----------
    anchors : torch.Tensor
        Current anchors, shape ``(M, d)``.
    embeddings : torch.Tensor
        Detached batch embeddings, shape ``(N, d)``.
    nearest_token : torch.Tensor
        ``x*_j``, the index of each anchor's most similar token, shape ``(M,)``, as
        ``fedaso.aso.relevance.score_tokens`` returns it.
    alpha : float
        Anchor rate in (0, 1).
    """
    return (1.0 - alpha) * anchors + alpha * embeddings[nearest_token]  # (M, d)
