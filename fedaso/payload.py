"""The single array payload that carries a model and its anchor set (spec section 10).

Flower's reply check accepts exactly one ArrayRecord per reply, and its DP wrappers clip and
noise every array of it against the global arrays. So the anchor set travels *inside* the
model's array payload under a reserved key: wrappers then clip and noise model and anchors
together, and FedASO splits them again to aggregate the model by relevance and merge the
anchors per partition. The global model a user saves or evaluates never has the reserved key.

This module works on plain ``{name: np.ndarray}`` dicts so that the core stays free of Flower;
``clients`` and ``strategies`` convert to and from ``ArrayRecord`` at the boundary.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

RESERVED_PREFIX = "aso."  # no model parameter may start with this
ANCHORS_KEY = "aso.anchors"


def join_payload(
    model_arrays: Mapping[str, np.ndarray], anchors: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Return the model's arrays followed by the anchors under ``ANCHORS_KEY`` (if any)."""
    clash = [name for name in model_arrays if name.startswith(RESERVED_PREFIX)]
    if clash:
        raise ValueError(f"model array names {clash} use the reserved prefix {RESERVED_PREFIX!r}")
    payload = dict(model_arrays)
    if anchors is not None:
        payload[ANCHORS_KEY] = np.asarray(anchors, dtype=np.float32)
    return payload


def split_payload(
    payload: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Return ``(model_arrays, anchors)``; anchors is None when the payload has none."""
    model_arrays = {k: v for k, v in payload.items() if not k.startswith(RESERVED_PREFIX)}
    return model_arrays, payload.get(ANCHORS_KEY)


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
