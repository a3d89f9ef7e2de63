"""Gaussian mechanisms of what leaves a client: anchor releases, centroids, relevance.

docs/SPEC.md section 7, on plain NumPy:

- **Local anchor release** (``anchor-dp = local``). A client clips its anchor change
  ``Delta_k = A_k_after - A_global_received`` to Frobenius norm ``C`` and adds
  ``N(0, (2 sigma C)^2)`` to every entry before the report leaves the client. The server
  sees every report, so the neighbouring report is a *replaced* one, not a missing one: two
  clipped changes differ by up to ``2C`` (replace-one sensitivity), and noise ``2 sigma C``
  keeps ``sigma`` the noise multiplier that the accountant is told.
- **Central anchor release** (``anchor-dp = central``, DP-FedAvg, McMahan et al. 2018). The
  trusted server clips every fresh ``Delta_k``, sums them, adds ``N(0, (sigma C)^2)`` once and
  divides by the fixed expected count ``n``: each client moves the mean by at most ``C / n``
  and the noise has standard deviation ``sigma C / n``.
- **Federated anchor initialization**: a client's k-means centroids ``Z`` (clipped to
  ``C_init``) and its cluster fractions ``f`` (``||f||_2 <= 1``) form one vector
  ``(Z, C_init f)``. The trusted server (central mode) noises it with add/remove
  sensitivity, its norm, at most ``sqrt(2) C_init``; a client (local mode) with replace-one
  sensitivity, the distance between two such vectors, at most ``sqrt(6) C_init``
  (:func:`centroid_sensitivity`). Either way one Gaussian mechanism of multiplier ``sigma``.
- **Relevance**: a client's mean relevance in [0, 1] plus ``N(0, noise^2)``.

Noise must come from fresh entropy (``fresh_rng``), never from the run seed: anyone who knows
a seeded generator's seed can regenerate the noise and subtract it. The privacy loss of these
releases is accounted in ``fedaso.privacy.accounting``.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence

import numpy as np

RELEVANCE_FLOOR = 1e-3  # a noisy relevance weight is clipped to [floor, 1]: 0 would drop a reply


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
    """Clip ``delta`` to ``clip`` and add ``N(0, (noise_multiplier * 2 clip)^2)`` entrywise.

    Replace-one sensitivity ``2 clip``: the server sees each report, so two data sets of
    one client are neighbours through the two reports they would give.
    """
    clipped = clip_frobenius(delta, clip)
    return clipped + gaussian_noise(clipped.shape, noise_multiplier * 2.0 * clip, rng)


def local_release_norm_bound(*, clip: float, noise_multiplier: float, size: int) -> float:
    """A Frobenius norm that an honest :func:`local_release` of ``size`` entries never exceeds.

    The clipped change has norm at most ``clip``; the noise norm is ``std`` times a chi
    variable with ``size`` degrees of freedom, a 1-Lipschitz function of a Gaussian, so it
    exceeds ``std (sqrt(size) + t)`` with probability at most ``exp(-t^2 / 2)``
    (Gaussian concentration; Boucheron, Lugosi and Massart, 2013, Thm. 5.6). ``t = 8``
    puts that at 1.3e-14: the server can drop longer reports as lies, never honest ones.
    """
    std = noise_multiplier * 2.0 * clip
    return clip + std * (math.sqrt(size) + 8.0)


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
    total = np.sum([clip_frobenius(delta, clip) for delta in deltas], axis=0)
    total = total + gaussian_noise(total.shape, noise_multiplier * clip, rng)
    return total / expected_count


def centroid_sensitivity(clip: float, *, replace_one: bool) -> float:
    """L2 sensitivity of a k-means answer ``(clip(Z), clip f)``, ``f`` on the simplex.

    Add/remove (the trusted server noises the answer): the vector's norm, at most
    ``sqrt(C^2 + C^2 ||f||^2) <= sqrt(2) C``. Replace-one (the client noises it, and the
    server sees every answer): two answers differ by ``||Z - Z'|| <= 2C`` and
    ``||f - f'|| <= sqrt(2)``, so by at most ``sqrt(4 C^2 + 2 C^2) = sqrt(6) C``.
    """
    return math.sqrt(6.0 if replace_one else 2.0) * clip


def release_centroids(
    centroids: np.ndarray,
    fractions: np.ndarray,
    *,
    clip: float,
    noise_multiplier: float,
    replace_one: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Privatize a client's k-means centroids ``(k, d)`` and cluster fractions ``(k,)``.

    The vector ``(clip(Z), C f)`` gets noise of standard deviation ``sigma`` times its
    sensitivity (:func:`centroid_sensitivity`: ``replace_one`` for a client's own release)
    per entry, so one release is a Gaussian mechanism of noise multiplier ``sigma``.
    Returns the noisy centroids and the noisy fractions.
    """
    if not np.isclose(fractions.sum(), 1.0) or (fractions < 0).any():
        raise ValueError("cluster fractions must be non-negative and sum to 1")
    std = noise_multiplier * centroid_sensitivity(clip, replace_one=replace_one)
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
