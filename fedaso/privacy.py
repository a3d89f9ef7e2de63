"""Differential privacy of what leaves a client: anchor releases, relevance, accounting.

Spec section 7. Three client-level Gaussian mechanisms live here, all on plain NumPy:

- **Local anchor release** (``anchor-dp = local``). A client clips its anchor change
  ``Delta_k = A_k_after - A_global_received`` to Frobenius norm ``C`` and adds
  ``N(0, (sigma C)^2)`` to every entry before the report leaves the client.
- **Central anchor release** (``anchor-dp = central``, DP-FedAvg, McMahan et al. 2018). The
  trusted server clips every fresh ``Delta_k``, sums them, adds ``N(0, (sigma C)^2)`` once and
  divides by the fixed expected count ``n``: each client moves the mean by at most ``C / n``
  and the noise has standard deviation ``sigma C / n``.
- **Federated anchor initialization**: a client's k-means centroids ``Z`` (clipped to
  ``C_init``) and its cluster fractions ``f`` (``||f||_2 <= 1``) form one vector
  ``(Z, C_init f)`` of norm at most ``sqrt(2) C_init``, released with
  ``N(0, 2 (sigma C_init)^2)`` noise: one Gaussian mechanism of noise multiplier ``sigma``.

Privacy loss is accounted by Opacus' RDP accountant (:class:`PrivacyAccount`). A release
without noise has infinite epsilon, never zero.

Noise must come from fresh entropy (``fresh_rng``), never from the run seed: anyone who knows
a seeded generator's seed can regenerate the noise and subtract it.
"""

from __future__ import annotations

import logging
import math
import secrets
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from fedaso.config import is_finite_number, require

ANCHOR_DP_MODES = ("none", "local", "central")
ANCHOR_INITS = ("server", "federated")
UPDATE_DP_MODES = ("none", "server-fixed", "client-fixed")
# Opacus' ways of clipping per-sample gradients: "hooks" materializes each sample's gradient;
# "ghost" (Li et al. 2022, "Large Language Models Can Be Strong Differentially Private
# Learners", section 4) computes only their norms and takes a second backward pass.
DP_GRAD_SAMPLE_MODES = ("hooks", "ghost")
RELEVANCE_FLOOR = 1e-3  # a noisy relevance weight is clipped to [floor, 1]: 0 would drop a reply


@contextmanager
def opacus_import() -> Iterator[None]:
    """Import Opacus inside this block without its logging set-up.

    ``opacus/utils/module_utils.py`` calls ``logging.basicConfig`` when imported, which gives
    the root logger a handler: every Flower log line in the process is then printed twice.
    Handlers the block added to the root logger are removed again.
    """
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)


@dataclass(frozen=True)
class PrivacyConfig:
    """The privacy run-config keys (spec section 7); field ``a_b`` is key ``a-b``."""

    anchor_dp: str = "none"  # none | local | central
    anchor_clip: float = 8.0  # C: Frobenius bound of an anchor change; 0 = no clip (none only)
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
            "must be a finite number > 0 (0, no clipping, only with anchor-dp=none)",
        )
        for key in ("anchor_init_clip", "dp_max_grad_norm", "update_clip"):
            value = getattr(self, key)
            require(is_nonnegative(value) and value > 0, kebab(key), value, "must be > 0")
        for key in ("anchor_delta", "dp_delta"):
            value = getattr(self, key)
            require(
                is_finite_number(value) and 0 < value < 1, kebab(key), value, "must be in (0, 1)"
            )

    @property
    def anchors_private(self) -> bool:
        """True when anchor releases are noised (local or central)."""
        return self.anchor_dp != "none"

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


def fresh_rng() -> np.random.Generator:
    """A generator seeded from OS entropy: noise nobody can regenerate from the run seed."""
    return np.random.default_rng(secrets.randbits(128))


def clip_frobenius(matrix: np.ndarray, clip: float) -> np.ndarray:
    """Return ``matrix`` scaled down to Frobenius norm at most ``clip`` (0 = unchanged)."""
    if clip == 0:
        return np.asarray(matrix, dtype=np.float64)
    norm = float(np.linalg.norm(matrix))
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    return np.asarray(matrix, dtype=np.float64) * scale


def gaussian_noise(shape: tuple[int, ...], std: float, rng: np.random.Generator) -> np.ndarray:
    """Entries drawn i.i.d. from ``N(0, std^2)``, shape ``shape``."""
    if std == 0:
        return np.zeros(shape)
    return rng.normal(0.0, std, size=shape)


def local_release(
    delta: np.ndarray, *, clip: float, noise_multiplier: float, rng: np.random.Generator
) -> np.ndarray:
    """Clip ``delta`` to ``clip`` and add ``N(0, (noise_multiplier * clip)^2)`` entrywise."""
    clipped = clip_frobenius(delta, clip)
    return clipped + gaussian_noise(clipped.shape, noise_multiplier * clip, rng)


def central_noisy_mean(
    deltas: Sequence[np.ndarray],
    *,
    clip: float,
    noise_multiplier: float,
    expected_count: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """DP-FedAvg mean: ``(sum_k clip(Delta_k) + N(0, (sigma C)^2)) / n`` with a fixed ``n``.

    ``n = expected_count`` is fixed before any reply arrives (the number of sampled
    clients), so one client moves the result by at most ``C / n`` whatever the others sent;
    a missing reply counts as a zero change.
    """
    if not deltas:
        raise ValueError("central_noisy_mean needs at least one anchor change")
    if expected_count < len(deltas):
        raise ValueError(f"expected_count={expected_count} is below the {len(deltas)} reports")
    total = sum(clip_frobenius(delta, clip) for delta in deltas)
    total = total + gaussian_noise(total.shape, noise_multiplier * clip, rng)
    return total / expected_count


def release_centroids(
    centroids: np.ndarray,
    fractions: np.ndarray,
    *,
    clip: float,
    noise_multiplier: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Privatize a client's k-means centroids ``(k, d)`` and cluster fractions ``(k,)``.

    The vector ``(clip(Z), C f)`` has norm at most ``sqrt(2) C``; it gets noise of standard
    deviation ``sigma sqrt(2) C`` per entry, so one release is a Gaussian mechanism of noise
    multiplier ``sigma``. Returns the noisy centroids and the noisy fractions.
    """
    if not np.isclose(fractions.sum(), 1.0) or (fractions < 0).any():
        raise ValueError("cluster fractions must be non-negative and sum to 1")
    std = noise_multiplier * math.sqrt(2.0) * clip
    noisy = clip_frobenius(centroids, clip) + gaussian_noise(centroids.shape, std, rng)
    noisy_fractions = fractions + gaussian_noise(fractions.shape, std / clip, rng)
    return noisy, noisy_fractions


def noisy_relevance(value: float, *, noise: float, rng: np.random.Generator) -> float:
    """``value + N(0, noise^2)`` clipped to ``[RELEVANCE_FLOOR, 1]``; ``value`` is in [0, 1].

    A mean relevance lies in [0, 1], so one client's value has sensitivity 1 and this is a
    Gaussian mechanism of noise multiplier ``noise``. Clipping afterwards is post-processing.
    """
    noisy = float(value) + float(gaussian_noise((), noise, rng))
    return min(1.0, max(RELEVANCE_FLOOR, noisy))


class PrivacyAccount:
    """Cumulative privacy loss of a sequence of Gaussian releases (Opacus' RDP accountant).

    Each release is recorded with its noise multiplier (noise std / sensitivity) and its
    sampling rate (1.0 when the observer knows who took part). A release with noise
    multiplier 0 makes epsilon infinite.
    """

    def __init__(self) -> None:
        # Imported here: Opacus takes longer to import than torch, and every process that
        # reads a run-config imports this module; only accounting processes need Opacus.
        with opacus_import():
            from opacus.accountants import RDPAccountant

        self.accountant = RDPAccountant()

    def record(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Compose ``steps`` releases of noise multiplier ``noise_multiplier``."""
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate={sample_rate} must be in (0, 1]")
        if steps < 1:
            return
        history = self.accountant.history
        last = history[-1] if history else None
        if last is not None and last[:2] == (noise_multiplier, sample_rate):
            history[-1] = (noise_multiplier, sample_rate, last[2] + steps)
        else:
            history.append((noise_multiplier, sample_rate, steps))

    @property
    def releases(self) -> int:
        """Number of releases recorded."""
        return sum(steps for _, _, steps in self.accountant.history)

    def epsilon(self, delta: float) -> float:
        """Epsilon at ``delta`` after every recorded release; 0.0 only if none was recorded."""
        if not self.accountant.history:
            return 0.0
        if any(sigma == 0 for sigma, _, _ in self.accountant.history):
            return math.inf
        with warnings.catch_warnings():  # Opacus warns when the best order is its smallest
            warnings.simplefilter("ignore", UserWarning)
            return float(self.accountant.get_epsilon(delta=delta))

    def to_lists(self) -> dict[str, list[float]]:
        """The history as parallel lists (for a Flower ConfigRecord in ``context.state``)."""
        history = self.accountant.history
        return {
            "noise": [float(h[0]) for h in history],
            "rate": [float(h[1]) for h in history],
            "steps": [float(h[2]) for h in history],
        }

    @classmethod
    def from_lists(cls, lists: Mapping[str, Sequence[float]]) -> PrivacyAccount:
        """Rebuild an account from :meth:`to_lists`."""
        account = cls()
        for noise, rate, steps in zip(lists["noise"], lists["rate"], lists["steps"], strict=True):
            account.accountant.history.append((float(noise), float(rate), int(steps)))
        return account
