"""Which arrays of a model travel, as the plain ``{name: np.ndarray}`` dicts messages carry.

``model_to_arrays`` and ``load_model_arrays`` convert between a torch model and the model
part of the payload; the payload itself (model plus the anchor set under a reserved key) is
defined in ``fedaso.wire``, which stays plain NumPy.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn


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
