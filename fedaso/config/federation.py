"""The federation section: which strategy runs, how many rounds, whom it samples, and how.

These are the server's keys (the strategy, Eq. 7's weights, the baselines' own knobs, the
run's starting point), except ``seed``, which every client also needs to draw its data and
batches the same way, and ``proximal-mu``, which FedProx's clients apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedaso.aso.aggregation import AGGREGATION_WEIGHTS
from fedaso.checks import is_count, is_finite_number, require
from fedaso.config.fields import Section, setting

STRATEGIES = ("fedaso", "fedavg", "fedprox", "fedadam")


@dataclass(frozen=True, kw_only=True)
class FederationConfig(Section):
    """The run-config's federation keys."""

    strategy: str = setting("fedaso", "the server's strategy", choices=STRATEGIES)
    num_server_rounds: int = setting(10, "federated rounds", server_only=True)
    fraction_train: float = setting(
        0.2, "fraction of nodes sampled for training each round, in (0, 1]", server_only=True
    )
    fraction_evaluate: float = setting(
        0.0, "fraction of nodes for federated evaluation, 0 = off", server_only=True
    )
    min_train_nodes: int = setting(2, "at least this many nodes train per round", server_only=True)
    seed: int = setting(0, "seeds data, model init, anchors, client sampling and batch order")
    aggregation_weight: str = setting(
        "relevance",
        "FedASO's weight of a reply (Eq. 7; spec section 6)",
        choices=AGGREGATION_WEIGHTS,
        server_only=True,
    )
    anchor_staleness_decay: float = setting(
        0.5, "gamma: a partition's anchor report weighs gamma^age, in [0, 1]", server_only=True
    )
    proximal_mu: float = setting(0.01, "FedProx's proximal weight mu")
    server_lr: float = setting(0.01, "FedAdam's server learning rate eta", server_only=True)
    initial_model: str = setting(
        "", "model.pt of a previous run to start from; empty = fresh init", server_only=True
    )
    initial_anchors: str = setting(
        "", "anchors.npy to start FedASO from; empty = k-means of the seed corpus", server_only=True
    )

    def check(self) -> None:
        for key in ("num_server_rounds", "min_train_nodes"):
            value = getattr(self, key)
            require(
                is_count(value, minimum=1), key.replace("_", "-"), value, "must be an integer >= 1"
            )
        require(is_count(self.seed, minimum=0), "seed", self.seed, "must be an integer >= 0")
        require(
            is_finite_number(self.fraction_train) and 0 < self.fraction_train <= 1,
            "fraction-train",
            self.fraction_train,
            "must be in (0, 1]",
        )
        require(
            is_finite_number(self.fraction_evaluate) and 0 <= self.fraction_evaluate <= 1,
            "fraction-evaluate",
            self.fraction_evaluate,
            "must be in [0, 1]",
        )
        require(
            is_finite_number(self.anchor_staleness_decay) and 0 <= self.anchor_staleness_decay <= 1,
            "anchor-staleness-decay",
            self.anchor_staleness_decay,
            "must be in [0, 1]",
        )
        require(
            is_finite_number(self.server_lr) and self.server_lr > 0,
            "server-lr",
            self.server_lr,
            "must be a finite number > 0",
        )
        require(
            is_finite_number(self.proximal_mu) and self.proximal_mu >= 0,
            "proximal-mu",
            self.proximal_mu,
            "must be a finite number >= 0",
        )
        require(
            not self.initial_anchors or self.strategy == "fedaso",
            "initial-anchors",
            self.initial_anchors,
            f"only strategy='fedaso' uses anchors (strategy={self.strategy!r}); leave it empty",
        )

    @property
    def applied_proximal_mu(self) -> float:
        """The proximal weight a client applies: ``proximal-mu`` under FedProx, else 0."""
        return self.proximal_mu if self.strategy == "fedprox" else 0.0
