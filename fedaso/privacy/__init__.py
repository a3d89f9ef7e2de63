"""Differential privacy of FedASO (docs/SPEC.md section 7; docs/PRIVACY.md), in three files:

- ``mechanisms``: the Gaussian mechanisms of anchor, centroid and relevance releases;
- ``accounting``: Opacus' RDP accountant (``PrivacyAccount``) and its quiet import;
- ``sampling``: secret seeds for the samples that amplification relies on.

Their public names are importable from ``fedaso.privacy`` itself, with the privacy section of
the run-config (``PrivacyConfig``, ``DPSGDConfig`` and the modes: ``fedaso.config.privacy``).
"""

from fedaso.config.privacy import (
    ANCHOR_DP_MODES,
    ANCHOR_INITS,
    DP_GRAD_SAMPLE_MODES,
    UPDATE_DP_MODES,
    DPSGDConfig,
    PrivacyConfig,
)
from fedaso.privacy.accounting import PrivacyAccount, opacus_import
from fedaso.privacy.mechanisms import (
    RELEVANCE_FLOOR,
    central_noisy_mean,
    centroid_sensitivity,
    clip_frobenius,
    fresh_rng,
    gaussian_noise,
    local_release,
    local_release_norm_bound,
    noisy_relevance,
    release_centroids,
)
from fedaso.privacy.sampling import SEEDED_SAMPLING_ENV, sampling_seed, seeded_sampling

__all__ = [
    "ANCHOR_DP_MODES",
    "ANCHOR_INITS",
    "DP_GRAD_SAMPLE_MODES",
    "RELEVANCE_FLOOR",
    "SEEDED_SAMPLING_ENV",
    "UPDATE_DP_MODES",
    "DPSGDConfig",
    "PrivacyAccount",
    "PrivacyConfig",
    "central_noisy_mean",
    "centroid_sensitivity",
    "clip_frobenius",
    "fresh_rng",
    "gaussian_noise",
    "local_release",
    "local_release_norm_bound",
    "noisy_relevance",
    "opacus_import",
    "release_centroids",
    "sampling_seed",
    "seeded_sampling",
]
