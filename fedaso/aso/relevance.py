"""Semantic relevance scores of token embeddings against an anchor set (docs/SPEC.md section 2).

The report's Eq. 3 averages a softmax over the anchors, which sums to one for every token,
so taken literally every token scores exactly ``1/M`` (:func:`literal_eq3_scores` keeps that
formula only so that tests can show it). The spec fixes the score to what the report's
prose asks for, near 1 when an embedding is close to one anchor and near 0 when it is
equidistant from all of them:

    c_ij = cos(e_i, a_j)
    p_ij = softmax_j(c_ij / tau)
    s_i  = (M * max_j p_ij - 1) / (M - 1)        # "max" (default)
    s_i  = 1 - H(p_i) / log M                    # "entropy"

Both are computed from ``softmax``/``log_softmax`` of the logits, which subtract each row's
maximum first, so that small temperatures never overflow. Scores are weights, never
differentiated: callers pass detached embeddings.

A training step needs two reductions of the same ``(N, M)`` matrix ``c``: each token's score
(over anchors) and each anchor's most similar token (over tokens, for Eq. 1).
:func:`score_tokens` computes ``c`` once, in blocks of tokens small enough to stay in the
CPU cache, and feeds every block to both reductions; the whole matrix never exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

RELEVANCE_KINDS = ("max", "entropy")
# Where local training's s comes from (docs/SPEC.md section 13). "anchors": this module's score
# against the anchors, which clients move by Eq. 1 (the default). "anchors-refit": the same
# score, against anchors the server re-fits by k-means each round and clients never move
# or send. "probe": a logistic probe the server fits and sends (RelevanceProbe).
# "oracle": the data's true fact-token indicator, research only: it needs the facts
# dataset's spans and is never deployable.
RELEVANCE_SOURCES = ("anchors", "anchors-refit", "probe", "oracle")


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
    check_relevance_arguments(num_anchors=similarities.shape[1], tau=tau, kind=kind)
    return relevance_from_logits(logits=similarities / tau, kind=kind)


def check_relevance_arguments(*, num_anchors: int, tau: float, kind: str) -> None:
    """Raise ``ValueError`` naming the value unless M >= 2, tau > 0 and ``kind`` is known."""
    if num_anchors < 2:
        raise ValueError(f"relevance needs at least 2 anchors, got M={num_anchors}")
    if tau <= 0:
        raise ValueError(f"tau={tau} must be > 0")
    if kind not in RELEVANCE_KINDS:
        raise ValueError(f"relevance kind={kind!r} is not one of {', '.join(RELEVANCE_KINDS)}")


def relevance_from_logits(*, logits: torch.Tensor, kind: str) -> torch.Tensor:
    """The relevance ``(N,)`` from softmax logits ``z = c / tau`` ``(N, M)`` (arguments checked)."""
    num_anchors = logits.shape[1]
    if kind == "max":
        # max_j p_ij = exp(max_j z_ij - logsumexp_j z_ij); the fused softmax kernel gets it
        # in one pass over the row (several times faster than logsumexp, max and exp apart).
        max_probability = torch.softmax(logits, dim=1).amax(dim=1)  # (N,)
        scores = (num_anchors * max_probability - 1.0) / (num_anchors - 1)
    elif kind == "entropy":
        log_probabilities = torch.log_softmax(logits, dim=1)  # (N, M), finite
        # H(p) = -sum_j p_j log p_j; an underflowed p_j = 0 contributes 0 * finite = 0.
        entropy = -(log_probabilities.exp() * log_probabilities).sum(dim=1)  # (N,)
        scores = 1.0 - entropy / math.log(num_anchors)
    # Rounding can step a hair outside [0, 1]; the weights must not.
    return scores.clamp_(0.0, 1.0)


# Tokens per block of the similarity matrix in ``score_tokens``: a (rows, M) float32 block of
# about 512 KiB stays in a core's L2 cache between the matrix product and the reductions.
BLOCK_BYTES = 512 * 1024


@dataclass(frozen=True)
class TokenScores:
    """What one step needs from the similarities ``c`` of its tokens to the anchors."""

    relevance: torch.Tensor  # (N,) s_i in [0, 1]
    nearest_token: torch.Tensor | None  # (M,) argmax_i c_ij per anchor; None when N = 0


def score_tokens(
    *,
    embeddings: torch.Tensor,
    anchors: torch.Tensor,
    tau: float,
    kind: str = "max",
    block_rows: int | None = None,
) -> TokenScores:
    """Relevance of each token and each anchor's most similar token, from one pass over ``c``.

    Equal to ``relevance_from_similarities(c)`` and ``c.argmax(dim=0)`` (the first token on
    ties) with ``c = cosine_similarities(embeddings, anchors)``, but ``c`` is computed block
    by block of ``block_rows`` tokens and each block is reduced while it is in cache.

    Parameters
    ----------
    embeddings : torch.Tensor
        Detached token embeddings, shape ``(N, d)``.
    anchors : torch.Tensor
        Anchor matrix, shape ``(M, d)``, M >= 2.
    tau, kind
        As in :func:`relevance_from_similarities`.
    block_rows : int or None
        Tokens per block; None picks about ``BLOCK_BYTES`` of similarities per block.
    """
    num_tokens, num_anchors = embeddings.shape[0], anchors.shape[0]
    check_relevance_arguments(num_anchors=num_anchors, tau=tau, kind=kind)
    if block_rows is None:
        block_rows = max(1, BLOCK_BYTES // (4 * num_anchors))
    unit_embeddings = F.normalize(embeddings, dim=1)  # (N, d)
    # 1/tau is folded into the (M, d) anchors, not applied to every (b, M) block; the
    # per-anchor argmax over tokens is the same on c / tau as on c (tau > 0).
    scaled_anchors_t = (F.normalize(anchors, dim=1) / tau).T.contiguous()  # (d, M)
    relevance = embeddings.new_empty(num_tokens)  # (N,), on the embeddings' device
    best_similarity, nearest_token = None, None  # (M,), (M,): running argmax over tokens
    for start in range(0, num_tokens, block_rows):
        block = unit_embeddings[start : start + block_rows] @ scaled_anchors_t  # (b, M): c / tau
        relevance[start : start + block.shape[0]] = relevance_from_logits(logits=block, kind=kind)
        similarity, token = column_max(block)  # (M,), (M,): first maximal row on ties
        if best_similarity is None or nearest_token is None:
            best_similarity, nearest_token = similarity, token
        else:
            # Strictly greater: on ties the earlier token wins, as in argmax over all rows.
            better = similarity > best_similarity
            best_similarity = torch.where(better, similarity, best_similarity)
            nearest_token = torch.where(better, token + start, nearest_token)
    return TokenScores(relevance=relevance, nearest_token=nearest_token)


def column_max(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``matrix.max(dim=0)``: each column's maximum and the first row that attains it.

    torch's index-tracking reductions (``max(dim=0)``, ``argmax``) are not vectorized on
    CPU and cost about as much as the whole matrix product that made ``matrix``. This uses
    vectorized passes only: ``sign(x - colmax) + 1`` is exactly 1 at a column's maximum and
    0 elsewhere (``x - y == 0`` iff ``x == y`` in floating point), and multiplied by the
    reversed row number ``b - i`` its column maximum picks the first such row.

    Parameters
    ----------
    matrix : torch.Tensor
        Finite floating-point matrix ``(b, M)`` with ``1 <= b < 2**24``.
    """
    rows = matrix.shape[0]
    maxima = matrix.amax(dim=0)  # (M,)
    at_max = torch.sub(matrix, maxima).sign_().add_(1.0)  # (b, M): 1 at a maximum, else 0
    reversed_rows = torch.arange(rows, 0, -1, dtype=matrix.dtype, device=matrix.device)[:, None]
    first = rows - at_max.mul_(reversed_rows).amax(dim=0).long()  # (M,)
    return maxima, first


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


@dataclass(frozen=True, eq=False)  # holds an array: compare by identity
class RelevanceProbe:
    """``relevance-source = probe``'s logistic probe: weights ``w`` ``(d,)`` and bias ``b``.

    The server fits it (``fedaso.aso.relevance_probe``); its ``d + 1`` numbers travel under
    ``fedaso.wire``'s reserved probe keys.
    """

    weight: np.ndarray  # (d,) float32
    bias: float

    def __post_init__(self) -> None:
        if self.weight.ndim != 1 or not np.isfinite(self.weight).all():
            raise ValueError(
                f"a relevance probe's weight must be a finite (d,) vector, got shape "
                f"{self.weight.shape}"
            )
        if not np.isfinite(self.bias):
            raise ValueError(f"a relevance probe's bias must be finite, got {self.bias}")

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``s = sigmoid(e w + b)`` ``(N,)`` of detached embeddings ``(N, d)``, fp32."""
        weight = torch.as_tensor(self.weight, dtype=torch.float32, device=embeddings.device)
        return torch.sigmoid(embeddings.float() @ weight + self.bias)
