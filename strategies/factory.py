"""Which strategy a run uses: the run-config's ``strategy`` and ``relevance-source`` -> a Strategy.

``fedaso`` is :class:`strategies.fedaso.FedASO`, or one of its server-fitted relevance
sources (``anchors-refit``: k-means again each round; ``probe``: a logistic probe on public
documents, ``strategies.refit``); ``fedavg``, ``fedprox`` and ``fedadam`` are Flower's own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx, Strategy

from fedaso.aso.anchors import refit_anchors
from fedaso.aso.relevance import RelevanceProbe
from fedaso.config import RunConfig
from fedaso.config.training import resolve_device
from fedaso.data import CentralData
from fedaso.models.arrays import load_model_arrays
from fedaso.training.fact_relevance import fit_probe_on_public
from strategies.anchor_init import seed_embeddings
from strategies.fedaso import FedASO
from strategies.refit import AnchorRefitFedASO, ProbeFedASO


def build_strategy(run: RunConfig, central: CentralData | None = None) -> Strategy:
    """Return the strategy named by ``run.federation.strategy``, configured from the run-config.

    ``relevance-source = anchors-refit`` needs the server's ``central`` data: its seed
    corpus is what the anchors are re-fitted over each round.
    """
    sampling: dict[str, Any] = {
        "fraction_train": run.federation.fraction_train,
        "fraction_evaluate": run.federation.fraction_evaluate,
        "min_train_nodes": run.federation.min_train_nodes,
        "min_evaluate_nodes": run.federation.min_train_nodes,
        "min_available_nodes": run.federation.min_train_nodes,
    }
    if run.federation.strategy == "fedaso":
        settings: dict[str, Any] = {
            "aggregation_weight": run.federation.aggregation_weight,
            "anchor_staleness_decay": run.federation.anchor_staleness_decay,
            "privacy": run.privacy,
            "bounds": run.reliability.reply_bounds(),
        }
        if run.aso.relevance_source not in ("anchors-refit", "probe"):
            return FedASO(**sampling, **settings)
        if central is None:
            raise ValueError(
                f"relevance-source={run.aso.relevance_source!r} needs the server's central data"
            )
        if run.aso.relevance_source == "probe":
            return ProbeFedASO(
                **sampling,
                **settings,
                fit_probe=PublicDocumentProbe(run, central),
                uses_anchors=run.aso.uses_anchors,
            )
        return AnchorRefitFedASO(**sampling, **settings, refit=SeedCorpusRefit(run, central))
    if run.federation.strategy == "fedprox":
        return FedProx(**sampling, proximal_mu=run.federation.proximal_mu)
    if run.federation.strategy == "fedadam":
        return FedAdam(**sampling, eta=run.federation.server_lr, eta_l=run.training.lr)
    return FedAvg(**sampling)


class SeedCorpusRefit:
    """``anchors-refit``'s re-fit: k-means over the seed corpus under the new global model,
    warm-started from the last anchors (``fedaso.aso.anchors.refit_anchors``)."""

    def __init__(self, run: RunConfig, central: CentralData) -> None:
        self.run = run
        self.central = central
        self.model = run.build_model().to(resolve_device(run.training.device))

    def __call__(self, model_arrays: dict[str, np.ndarray], previous: np.ndarray) -> np.ndarray:
        load_model_arrays(self.model, model_arrays)
        embeddings = seed_embeddings(self.model, self.central, self.run)
        return refit_anchors(
            embeddings=embeddings, previous=previous, seed=self.run.federation.seed
        )


class PublicDocumentProbe:
    """``probe``'s fit: a logistic probe on the public documents' fact and other tokens
    under the global model (``fedaso.aso.relevance_probe``)."""

    def __init__(self, run: RunConfig, central: CentralData) -> None:
        if central.public_fact_probe is None:
            raise ValueError(
                f"relevance-source='probe' needs public documents with fact spans mapped to "
                f"tokens, which dataset={run.data.dataset!r} under this tokenizer does not give"
            )
        self.public = central.public_fact_probe
        self.seed = run.federation.seed
        self.model = run.build_model().to(resolve_device(run.training.device))

    def __call__(self, model_arrays: dict[str, np.ndarray]) -> RelevanceProbe:
        load_model_arrays(self.model, model_arrays)
        return fit_probe_on_public(self.model, self.public, seed=self.seed)
