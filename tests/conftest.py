"""Test-session settings shared by every test module."""

import os
import tempfile

# Partition rows are cached on disk across processes (fedaso.data); the tests use a fresh
# cache of their own, so that they neither read nor write the user's ~/.cache/fedaso.
os.environ.setdefault("FEDASO_CACHE_DIR", tempfile.mkdtemp(prefix="fedaso-test-cache-"))
# Clients keep their per-partition state on disk (clients.state); the tests' go to a fresh
# directory too (simulated clients inherit the variable).
os.environ.setdefault("FEDASO_CLIENT_STATE_DIR", tempfile.mkdtemp(prefix="fedaso-test-state-"))

# Tests never reach a model hub: Hugging Face models are built from a config, locally.
os.environ["HF_HUB_OFFLINE"] = "1"
