"""Conversions between Flower records and the plain NumPy payloads of ``fedaso.payload``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord


def record_to_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Return ``{name: ndarray}`` in the record's key order."""
    return {name: array.numpy() for name, array in record.items()}


def arrays_to_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """Return an ArrayRecord holding ``arrays`` in their key order."""
    return ArrayRecord({name: Array(np.ascontiguousarray(a)) for name, a in arrays.items()})
