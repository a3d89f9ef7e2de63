"""Conversions between Flower records and the plain NumPy payloads of ``fedaso.wire``.

Flower offers per-array conversions (``Array.from_numpy_ndarray``, ``Array.numpy``) and
name-less list ones (``ArrayRecord.from_numpy_ndarrays``); a payload is keyed by name, so the
record is built from Flower's per-array conversions in the payload's key order.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.app.typing import MetricRecordValues

from fedaso.wire import ARRAYS, CONFIG


def record_to_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Return ``{name: ndarray}`` in the record's key order."""
    return {name: array.numpy() for name, array in record.items()}


def arrays_to_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """Return an ArrayRecord holding ``arrays`` in their key order."""
    return ArrayRecord(
        array_dict={
            name: Array.from_numpy_ndarray(np.ascontiguousarray(a)) for name, a in arrays.items()
        }
    )


def metric_record(metrics: Mapping[str, MetricRecordValues]) -> MetricRecord:
    """A MetricRecord of ``metrics`` (any mapping of numbers or lists of numbers)."""
    values: dict[str, MetricRecordValues] = dict(metrics)
    return MetricRecord(values)


def read_instruction(content: RecordDict) -> tuple[ConfigRecord, dict[str, np.ndarray]]:
    """Return the ``config`` ConfigRecord and the decoded ``arrays`` of a server message.

    Raises
    ------
    ValueError
        If either record is missing or an array cannot be decoded.
    """
    if CONFIG not in content.config_records or ARRAYS not in content.array_records:
        raise ValueError(
            f"the message must carry an ArrayRecord {ARRAYS!r} and a ConfigRecord {CONFIG!r}, "
            f"got {sorted(content.array_records)} and {sorted(content.config_records)}"
        )
    try:
        arrays = record_to_arrays(content.array_records[ARRAYS])
    except Exception as error:  # whatever Flower raises for undecodable bytes
        raise ValueError(f"the message's arrays cannot be decoded: {error}") from None
    return content.config_records[CONFIG], arrays
