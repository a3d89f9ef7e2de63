"""A user's own ``nn.Module`` as a FedASO model: ``model = py:MODULE:FACTORY``.

``FACTORY`` is a callable in the importable module ``MODULE``. It receives the run's
:class:`fedaso.config.RunConfig` and returns ``(model, embedding_point)``: the model maps
a batch of inputs to logits (``(B, T) -> (B, T, V)`` for a language model on byte-level text,
``(B, F) -> (B, C)`` for a classifier), and ``embedding_point`` is the submodule whose output
is the per-token embedding that ASO scores (docs/SPEC.md section 1), for example the norm that feeds
the head. ``custom_models/user_model.py`` is a worked example.

The embedding width ``d`` is read off one forward pass of a probe input, so the factory
need not state it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fedaso.config.model import PY_PREFIX


class UserModel(nn.Module):
    """A user's model and its embedding point, in the interface the trainer expects."""

    def __init__(
        self, net: nn.Module, embedding_point: nn.Module, *, probe: torch.Tensor, source: str
    ) -> None:
        super().__init__()
        if not any(module is embedding_point for module in net.modules()):
            raise ValueError(
                f"model={source!r}: the factory's embedding point is not a submodule of its model"
            )
        self.net = net
        self._embedding_point = [embedding_point]  # a list: not registered twice
        self._width = _probe_width(net, embedding_point, probe, source)
        self.max_length = getattr(net, "max_length", None)

    @property
    def embedding_point(self) -> nn.Module:
        """The user's embedding-point module."""
        return self._embedding_point[0]

    @property
    def embedding_width(self) -> int:
        """Width d of the embedding point's output."""
        return self._width

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)


def load_factory(model: str) -> Callable[[Any], Any]:
    """Import ``FACTORY`` of ``py:MODULE:FACTORY``; raise ``ValueError`` naming ``model``."""
    module_name, _, factory_name = model.removeprefix(PY_PREFIX).partition(":")
    if not module_name or not factory_name:
        raise ValueError(f"model={model!r} is invalid: use py:MODULE:FACTORY")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"model={model!r}: cannot import {module_name!r} ({error})") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"model={model!r}: {module_name} has no callable {factory_name!r}")
    return factory


def build_user_model(model: str, run_config: Any, *, probe: torch.Tensor) -> UserModel:
    """Call the factory of ``model`` with ``run_config`` and wrap what it returns."""
    try:
        built = load_factory(model)(run_config)
    except ValueError:
        raise
    except Exception as error:  # the user's code failed: say whose, keep the traceback
        raise ValueError(f"model={model!r}: the factory raised {error!r}") from error
    if not (isinstance(built, tuple) and len(built) == 2):
        raise ValueError(f"model={model!r}: the factory must return (model, embedding_point)")
    net, embedding_point = built
    if not (isinstance(net, nn.Module) and isinstance(embedding_point, nn.Module)):
        raise ValueError(f"model={model!r}: the factory must return two nn.Module objects")
    return UserModel(net, embedding_point, probe=probe, source=model)


@torch.no_grad()
def _probe_width(
    net: nn.Module, embedding_point: nn.Module, probe: torch.Tensor, source: str
) -> int:
    outputs: list[torch.Tensor] = []
    handle = embedding_point.register_forward_hook(lambda m, i, o: outputs.append(o))
    was_training = net.training
    try:
        net.eval()
        net(probe)
    finally:
        handle.remove()
        net.train(was_training)
    if not outputs or not isinstance(outputs[0], torch.Tensor):
        raise ValueError(f"model={source!r}: the embedding point produced no tensor output")
    return int(outputs[0].shape[-1])
