"""Fuzzing at scale (not part of CI): every property of ``tests/unit/test_fuzz.py``, 10,000 times.

    python -m tests.fuzz_at_scale [EXAMPLES]

runs the strategy's aggregation (``aggregate_train``, ``aggregate_evaluate``, and lying
but well-formed replies against the share cap and the partition binding), the
ClientApp's message parsing, the run-config parsers and the site policy's check
(``clients.policy``) with ``EXAMPLES`` hostile inputs each (default 10,000; hypothesis,
derandomized so that a run can be repeated), and prints hypothesis' statistics: how many
inputs each property was tried on and how long it took.
docs/RELIABILITY.md records the last run.
"""

from __future__ import annotations

import os
import sys

import pytest

DEFAULT_EXAMPLES = 10_000


def main(argv: list[str]) -> int:
    """Run tests/unit/test_fuzz.py with ``argv[0]`` (or 10,000) examples per property."""
    examples = int(argv[0]) if argv else DEFAULT_EXAMPLES
    if examples < 1:
        raise ValueError(f"EXAMPLES={examples} must be an integer >= 1")
    os.environ["FEDASO_FUZZ_EXAMPLES"] = str(examples)
    return int(
        pytest.main(
            [
                "tests/unit/test_fuzz.py",
                "-q",
                "-p",
                "no:cacheprovider",
                "--hypothesis-show-statistics",
            ]
        )
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
