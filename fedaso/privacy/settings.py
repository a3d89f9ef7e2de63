"""The privacy settings of a run (docs/SPEC.md section 7; docs/PRIVACY.md), typed and validated.

Field ``a_b`` of each dataclass is run-config key ``a-b``; errors name the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedaso.config import is_finite_number, require

ANCHOR_DP_MODES = ("none", "local", "central")
ANCHOR_INITS = ("server", "federated")
UPDATE_DP_MODES = ("none", "server-fixed", "client-fixed")
# Opacus' ways of clipping per-sample gradients: "hooks" materializes each sample's gradient;
# "ghost" (Li et al. 2022, "Large Language Models Can Be Strong Differentially Private
# Learners", section 4) computes only their norms and takes a second backward pass.
DP_GRAD_SAMPLE_MODES = ("hooks", "ghost")


@dataclass(frozen=True)
class PrivacyConfig:
    """The privacy run-config keys (docs/SPEC.md section 7); field ``a_b`` is key ``a-b``."""

    anchor_dp: str = "none"  # none | local | central
    anchor_clip: float = 2.0  # c: per-row bound of an anchor change under anchor DP (C = c sqrt M)
    anchor_noise_multiplier: float = 1.0  # sigma of anchor releases
    anchor_delta: float = 1e-5  # delta at which anchor epsilon is reported
    anchor_init: str = "server"  # server (seed corpus) | federated (federated k-means)
    anchor_init_clip: float = 40.0  # Frobenius bound of a client's k-means centroid matrix
    relevance_noise: float = 0.0  # std of Gaussian noise on a client's mean relevance
    dp_sgd: bool = False  # record-level DP-SGD (Opacus) in local training
    dp_noise_multiplier: float = 1.0  # DP-SGD noise multiplier
    dp_max_grad_norm: float = 1.0  # DP-SGD per-sample gradient clip
    dp_grad_sample_mode: str = "hooks"  # hooks | ghost (Opacus' ghost clipping)
    dp_delta: float = 1e-5  # delta at which a client's DP-SGD epsilon is reported
    update_dp: str = "none"  # none | server-fixed | client-fixed (Flower's wrappers)
    update_clip: float = 10.0  # clipping norm of Flower's DP wrappers
    update_noise_multiplier: float = 1.0  # noise multiplier of Flower's DP wrappers

    def __post_init__(self) -> None:
        for key, allowed in (
            ("anchor_dp", ANCHOR_DP_MODES),
            ("anchor_init", ANCHOR_INITS),
            ("update_dp", UPDATE_DP_MODES),
            ("dp_grad_sample_mode", DP_GRAD_SAMPLE_MODES),
        ):
            value = getattr(self, key)
            require(value in allowed, kebab(key), value, f"must be one of {', '.join(allowed)}")
        for key in ("anchor_noise_multiplier", "dp_noise_multiplier", "update_noise_multiplier"):
            value = getattr(self, key)
            require(is_nonnegative(value), kebab(key), value, "must be a finite number >= 0")
        require(
            is_nonnegative(self.relevance_noise),
            "relevance-noise",
            self.relevance_noise,
            "must be a finite number >= 0 (0 = no noise)",
        )
        require(
            is_nonnegative(self.anchor_clip) and (self.anchor_clip > 0 or self.anchor_dp == "none"),
            "anchor-clip",
            self.anchor_clip,
            "must be a finite number > 0 (0 only with anchor-dp=none, which clips nothing)",
        )
        for key in ("anchor_init_clip", "dp_max_grad_norm", "update_clip"):
            value = getattr(self, key)
            require(is_nonnegative(value) and value > 0, kebab(key), value, "must be > 0")
        for key in ("anchor_delta", "dp_delta"):
            value = getattr(self, key)
            require(
                is_finite_number(value) and 0 < value < 1, kebab(key), value, "must be in (0, 1)"
            )

    def anchor_change_bound(self, num_anchors: int) -> float:
        """C, the Frobenius bound of a client's anchor change under anchor DP: ``c sqrt(M)``.

        ``anchor-clip`` bounds the root-mean-square row of the change, so that the bound
        grows with the number of anchors M as an honest change does (docs/SPEC.md section 13); the
        noise of both modes is calibrated to this C. Without anchor DP nothing is clipped.
        """
        if num_anchors < 1:
            raise ValueError(f"an anchor set needs at least one row, got M={num_anchors}")
        return self.anchor_clip * math.sqrt(num_anchors)

    @property
    def anchors_private(self) -> bool:
        """True when anchor releases are noised (local or central)."""
        return self.anchor_dp != "none"

    @property
    def central_dp(self) -> bool:
        """True when a trusted server privatizes its outputs, amplified by client sampling.

        That is central anchor DP or update DP. Their epsilon assumes that who was sampled
        stays secret (``fedaso.privacy.sampling``; the run's outputs do not list it) and that
        no client's inclusion depends on another client's data (no median-relative outlier
        filter).
        """
        return self.anchor_dp == "central" or self.update_dp != "none"

    def dp_sgd_config(self) -> DPSGDConfig | None:
        """The DP-SGD settings of local training, or None when DP-SGD is off."""
        if not self.dp_sgd:
            return None
        return DPSGDConfig(
            noise_multiplier=self.dp_noise_multiplier,
            max_grad_norm=self.dp_max_grad_norm,
            grad_sample_mode=self.dp_grad_sample_mode,
        )


@dataclass(frozen=True)
class DPSGDConfig:
    """Record-level DP-SGD of one client's local training (Opacus)."""

    noise_multiplier: float = 1.0  # noise std / max_grad_norm, >= 0
    max_grad_norm: float = 1.0  # per-sample gradient clip, > 0
    grad_sample_mode: str = "hooks"  # hooks | ghost: how Opacus clips (DP_GRAD_SAMPLE_MODES)

    def __post_init__(self) -> None:
        require(
            self.grad_sample_mode in DP_GRAD_SAMPLE_MODES,
            "dp-grad-sample-mode",
            self.grad_sample_mode,
            f"must be one of {', '.join(DP_GRAD_SAMPLE_MODES)}",
        )
        require(
            is_nonnegative(self.noise_multiplier),
            "dp-noise-multiplier",
            self.noise_multiplier,
            "must be a finite number >= 0",
        )
        require(
            is_nonnegative(self.max_grad_norm) and self.max_grad_norm > 0,
            "dp-max-grad-norm",
            self.max_grad_norm,
            "must be a finite number > 0",
        )


def kebab(field: str) -> str:
    """The run-config key of a dataclass field."""
    return field.replace("_", "-")


def is_nonnegative(value: object) -> bool:
    """True for a finite number >= 0."""
    return is_finite_number(value) and value >= 0
