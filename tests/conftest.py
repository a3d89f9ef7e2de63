"""Test-session settings shared by every test module."""

import os
import tempfile

# Partition rows are cached on disk across processes (fedaso.data); the tests use a fresh
# cache of their own, so that they neither read nor write the user's ~/.cache/fedaso.
os.environ.setdefault("FEDASO_CACHE_DIR", tempfile.mkdtemp(prefix="fedaso-test-cache-"))

# Tests never reach a model hub: Hugging Face models are built from a config, locally.
os.environ["HF_HUB_OFFLINE"] = "1"
