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


def exchanged_names(model: nn.Module) -> list[str]:
    """State-dict names of the arrays that travel: the model's update, and nothing else.

    A model without frozen parameters sends its whole state dict (buffers included). When
    part of it is frozen, as the base under LoRA adapters, only the trainable parameters
    travel: the frozen part is identical on every node, and sending it would cost the
    whole model's bytes for nothing. A tensor tied under two names (an LM head that shares
    the token embedding) travels once.
    """
    state = model.state_dict(keep_vars=True)
    frozen = any(not p.requires_grad for p in model.parameters())
    names: list[str] = []
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for name, tensor in state.items():
        if frozen and not (isinstance(tensor, nn.Parameter) and tensor.requires_grad):
            continue
        storage = (tensor.data_ptr(), tuple(tensor.shape))
        if tensor.numel() and storage in seen:
            continue  # tied to a name already sent
        seen.add(storage)
        names.append(name)
    return names


def model_to_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """Return the exchanged arrays of ``model`` as NumPy copies (safe to send)."""
    state = model.state_dict()
    return {name: state[name].detach().cpu().numpy().copy() for name in exchanged_names(model)}


def load_model_arrays(model: nn.Module, model_arrays: Mapping[str, np.ndarray]) -> None:
    """Load exchanged arrays into ``model``; raise ``ValueError`` on other names or shapes."""
    expected = model.state_dict()
    names = exchanged_names(model)
    missing = sorted(set(names) - set(model_arrays))
    unexpected = sorted(set(model_arrays) - set(names))
    if missing or unexpected:
        raise ValueError(f"model arrays do not match: missing {missing}, unexpected {unexpected}")
    for name in names:
        if tuple(model_arrays[name].shape) != tuple(expected[name].shape):
            raise ValueError(
                f"array {name!r} has shape {tuple(model_arrays[name].shape)}, "
                f"expected {tuple(expected[name].shape)}"
            )
    model.load_state_dict(
        {
            name: torch.as_tensor(np.asarray(model_arrays[name]), dtype=expected[name].dtype)
            for name in names
        },
        strict=False,
    )
