"""Gradient projection onto the anchors' semantic subspace (docs/SPEC.md section 4, report Eq. 5).

The report defines the ASO gradient of token i as

    g~_i = s_i * Proj_S(g_i) + (1 - s_i) * g_i

with S "projected back into parameter space via the Jacobian of the embedding layer". The
spec reads this as a projection in embedding space carried to the parameters by the chain
rule: a backward hook on the embedding-point output replaces the gradient arriving at
token i's embedding by

    g_i <- g_i - s_i * (g_i - U U^T g_i)

where U ``(d, R)`` holds the top-R right singular vectors of the centered anchor matrix.
Every parameter upstream of the embedding point then receives
``J_i^T (s_i P + (1 - s_i) I) dl_i/de_i`` per token, at a cost of ``O(N d R)``.

A named variant (docs/SPEC.md section 12, ``project-low-relevance``) projects the low-relevance
tokens instead, ``g_i <- g_i - (1 - s_i)(g_i - U U^T g_i)``: what relevance does not single
out is kept to the anchors' subspace, for stability, and relevant tokens train freely.
Both are :func:`project_gradient` with a per-token weight ``w_i`` (:func:`projection_weights`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def semantic_subspace(*, anchors: torch.Tensor, rank: int) -> torch.Tensor:
    """Return U ``(d, R)``: orthonormal top-``rank`` right singular vectors of centered anchors.

    Parameters
    ----------
    anchors : torch.Tensor
        Anchor matrix, shape ``(M, d)``.
    rank : int
        Subspace rank R, with ``1 <= R <= min(M, d)``.
    """
    num_anchors, width = anchors.shape
    if not 1 <= rank <= min(num_anchors, width):
        raise ValueError(
            f"subspace rank R={rank} must be in [1, min(M, d)] = [1, {min(num_anchors, width)}]"
        )
    centered = anchors - anchors.mean(dim=0, keepdim=True)  # (M, d)
    # float64 SVD: the subspace is recomputed rarely and must be orthonormal to rounding.
    _, _, right_vectors = torch.linalg.svd(centered.double(), full_matrices=False)  # (k, d)
    return right_vectors[:rank].T.to(anchors.dtype).contiguous()  # (d, R)


def projection_weights(relevance: torch.Tensor, *, low_relevance: bool) -> torch.Tensor:
    """How strongly each token's gradient is projected: ``s`` (Eq. 5) or ``1 - s``.

    Parameters
    ----------
    relevance : torch.Tensor
        Relevance ``s`` of each token, shape ``(N,)``, in [0, 1].
    low_relevance : bool
        The low-relevance variant: weight ``1 - s``, so that irrelevant tokens are projected.
    """
    return 1.0 - relevance if low_relevance else relevance


def project_gradient(
    *, gradient: torch.Tensor, basis: torch.Tensor, relevance: torch.Tensor
) -> torch.Tensor:
    """Return ``g - s * (g - U U^T g)`` row by row.

    Parameters
    ----------
    gradient : torch.Tensor
        Gradients at the embedding point, shape ``(N, d)``.
    basis : torch.Tensor
        Orthonormal basis U of the semantic subspace, shape ``(d, R)``.
    relevance : torch.Tensor
        Projection weight of each token, shape ``(N,)``: its relevance ``s`` for Eq. 5,
        or :func:`projection_weights`' ``1 - s`` for the low-relevance variant.
    """
    # Written as (1 - s) g + (s * (g U)) U^T: one elementwise pass over (N, d) and a fused
    # multiply-add, instead of four (N, d) passes for g - s (g - g U U^T).
    weighted_coordinates = (gradient @ basis) * relevance[:, None]  # (N, R)
    kept = gradient * (1.0 - relevance)[:, None]  # (N, d)
    return torch.addmm(kept, weighted_coordinates, basis.T)  # (N, d)


def projection_hook(
    *, basis: torch.Tensor, relevance: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return a tensor backward hook that projects the embedding-point gradient.

    The hook accepts the gradient in the embedding point's own shape (``(..., d)``, e.g.
    ``(B, T, d)`` for a language model) and flattens it to the ``(N, d)`` token layout in
    which ``relevance`` was computed.
    """

    def hook(gradient: torch.Tensor) -> torch.Tensor:
        # In the basis' dtype (fp32), whatever the autocast dtype of the gradient.
        flat = gradient.reshape(-1, gradient.shape[-1]).to(basis.dtype)  # (N, d)
        projected = project_gradient(gradient=flat, basis=basis, relevance=relevance)
        return projected.reshape(gradient.shape).to(gradient.dtype)

    return hook
