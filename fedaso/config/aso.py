"""The ASO section: the hyperparameters of ASO local training (spec sections 1-5, 13).

``num-anchors`` and ``subspace-rank`` of 0 stand for the model family's defaults (spec
section 11); :meth:`ASOConfig.resolved` returns the section with them filled in, and that
resolved form is what the trainer, the strategy and the outputs see.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fedaso.aso.relevance import RELEVANCE_KINDS, RELEVANCE_SOURCES
from fedaso.checks import is_count, is_finite_number, require
from fedaso.config.fields import Section, setting

# The model family's (M, R): the report's M = 512 and R = 16 for hf: models, small values
# for the reference models that train in seconds (spec section 11).
AUTO_ANCHORS = {"hf": (512, 16), "reference": (32, 8)}


@dataclass(frozen=True, kw_only=True)
class ASOConfig(Section):
    """Active Semantic Optimization hyperparameters (the run-config's ASO keys)."""

    aso_lambda: float = setting(1.0, "semantic emphasis lambda of the loss weight 1 + lambda * s")
    aso_tau: float = setting(0.1, "temperature tau of the relevance softmax")
    aso_alpha: float = setting(0.01, "anchor EMA rate alpha of Eq. 1, in (0, 1)")
    num_anchors: int = setting(
        0,
        (
            "anchors M; 0 = the model's default: 512 for hf: models (the report's), 32 otherwise;"
            " metrics.json records the value used"
        ),
    )
    subspace_rank: int = setting(
        0, "rank R of the semantic subspace (< M, <= d); 0 = 16 for hf: models, 8 otherwise"
    )
    relevance: str = setting("max", "relevance score of a token", choices=RELEVANCE_KINDS)
    project_gradients: bool = setting(True, "Eq. 5 on/off (ablation switch)")
    update_anchors: bool = setting(True, "Eq. 1 on/off; false keeps anchors static (ablation)")
    subspace_refresh_steps: int = setting(
        0, "recompute the subspace U every K local steps; 0 = once per round"
    )
    relevance_source: str = setting(
        "anchors",
        (
            "where s comes from (spec section 13): anchors (Eq. 1); anchors-refit (the server "
            "re-fits them by warm-started k-means over its seed corpus each round and sends them "
            "down only; needs anchor-dp=none); probe (sigmoid(w . e + b), a logistic probe the "
            "server fits each round on public documents' fact spans; d + 1 numbers travel); "
            "oracle (the true fact-token indicator of facts' spans: research only, the ceiling)"
        ),
        choices=RELEVANCE_SOURCES,
    )
    project_low_relevance: bool = setting(
        False,
        (
            "variant (spec section 13): Eq. 5 projects low-relevance tokens, g <- g - (1 - s)(g -"
            " U U^T g), instead of relevant ones"
        ),
    )
    anchor_blend: float = setting(
        0.5, "share of the received global anchors in a client's own set, in [0, 1]"
    )

    def check(self) -> None:
        require(
            is_finite_number(self.aso_tau) and self.aso_tau > 0,
            "aso-tau",
            self.aso_tau,
            "must be a finite number > 0",
        )
        require(
            is_finite_number(self.aso_lambda) and self.aso_lambda >= 0,
            "aso-lambda",
            self.aso_lambda,
            "must be a finite number >= 0",
        )
        require(
            is_finite_number(self.aso_alpha) and 0 < self.aso_alpha < 1,
            "aso-alpha",
            self.aso_alpha,
            "must be in (0, 1)",
        )
        require(
            self.num_anchors == 0 or is_count(self.num_anchors, minimum=2),
            "num-anchors",
            self.num_anchors,
            "must be 0 (the model's default) or an integer >= 2 (relevance compares anchors)",
        )
        require(
            self.subspace_rank == 0
            or (is_count(self.subspace_rank, minimum=1) and self.num_anchors == 0)
            or (is_count(self.subspace_rank, minimum=1) and self.subspace_rank < self.num_anchors),
            "subspace-rank",
            self.subspace_rank,
            # M centered anchors span at most M - 1 dimensions (spec section 4).
            f"must be 0 (the model's default) or an integer in [1, num-anchors - 1 = "
            f"{self.num_anchors - 1}]",
        )
        require(
            is_count(self.subspace_refresh_steps, minimum=0),
            "subspace-refresh-steps",
            self.subspace_refresh_steps,
            "must be an integer >= 0",
        )
        require(
            is_finite_number(self.anchor_blend) and 0 <= self.anchor_blend <= 1,
            "anchor-blend",
            self.anchor_blend,
            "must be in [0, 1]",
        )

    def resolved(self, *, hf_model: bool) -> ASOConfig:
        """This section with M and R of 0 replaced by the model family's defaults."""
        auto_anchors, auto_rank = AUTO_ANCHORS["hf" if hf_model else "reference"]
        num_anchors = self.num_anchors or auto_anchors
        # Centered anchors span at most M - 1 dimensions: a small M lowers the default rank.
        rank = self.subspace_rank or max(1, min(auto_rank, num_anchors - 1))
        return dataclasses.replace(self, num_anchors=num_anchors, subspace_rank=rank)

    @property
    def uses_anchors(self) -> bool:
        """Whether anything reads the anchors: relevance (Eq. 2) or Eq. 5's subspace.

        Under ``relevance-source = probe`` with ``project-gradients = false`` nothing does:
        the probe gives ``s`` and nothing is projected, so no anchor set is initialized,
        moved, sent or merged, and the payload carries the model and the probe alone. The
        oracle keeps its anchors (research only: its runs stay comparable with the report's).
        """
        return self.project_gradients or self.relevance_source != "probe"

    @property
    def clients_move_anchors(self) -> bool:
        """Whether clients move anchors by Eq. 1 and send them up (not under anchors-refit)."""
        return self.relevance_source != "anchors-refit"

    def check_width(self, width: int) -> None:
        """Raise if the subspace rank exceeds the model's embedding width ``d``."""
        require(
            self.subspace_rank <= width,
            "subspace-rank",
            self.subspace_rank,
            f"must not exceed the model's embedding width d={width}",
        )
