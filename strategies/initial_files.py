"""Loading a run's starting point from files a previous run wrote (``model.pt``, ``anchors.npy``).

A run can continue from another run's final model (run-config ``initial-model``) and, under
FedASO, its final anchors (``initial-anchors``), e.g. to train on domain B after domain A
and measure forgetting. Every problem with such a file (missing, unreadable, wrong arrays or
shapes, non-finite values) raises a ``ValueError`` that names the run-config key and the
path, before any round starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from fedaso.models.arrays import load_model_arrays


def _existing_file(path: str, key: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"{key}={path!r} is invalid: no such file")
    return file


def load_model_file(path: str, model: nn.Module, *, key: str = "initial-model") -> None:
    """Load the state dict saved at ``path`` (``torch.save``) into ``model``.

    Raises
    ------
    ValueError
        Naming ``key`` and ``path`` if the file is missing, not a saved state dict, or its
        arrays do not match ``model`` (other names or shapes: another model size).
    """
    file = _existing_file(path, key)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file is the user's input error
        raise ValueError(f"{key}={path!r} is invalid: not a saved model ({error})") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{key}={path!r} is invalid: expected a saved state dict of tensors")
    arrays = {name: tensor.numpy() for name, tensor in state.items()}
    for name, array in arrays.items():
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise ValueError(f"{key}={path!r} is invalid: array {name!r} is not finite")
    try:
        load_model_arrays(model, arrays)
    except ValueError as error:
        raise ValueError(
            f"{key}={path!r} does not fit this run's model ({error}); use the model-width, "
            "model-layers, model-heads and seq-len of the run that wrote it"
        ) from None


def load_anchors_file(
    path: str, *, num_anchors: int, width: int, key: str = "initial-anchors"
) -> np.ndarray:
    """Return the anchors saved at ``path`` (``np.save``) as float32 ``(num_anchors, width)``.

    Raises
    ------
    ValueError
        Naming ``key`` and ``path`` if the file is missing, not a ``.npy`` array, of
        another shape, or holds non-finite values.
    """
    file = _existing_file(path, key)
    try:
        anchors = np.load(file, allow_pickle=False)
    except Exception as error:  # any unreadable file is the user's input error
        raise ValueError(f"{key}={path!r} is invalid: not a .npy array ({error})") from None
    if anchors.shape != (num_anchors, width):
        raise ValueError(
            f"{key}={path!r} holds shape {anchors.shape}, but this run needs "
            f"(num-anchors, model-width) = ({num_anchors}, {width})"
        )
    if not np.issubdtype(anchors.dtype, np.number) or not np.isfinite(anchors).all():
        raise ValueError(f"{key}={path!r} is invalid: anchors must be finite numbers")
    return anchors.astype(np.float32)
