"""What ASO adds to a local step: score the tokens, weight their losses, project, move anchors.

Steps 2-5 of the local step that ``fedaso.training.trainer`` describes: relevance ``s``
from the anchors (or the server's probe, or the oracle's fact-token indicator), Eq. 4's
weights ``1 + lambda s``, Eq. 5's projection hook on the embedding, and after the optimizer
step Eq. 1's anchor update and the subspace refresh.
"""

from __future__ import annotations

import torch

from fedaso.aso.anchors import ema_update_towards
from fedaso.aso.projection import projection_hook, projection_weights, semantic_subspace
from fedaso.aso.relevance import RelevanceProbe, score_tokens
from fedaso.config import ASOConfig


class ASOState:
    """Anchors and subspace basis carried across the steps of one round.

    Each step calls :meth:`weight_losses` after its forward pass and :meth:`after_step`
    after the optimizer step. ``anchors`` is None where nothing reads them
    (``ASOConfig.uses_anchors``: the probe gives ``s`` and Eq. 5 is off); then no token is
    scored against anchors and none moves.
    """

    def __init__(
        self, anchors: torch.Tensor | None, aso: ASOConfig, probe: RelevanceProbe | None = None
    ) -> None:
        if anchors is None and (aso.uses_anchors or probe is None):
            raise ValueError(
                f"ASO with relevance-source={aso.relevance_source!r} and project-gradients="
                f"{aso.project_gradients} needs anchors"
            )
        self.aso = aso
        self.probe = probe  # relevance-source = probe: s from it, not from the anchors
        self.anchors = None if anchors is None else anchors.detach().clone()  # (M, d)
        self.basis = self._basis()
        self.steps = 0
        # (embeddings (n, d), nearest token per anchor (M,)) of the step in progress; the
        # nearest tokens are None when the step scored no token (nothing to move towards).
        self._pending: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def _basis(self) -> torch.Tensor | None:
        if not self.aso.project_gradients or self.anchors is None:
            return None
        return semantic_subspace(anchors=self.anchors, rank=self.aso.subspace_rank)  # (d, R)

    def weight_losses(
        self,
        embedding: torch.Tensor,
        losses: torch.Tensor,
        scored: torch.Tensor,
        fact_targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score tokens, hook the projection onto ``embedding``; return (weighted losses, s).

        Both are per token, ``(N,)``: Eq. 4's ``(1 + lambda s_i) l_i`` and ``s_i``. Only the
        ``scored`` tokens ``(N,)`` are scored and may move an anchor; the others get s = 0.
        Given the oracle's ``fact_targets`` (any shape of N bools), they replace the anchors'
        ``s`` in Eq. 4 and Eq. 5 (and so in the mean relevance that weights Eq. 7); the
        anchors still move by Eq. 1.
        """
        flat = embedding.detach().reshape(-1, embedding.shape[-1]).float()  # (N, d), fp32
        every_token = bool(scored.all())
        if not every_token:
            flat = flat[scored]  # (n, d): the tokens that carry a loss
        relevance, nearest_token = self._score(flat)  # (N,) when every token is scored
        if not every_token:
            relevance = flat.new_zeros(scored.shape[0]).masked_scatter_(scored, relevance)
        if fact_targets is not None:
            relevance = (fact_targets.reshape(-1) & scored).float()  # (N,): 1 on a fact's value
        if self.basis is not None and embedding.requires_grad:
            weights = projection_weights(relevance, low_relevance=self.aso.project_low_relevance)
            embedding.register_hook(projection_hook(basis=self.basis, relevance=weights))
        self._pending = (flat, nearest_token)
        return (1.0 + self.aso.aso_lambda * relevance) * losses, relevance

    def _score(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Relevance ``(n,)`` of tokens ``(n, d)`` and each anchor's nearest token ``(M,)``."""
        if self.anchors is None:  # the probe's s alone (``__init__`` checked there is one)
            assert self.probe is not None
            return self.probe.scores(flat), None
        scores = score_tokens(
            embeddings=flat, anchors=self.anchors, tau=self.aso.aso_tau, kind=self.aso.relevance
        )
        relevance = scores.relevance if self.probe is None else self.probe.scores(flat)
        return relevance, scores.nearest_token

    def after_step(self) -> None:
        """Move anchors by Eq. 1 towards the step's nearest tokens; refresh U every K steps."""
        self.steps += 1
        pending, self._pending = self._pending, None
        if pending is None:
            raise RuntimeError("after_step() without weight_losses() in the same step")
        flat, nearest_token = pending
        # An empty Poisson batch (DP-SGD), or one with no scored token, moves no anchor.
        moves = self.aso.update_anchors and self.aso.clients_move_anchors
        if moves and self.anchors is not None and nearest_token is not None:
            self.anchors = ema_update_towards(
                anchors=self.anchors,
                embeddings=flat,
                nearest_token=nearest_token,
                alpha=self.aso.aso_alpha,
            )
            refresh = self.aso.subspace_refresh_steps
            if refresh and self.steps % refresh == 0:
                self.basis = self._basis()
