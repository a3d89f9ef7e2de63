"""Conversions between Flower records and the plain NumPy payloads of ``fedaso.payload``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict


def record_to_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Return ``{name: ndarray}`` in the record's key order."""
    return {name: array.numpy() for name, array in record.items()}


def arrays_to_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """Return an ArrayRecord holding ``arrays`` in their key order."""
    return ArrayRecord({name: Array(np.ascontiguousarray(a)) for name, a in arrays.items()})


def read_instruction(content: RecordDict) -> tuple[ConfigRecord, dict[str, np.ndarray]]:
    """Return the ``config`` ConfigRecord and the decoded ``arrays`` of a server message.

    Raises
    ------
    ValueError
        If either record is missing or an array cannot be decoded.
    """
    if "config" not in content.config_records or "arrays" not in content.array_records:
        raise ValueError(
            "the message must carry an ArrayRecord 'arrays' and a ConfigRecord 'config', got "
            f"{sorted(content.array_records)} and {sorted(content.config_records)}"
        )
    try:
        arrays = record_to_arrays(content.array_records["arrays"])
    except Exception as error:  # whatever Flower raises for undecodable bytes
        raise ValueError(f"the message's arrays cannot be decoded: {error}") from None
    return content.config_records["config"], arrays
