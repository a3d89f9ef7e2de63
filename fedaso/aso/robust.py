"""Robust aggregation: bound what one reply can do to a round, whatever it claims.

Two defences, both pure NumPy so that the strategy and the tests share them:

- **Update-norm bounds.** A client whose update ``theta_k - theta_global`` is absurdly long
  is either broken (an exploding optimizer, a scaling bug) or hostile; averaged in, it would
  drag the global model anywhere. The relative bound needs no tuning per model: a reply is
  an outlier when its norm exceeds ``ratio`` times the median norm of the round. The median
  of two replies is their mean, so the relative bound only catches an outlier among three or
  more replies; the absolute bound (``limit``) also holds with one or two.
- **A cap on any one reply's share.** :func:`capped_shares` turns a round's aggregation
  weights into shares of the round of which none exceeds ``max_share``: the largest weights
  are cut down to a common level and the others keep their proportions, computed exactly
  (no iterate-until-it-holds loop). When there are too few replies for every one to stay
  under the cap (``n * max_share < 1``), each gets exactly the cap and the rest of the round
  stays with the previous global state, so that no single reply can take a round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedaso.checks import is_finite_number, require

# Counts beyond 2^53 are not exact floats, and a sum of a few near 1e308 overflows.
MAX_REPORTED_COUNT = 2**53


@dataclass(frozen=True)
class ReplyBounds:
    """What the server allows one training reply; fields are run-config keys (``a_b``: ``a-b``).

    A run takes them from its reliability section (``ReliabilityConfig.reply_bounds``);
    :meth:`off` allows everything, for a strategy built without bounds.
    """

    max_update_norm_ratio: float  # drop norms > this x the round's median; 0 off
    max_update_norm: float  # drop norms above this; 0 off
    max_client_share: float  # no reply holds more of a round; 1 = no cap
    max_reported_count: int  # num-examples / num-tokens capped here

    def __post_init__(self) -> None:
        require(
            is_finite_number(self.max_update_norm_ratio)
            and (self.max_update_norm_ratio == 0 or self.max_update_norm_ratio > 1),
            "max-update-norm-ratio",
            self.max_update_norm_ratio,
            "must be 0 (off) or a finite number > 1 (a multiple of the round's median norm)",
        )
        require(
            is_finite_number(self.max_update_norm) and self.max_update_norm >= 0,
            "max-update-norm",
            self.max_update_norm,
            "must be 0 (off) or a finite number > 0 (a bound on an update's L2 norm)",
        )
        require(
            is_finite_number(self.max_client_share) and 0 < self.max_client_share <= 1,
            "max-client-share",
            self.max_client_share,
            "must be in (0, 1] (1 = no cap)",
        )
        require(
            isinstance(self.max_reported_count, int)
            and not isinstance(self.max_reported_count, bool)
            and 1 <= self.max_reported_count <= MAX_REPORTED_COUNT,
            "max-reported-count",
            self.max_reported_count,
            f"must be an integer in [1, {MAX_REPORTED_COUNT}] (2^53: exact as a float)",
        )

    @classmethod
    def off(cls, **bounds: float) -> ReplyBounds:
        """No bound at all, except the ones given (e.g. ``max_update_norm_ratio=10.0``)."""
        unbounded: dict[str, float] = {
            "max_update_norm_ratio": 0.0,
            "max_update_norm": 0.0,
            "max_client_share": 1.0,
            "max_reported_count": MAX_REPORTED_COUNT,
        }
        return cls(**(unbounded | bounds))  # type: ignore[arg-type]


def update_norm(arrays: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> float:
    """Return the L2 norm of ``arrays - reference`` over all keys of ``reference``.

    Computed in float64, so float32 values near their maximum do not overflow when squared.
    """
    total = 0.0
    for name, ref in reference.items():
        delta = np.asarray(arrays[name], dtype=np.float64) - np.asarray(ref, dtype=np.float64)
        total += float(np.dot(delta.ravel(), delta.ravel()))
    return float(np.sqrt(total))


def norm_outliers(norms: Sequence[float], ratio: float, limit: float = 0.0) -> list[bool]:
    """Return, per norm, whether it is above ``limit`` or ``ratio`` times the median of ``norms``.

    ``ratio == 0`` disables the relative bound, ``limit == 0`` the absolute one. A
    non-finite norm is always an outlier. When the median is 0 (most replies did not
    move), the relative bound flags no finite norm: there is no scale to compare against.
    """
    finite = [n for n in norms if np.isfinite(n)]
    relative = ratio * float(np.median(finite)) if ratio > 0 and finite else 0.0
    return [
        not np.isfinite(n) or (relative > 0 and n > relative) or (limit > 0 and n > limit)
        for n in norms
    ]


def capped_shares(weights: Sequence[float], max_share: float) -> tuple[np.ndarray, float]:
    """Each weight's share of the round, none above ``max_share``, and the share left over.

    Without a cap the shares are ``w_k / sum(w)``. With one, they are
    ``min(max_share, lam * w_k)``, where ``lam`` makes them sum to 1: the ``j`` largest
    weights are cut to ``max_share`` each and the rest share ``1 - j * max_share`` in
    proportion to their weights, for the smallest ``j`` at which the largest uncut share
    fits under the cap. That ``j`` is found in one pass over the sorted weights, so the
    result is exact. With fewer than ``1 / max_share`` weights no such ``j`` exists: every
    share is ``max_share`` and the leftover ``1 - n * max_share`` is for the caller's
    previous state. A cap of 1 changes nothing.

    Parameters
    ----------
    weights : sequence of float
        Finite, positive aggregation weights (at least one).
    max_share : float
        The cap, in (0, 1].

    Returns
    -------
    shares : np.ndarray
        ``(n,)`` float64 shares in the order of ``weights``, each ``<= max_share``.
    leftover : float
        ``1 - sum(shares)`` when the weights are too few to carry the round, else 0.

    Raises
    ------
    ValueError
        If ``max_share`` is not in (0, 1], or a weight is not finite and positive.
    """
    if not 0.0 < max_share <= 1.0:
        raise ValueError(f"max_share={max_share} must be in (0, 1]")
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or not (np.isfinite(w).all() and (w > 0).all()):
        raise ValueError(f"weights {list(weights)} must be one or more finite numbers > 0")
    # Scaled by the largest, weights near the float maximum cannot overflow their sum; the
    # floor keeps weights over 1e308 times smaller than the largest from reaching 0.
    w = np.maximum(w / w.max(), np.finfo(np.float64).tiny)
    if w.size * max_share < 1.0:
        return np.full(w.size, max_share), 1.0 - w.size * max_share
    order = np.argsort(-w, kind="stable")  # largest first
    descending = w[order]
    rest = np.cumsum(descending[::-1])[::-1]  # rest[j]: sum of all but the j largest
    for cut in range(w.size):
        lam = (1.0 - cut * max_share) / rest[cut]
        # Cutting all but the smallest always fits when n * max_share >= 1 (it leaves that
        # one 1 - (n - 1) * max_share); the tolerance only absorbs rounding at a boundary.
        if cut == w.size - 1 or lam * descending[cut] <= max_share * (1.0 + 1e-12):
            shares = np.minimum(max_share, lam * w)
            shares[order[:cut]] = max_share
            return shares, 0.0
    raise AssertionError("unreachable: the loop returns at its last cut")
