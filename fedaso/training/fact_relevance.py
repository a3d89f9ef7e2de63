"""Does relevance find knowledge? How well relevance tells fact tokens from all others.

ASO's premise (docs/SPEC.md sections 2-3) is that relevance singles out the tokens that carry
knowledge, so that Eq. 4 emphasizes them. On ``facts`` this can be measured: the held-out
documents' tokens are split into those whose next-token target is part of a fact's value
(``FactProbe.fact``) and all others (``FactProbe.filler``). The relevance of the embedding
that predicts a token is the weight its loss gets, so that is what is scored here, with the
same score as local training (``fedaso.aso.relevance.relevance_scores``).

Three figures (docs/SPEC.md section 13): the mean relevance of each kind; the AUROC of relevance
for fact tokens against all others, the selectivity that bounds what Eq. 4 can speed up;
and ``(1 + lambda s_fact) / (1 + lambda s_other)``, the relative weight of a fact token,
which is all that counts under Adam (a common factor of the loss cancels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedaso.aso.relevance import RelevanceProbe, relevance_scores
from fedaso.aso.relevance_probe import fit_relevance_probe
from fedaso.data import FactProbe
from fedaso.training.evaluate import embed


@dataclass(frozen=True)
class FactRelevance:
    """Relevance of a probe's fact-value tokens against its other tokens."""

    fact: float  # mean relevance of the fact tokens
    filler: float  # mean relevance of all other tokens
    auroc: float  # P(s_fact > s_other) + P(s_fact = s_other) / 2 over token pairs

    @property
    def ratio(self) -> float:
        """How many times more relevant a fact token is than a filler token, on average."""
        return self.fact / self.filler if self.filler > 0 else float("inf")

    def weight_ratio(self, aso_lambda: float) -> float:
        """Eq. 4's mean weight of a fact token over another's: ``(1 + l s_f) / (1 + l s_o)``."""
        return (1.0 + aso_lambda * self.fact) / (1.0 + aso_lambda * self.filler)


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of scores ``positive`` ``(P,)`` against ``negative`` ``(Q,)``.

    The Mann-Whitney statistic: the share of (positive, negative) pairs in which the
    positive scores higher, a tie counting one half. Computed from average ranks over the
    pooled scores in ``O((P + Q) log(P + Q))``, not over the ``P * Q`` pairs.
    """
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError(
            f"AUROC needs scores of both kinds, got {len(positive)} positive and "
            f"{len(negative)} negative"
        )
    pooled = np.concatenate([positive, negative]).astype(np.float64)  # (P + Q,)
    _, inverse, counts = np.unique(pooled, return_inverse=True, return_counts=True)
    # 1-based average rank of each distinct value: tied scores share their ranks' mean.
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # (distinct,)
    positive_rank_sum = average_rank[inverse[: len(positive)]].sum()
    wins = positive_rank_sum - len(positive) * (len(positive) + 1) / 2.0
    return float(wins / (len(positive) * len(negative)))


def relevance_by_token_kind(
    model: nn.Module,
    probe: FactProbe,
    anchors: np.ndarray | None,
    *,
    tau: float,
    kind: str = "max",
    relevance_probe: RelevanceProbe | None = None,
) -> FactRelevance:
    """Relevance of the probe's fact and filler tokens under ``anchors`` ``(M, d)``.

    With a ``relevance_probe`` (``relevance-source = probe``) its scores are the relevance,
    and ``anchors`` may be None.
    """
    if anchors is None and relevance_probe is None:
        raise ValueError("relevance needs anchors or a relevance probe; got neither")

    def token_relevance(split_embeddings: np.ndarray) -> np.ndarray:
        embeddings = torch.from_numpy(split_embeddings)  # (N, d)
        if relevance_probe is not None:
            return relevance_probe.scores(embeddings).numpy()  # (N,)
        anchor_tensor = torch.as_tensor(anchors, dtype=torch.float32)  # (M, d)
        scores = relevance_scores(embeddings=embeddings, anchors=anchor_tensor, tau=tau, kind=kind)
        return scores.numpy()  # (N,)

    fact = token_relevance(embed(model, probe.fact))
    filler = token_relevance(embed(model, probe.filler))
    return FactRelevance(
        fact=float(fact.mean()), filler=float(filler.mean()), auroc=auroc(fact, filler)
    )


def fit_probe_on_public(model: nn.Module, public: FactProbe, *, seed: int) -> RelevanceProbe:
    """Fit the logistic relevance probe on ``public``'s fact and other tokens under ``model``."""
    return fit_relevance_probe(embed(model, public.fact), embed(model, public.filler), seed=seed)
