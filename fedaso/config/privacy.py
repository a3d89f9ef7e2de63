"""The privacy section: anchor DP, DP-SGD and update DP (docs/SPEC.md 7; docs/PRIVACY.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedaso.checks import is_finite_number, require
from fedaso.config.fields import Section, kebab, setting

ANCHOR_DP_MODES = ("none", "local", "central")
ANCHOR_INITS = ("server", "federated")
UPDATE_DP_MODES = ("none", "server-fixed", "client-fixed")
# Opacus' ways of clipping per-sample gradients: "hooks" materializes each sample's gradient;
# "ghost" (Li et al. 2022, "Large Language Models Can Be Strong Differentially Private
# Learners", section 4) computes only their norms and takes a second backward pass.
DP_GRAD_SAMPLE_MODES = ("hooks", "ghost")


@dataclass(frozen=True, kw_only=True)
class PrivacyConfig(Section):
    """The privacy run-config keys (docs/SPEC.md section 7)."""

    anchor_dp: str = setting(
        "none", "DP of anchor releases: none | local | central", choices=ANCHOR_DP_MODES
    )
    anchor_clip: float = setting(
        2.0,
        (
            "c: per-row (RMS) bound of a client's anchor change under anchor DP; the Frobenius "
            "bound is C = c sqrt(M). Without anchor DP nothing is clipped"
        ),
    )
    anchor_noise_multiplier: float = setting(
        1.0, "sigma of anchor releases: noise sigma C (local) or sigma C / n (central)"
    )
    anchor_delta: float = setting(
        1e-5, "delta of the reported anchor-epsilon (and of the update and relevance epsilons)"
    )
    anchor_init: str = setting(
        "server",
        "initial anchors: server (k-means of its seed corpus) | federated (federated k-means)",
        choices=ANCHOR_INITS,
        server_only=True,
    )
    anchor_init_clip: float = setting(
        40.0, "Frobenius bound of a client's k-means centroid matrix (anchor-init=federated)"
    )
    relevance_noise: float = setting(
        0.0, "std of Gaussian noise on a client's mean relevance, 0 = off"
    )
    dp_sgd: bool = setting(False, "record-level DP-SGD (Opacus) in local training")
    dp_noise_multiplier: float = setting(1.0, "DP-SGD noise multiplier")
    dp_max_grad_norm: float = setting(1.0, "DP-SGD per-sample gradient clip")
    dp_grad_sample_mode: str = setting(
        "hooks", "Opacus' per-sample clipping: hooks | ghost", choices=DP_GRAD_SAMPLE_MODES
    )
    dp_delta: float = setting(1e-5, "delta at which a client's DP-SGD epsilon is reported")
    update_dp: str = setting(
        "none",
        "Flower's DP wrappers on model updates: none | server-fixed | client-fixed",
        choices=UPDATE_DP_MODES,
        server_only=True,
    )
    update_clip: float = setting(10.0, "clipping norm of Flower's DP wrappers", server_only=True)
    update_noise_multiplier: float = setting(
        1.0, "noise multiplier of Flower's DP wrappers", server_only=True
    )

    def check(self) -> None:
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
        grows with the number of anchors M as an honest change does (spec section 13); the
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
    """Record-level DP-SGD of one client's local training (Opacus), from the privacy section."""

    noise_multiplier: float  # noise std / max_grad_norm, >= 0
    max_grad_norm: float  # per-sample gradient clip, > 0
    grad_sample_mode: str  # hooks | ghost: how Opacus clips (DP_GRAD_SAMPLE_MODES)

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


def is_nonnegative(value: object) -> bool:
    """True for a finite number >= 0."""
    return is_finite_number(value) and value >= 0
