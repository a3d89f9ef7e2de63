"""The run-config schema: one section per concern, each owning its keys and checks.

``python -m fedaso.config --write`` regenerates pyproject's ``[tool.flwr.app.config]`` and
docs/CONFIG.md from the sections; ``--check`` fails when they have drifted.
"""

from fedaso.checks import is_finite_number, require
from fedaso.config.aso import ASOConfig
from fedaso.config.data import DataSettings
from fedaso.config.federation import FederationConfig
from fedaso.config.model import ModelConfig
from fedaso.config.outputs import OutputsConfig
from fedaso.config.privacy import PrivacyConfig
from fedaso.config.reliability import ReliabilityConfig
from fedaso.config.run import (
    SECTIONS,
    RunConfig,
    client_keys,
    run_config_keys,
    server_only_keys,
)
from fedaso.config.training import TrainConfig

__all__ = [
    "SECTIONS",
    "ASOConfig",
    "DataSettings",
    "FederationConfig",
    "ModelConfig",
    "OutputsConfig",
    "PrivacyConfig",
    "ReliabilityConfig",
    "RunConfig",
    "TrainConfig",
    "client_keys",
    "is_finite_number",
    "require",
    "run_config_keys",
    "server_only_keys",
]
