"""Test-session settings and the tiny run-config shared by every test module."""

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pytest

# Partition rows are cached on disk across processes (fedaso.data); the tests use a fresh
# cache of their own, so that they neither read nor write the user's ~/.cache/fedaso.
os.environ.setdefault("FEDASO_CACHE_DIR", tempfile.mkdtemp(prefix="fedaso-test-cache-"))
# Clients keep their per-partition state on disk (clients.state); the tests' go to a fresh
# directory too (simulated clients inherit the variable).
os.environ.setdefault("FEDASO_CLIENT_STATE_DIR", tempfile.mkdtemp(prefix="fedaso-test-state-"))

# Tests never reach a model hub: Hugging Face models are built from a config, locally.
os.environ["HF_HUB_OFFLINE"] = "1"

# Imported after the variables above: fedaso reads them at import.
from fedaso.config import RunConfig

# The smallest run that still trains and scores relevance: a 32-wide TinyLM with 2 heads,
# 16 anchors, 32-token windows of a 12-entity facts corpus (kebab-case run-config keys).
TINY_SETTINGS: Mapping[str, Any] = MappingProxyType(
    {"model-width": 32, "model-heads": 2, "num-anchors": 16, "seq-len": 32, "facts-entities": 12}
)


@dataclass(frozen=True)
class TinyRun:
    """The tiny run-config in each form a test hands it on: RunConfig, flags, ``flwr run``."""

    settings: Mapping[str, Any] = field(default_factory=lambda: TINY_SETTINGS)

    def with_keys(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """The settings with ``changes`` (snake_case or kebab-case keys) on top."""
        return {**self.settings, **{k.replace("_", "-"): v for k, v in changes.items()}}

    def config(self, **changes: Any) -> RunConfig:
        """The tiny ``RunConfig`` with ``changes`` (snake_case field names)."""
        return RunConfig.from_flat(self.with_keys(changes))

    def flags(self, **changes: Any) -> list[str]:
        """``--set=KEY=VALUE`` flags of the simulation commands."""
        return [f"--set={key}={value}" for key, value in self.with_keys(changes).items()]

    def run_config(self, **changes: Any) -> str:
        """The ``--run-config`` overrides of ``flwr run``: ``KEY=VALUE``, strings quoted."""
        pairs = self.with_keys(changes).items()
        return " ".join(f"{k}='{v}'" if isinstance(v, str) else f"{k}={v}" for k, v in pairs)


@pytest.fixture(scope="session")
def tiny() -> TinyRun:
    """The tiny run-config every federation test (and many others) starts from."""
    return TinyRun()
