"""Update-norm bound: find replies whose update is absurdly large compared with the round's.

A client whose update ``theta_k - theta_global`` is many times longer than its peers' is
either broken (an exploding optimizer, a scaling bug) or hostile; averaged in, it would
drag the global model anywhere. The bound is relative, so it needs no tuning per model:
a reply is an outlier when its norm exceeds ``ratio`` times the median norm of the round.

The median of two replies is their mean, so with fewer than three replies an outlier can
only be caught when ``ratio < 2``; the bound is meant for rounds of three or more clients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def update_norm(arrays: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> float:
    """Return the L2 norm of ``arrays - reference`` over all keys of ``reference``.

    Computed in float64, so float32 values near their maximum do not overflow when squared.
    """
    total = 0.0
    for name, ref in reference.items():
        delta = np.asarray(arrays[name], dtype=np.float64) - np.asarray(ref, dtype=np.float64)
        total += float(np.dot(delta.ravel(), delta.ravel()))
    return float(np.sqrt(total))


def norm_outliers(norms: Sequence[float], ratio: float) -> list[bool]:
    """Return, per norm, whether it exceeds ``ratio`` times the median of ``norms``.

    ``ratio == 0`` disables the bound. A non-finite norm is always an outlier. When the
    median is 0 (most replies did not move), no finite norm is flagged: there is no scale
    to compare against.
    """
    finite = [n for n in norms if np.isfinite(n)]
    if ratio == 0 or not finite:
        return [not np.isfinite(n) for n in norms]
    bound = ratio * float(np.median(finite))
    return [not np.isfinite(n) or (bound > 0 and n > bound) for n in norms]
