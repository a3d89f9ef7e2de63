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

from fedaso.config import RunConfig
from fedaso.config.training import resolve_device
from fedaso.data import CentralData
from fedaso.models.arrays import load_model_arrays
from strategies.anchor_init import initial_anchors


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


def embedding_width(model: torch.nn.Module) -> int:
    """The width ``d`` of a reference model's embedding point."""
    width = getattr(model, "embedding_width", None)
    if not isinstance(width, int):
        raise ValueError(f"{type(model).__name__} does not state its embedding_width")
    return width


def load_initial_files(run: RunConfig) -> tuple[torch.nn.Module, np.ndarray | None]:
    """The model, loaded from ``initial-model`` if set, and the ``initial-anchors`` if set.

    Raises ``ValueError`` naming the key and path for a missing or unfit file.
    """
    model = run.build_model()
    if run.federation.initial_model:
        load_model_file(run.federation.initial_model, model)
    anchors = None
    if run.federation.initial_anchors:
        anchors = load_anchors_file(
            run.federation.initial_anchors,
            num_anchors=run.aso.num_anchors,
            width=embedding_width(model),
        )
    return model, anchors


def starting_point(
    run: RunConfig, central: CentralData
) -> tuple[torch.nn.Module, np.ndarray | None]:
    """The initial global model and (FedASO) anchors: fresh, or loaded from a previous run.

    FedASO's anchors come from ``initial-anchors`` or else from k-means under the (possibly
    loaded) model; the baselines get none, nor does FedASO where nothing reads them
    (``ASOConfig.uses_anchors``).
    """
    model, anchors = load_initial_files(run)
    if (
        run.federation.strategy == "fedaso"
        and run.aso.uses_anchors
        and anchors is None
        and run.privacy.anchor_init == "server"
    ):
        anchors = initial_anchors(model.to(resolve_device(run.training.device)), central, run)
    return model, anchors
