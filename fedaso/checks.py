"""The checks every validated setting uses, with errors that name the run-config key.

It imports nothing of the project, so that any module (the ASO math included) can check
its arguments without pulling in the run-config schema.
"""

from __future__ import annotations

import math
from typing import TypeGuard


def require(condition: bool, key: str, value: object, allowed: str) -> None:
    """Unless ``condition``, raise ``ValueError`` naming ``key``, ``value`` and what is allowed."""
    if not condition:
        raise ValueError(f"{key}={value!r} is invalid: {allowed}")


def is_finite_number(value: object) -> TypeGuard[int | float]:
    """True for a real, finite int or float (bools are rejected: they are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_count(value: object, *, minimum: int) -> bool:
    """True for an int (not a bool) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
