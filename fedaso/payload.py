"""A model's arrays as the plain ``{name: np.ndarray}`` dicts that messages carry.

``model_to_arrays`` and ``load_model_arrays`` convert between a torch model and the model
part of the payload; the payload itself (model plus the anchor set under a reserved key) is
defined in ``fedaso.wire``, whose names are re-exported here for older imports.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from fedaso.wire import ANCHORS_KEY, RESERVED_PREFIX, join_payload, split_payload

__all__ = [
    "ANCHORS_KEY",
    "RESERVED_PREFIX",
    "join_payload",
    "load_model_arrays",
    "model_to_arrays",
    "split_payload",
]


def model_to_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """Return the model's state dict as NumPy arrays (copies, safe to send)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_model_arrays(model: nn.Module, model_arrays: Mapping[str, np.ndarray]) -> None:
    """Load NumPy arrays into ``model``; raise ``ValueError`` on missing keys or bad shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(model_arrays))
    unexpected = sorted(set(model_arrays) - set(expected))
    if missing or unexpected:
        raise ValueError(f"model arrays do not match: missing {missing}, unexpected {unexpected}")
    for name, tensor in expected.items():
        if tuple(model_arrays[name].shape) != tuple(tensor.shape):
            raise ValueError(
                f"array {name!r} has shape {tuple(model_arrays[name].shape)}, "
                f"expected {tuple(tensor.shape)}"
            )
    model.load_state_dict(
        {
            k: torch.as_tensor(np.asarray(v), dtype=expected[k].dtype)
            for k, v in model_arrays.items()
        }
    )
