"""The semantic anchor set: k-means initialization and the online update (spec section 5).

Anchors are M vectors in the model's embedding space. They are initialized with k-means
(scikit-learn) over embeddings of a seed corpus, as in the report (section 5.1), and moved
online by the report's Eq. 1: after each local step, each anchor j takes a step of size
alpha towards the embedding of the batch token most similar to it,

    x* = argmax_i c_ij,      a_j <- (1 - alpha) a_j + alpha e(x*),

reusing the similarity matrix ``c`` already computed for relevance scoring.
"""

from __future__ import annotations

import numpy as np
import torch
from threadpoolctl import threadpool_limits


def kmeans_anchors(*, embeddings: np.ndarray, num_anchors: int, seed: int) -> np.ndarray:
    """Return ``num_anchors`` k-means centroids ``(M, d)`` of ``embeddings`` ``(n, d)``.

    Parameters
    ----------
    embeddings : np.ndarray
        Seed-corpus embeddings, shape ``(n, d)``.
    num_anchors : int
        Number of anchors M; needs at least M distinct seed embeddings.
    seed : int
        Random state of k-means, so that every process gets the same anchors.
    """
    num_points = embeddings.shape[0]
    if num_anchors > num_points:
        raise ValueError(
            f"num-anchors={num_anchors} exceeds the {num_points} seed-corpus embeddings "
            "available for k-means; lower num-anchors or enlarge the seed corpus"
        )
    # Imported here: sklearn takes about as long to import as torch, and every client process
    # imports this module for the EMA update, which needs no k-means.
    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters=num_anchors, n_init=1, random_state=seed)
    # One BLAS/OpenMP thread: k-means over at most tens of thousands of points is fast on
    # one, while a thread per core next to busy simulation actors has been seen to spin
    # for minutes instead of seconds.
    with threadpool_limits(limits=1):
        kmeans.fit(np.asarray(embeddings, dtype=np.float64))
    return kmeans.cluster_centers_.astype(np.float32)  # (M, d)


def ema_update_anchors(
    *,
    anchors: torch.Tensor,
    embeddings: torch.Tensor,
    similarities: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    """Return anchors moved by Eq. 1 towards their most similar token of the batch.

    Parameters
    ----------
    anchors : torch.Tensor
        Current anchors, shape ``(M, d)``.
    embeddings : torch.Tensor
        Detached batch embeddings, shape ``(N, d)``.
    similarities : torch.Tensor
        ``cos(e_i, a_j)`` from scoring, shape ``(N, M)``; reused, not recomputed.
    alpha : float
        Anchor rate in (0, 1).
    """
    nearest_token = similarities.argmax(dim=0)  # (M,)
    return ema_update_towards(
        anchors=anchors, embeddings=embeddings, nearest_token=nearest_token, alpha=alpha
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
        ``fedaso.relevance.score_tokens`` returns it.
    alpha : float
        Anchor rate in (0, 1).
    """
    return (1.0 - alpha) * anchors + alpha * embeddings[nearest_token]  # (M, d)
