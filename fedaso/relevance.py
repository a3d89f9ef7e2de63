"""Semantic relevance scores of token embeddings against an anchor set (spec section 2).

The report's Eq. 3 averages a softmax over the anchors, which sums to one for every token,
so taken literally every token scores exactly ``1/M`` (:func:`literal_eq3_scores` keeps that
formula only so that tests can show it). The spec fixes the score to what the report's
prose asks for, near 1 when an embedding is close to one anchor and near 0 when it is
equidistant from all of them:

    c_ij = cos(e_i, a_j)
    p_ij = softmax_j(c_ij / tau)
    s_i  = (M * max_j p_ij - 1) / (M - 1)        # "max" (default)
    s_i  = 1 - H(p_i) / log M                    # "entropy"

Both are computed from logits with ``logsumexp`` so that small temperatures never overflow.
Scores are weights, never differentiated: callers pass detached embeddings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

RELEVANCE_KINDS = ("max", "entropy")


def cosine_similarities(*, embeddings: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Return ``c_ij = cos(e_i, a_j)`` for embeddings ``(N, d)`` and anchors ``(M, d)``."""
    unit_embeddings = F.normalize(embeddings, dim=1)  # (N, d)
    unit_anchors = F.normalize(anchors, dim=1)  # (M, d)
    return unit_embeddings @ unit_anchors.T  # (N, M)


def relevance_from_similarities(
    *, similarities: torch.Tensor, tau: float, kind: str = "max"
) -> torch.Tensor:
    """Return the relevance ``s_i`` in [0, 1] of each row of ``similarities`` ``(N, M)``.

    Parameters
    ----------
    similarities : torch.Tensor
        Cosine similarities ``c`` between N tokens and M >= 2 anchors, shape ``(N, M)``.
    tau : float
        Softmax temperature, > 0.
    kind : str
        ``"max"`` (the spec's default) or ``"entropy"``.
    """
    num_anchors = similarities.shape[1]
    if num_anchors < 2:
        raise ValueError(f"relevance needs at least 2 anchors, got M={num_anchors}")
    if tau <= 0:
        raise ValueError(f"tau={tau} must be > 0")
    logits = similarities / tau  # (N, M)
    log_normalizer = torch.logsumexp(logits, dim=1)  # (N,)
    if kind == "max":
        max_probability = torch.exp(logits.max(dim=1).values - log_normalizer)  # (N,)
        scores = (num_anchors * max_probability - 1.0) / (num_anchors - 1)
    elif kind == "entropy":
        probabilities = torch.exp(logits - log_normalizer[:, None])  # (N, M)
        # H(p) = logsumexp(z) - sum_j p_j z_j, exact and free of log(0).
        entropy = log_normalizer - (probabilities * logits).sum(dim=1)  # (N,)
        scores = 1.0 - entropy / math.log(num_anchors)
    else:
        raise ValueError(f"relevance kind={kind!r} is not one of {', '.join(RELEVANCE_KINDS)}")
    # Rounding can step a hair outside [0, 1]; the weights must not.
    return scores.clamp_(0.0, 1.0)


def relevance_scores(
    *, embeddings: torch.Tensor, anchors: torch.Tensor, tau: float, kind: str = "max"
) -> torch.Tensor:
    """Return the relevance ``(N,)`` of embeddings ``(N, d)`` against anchors ``(M, d)``."""
    similarities = cosine_similarities(embeddings=embeddings, anchors=anchors)
    return relevance_from_similarities(similarities=similarities, tau=tau, kind=kind)


def literal_eq3_scores(
    *, embeddings: torch.Tensor, anchors: torch.Tensor, tau: float
) -> torch.Tensor:
    """The report's Eq. 3 read literally: the mean over anchors of a softmax over anchors.

    Kept only to document the defect: the result is ``1/M`` for every token.
    """
    similarities = cosine_similarities(embeddings=embeddings, anchors=anchors)
    return torch.softmax(similarities / tau, dim=1).mean(dim=1)
