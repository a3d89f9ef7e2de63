"""Does relevance find knowledge? Mean relevance of fact tokens and of filler tokens.

ASO's premise (spec sections 2-3) is that relevance singles out the tokens that carry
knowledge, so that Eq. 4 emphasizes them. On ``facts`` this can be measured: the held-out
documents' tokens are split into those whose next-token target is part of a fact's value
(``FactProbe.fact``) and all others (``FactProbe.filler``). The relevance of the embedding
that predicts a token is the weight its loss gets, so that is what is averaged here, with
the same score as local training (``fedaso.relevance.relevance_scores``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedaso.data import FactProbe
from fedaso.relevance import relevance_scores
from fedaso.trainer import embed


@dataclass(frozen=True)
class FactRelevance:
    """Mean relevance of the fact-value tokens and of the other tokens of a probe."""

    fact: float
    filler: float

    @property
    def ratio(self) -> float:
        """How many times more relevant a fact token is than a filler token, on average."""
        return self.fact / self.filler if self.filler > 0 else float("inf")


def relevance_by_token_kind(
    model: nn.Module, probe: FactProbe, anchors: np.ndarray, *, tau: float, kind: str = "max"
) -> FactRelevance:
    """Mean relevance under ``anchors`` ``(M, d)`` of the probe's fact and filler tokens."""
    anchor_tensor = torch.as_tensor(anchors, dtype=torch.float32)  # (M, d)

    def mean_relevance(split_embeddings: np.ndarray) -> float:
        embeddings = torch.from_numpy(split_embeddings)  # (N, d)
        scores = relevance_scores(embeddings=embeddings, anchors=anchor_tensor, tau=tau, kind=kind)
        return float(scores.mean())

    return FactRelevance(
        fact=mean_relevance(embed(model, probe.fact)),
        filler=mean_relevance(embed(model, probe.filler)),
    )
