"""Privacy accounting with Opacus' RDP accountant: the epsilon of a sequence of releases.

A release without noise has infinite epsilon, never zero. Every epsilon FedASO reports is
computed here (docs/PRIVACY.md says what is counted, where and when).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager


@contextmanager
def opacus_import() -> Iterator[None]:
    """Import Opacus inside this block without its logging set-up.

    ``opacus/utils/module_utils.py`` calls ``logging.basicConfig`` when imported, which gives
    the root logger a handler: every Flower log line in the process is then printed twice.
    Handlers the block added to the root logger are removed again.
    """
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)


class PrivacyAccount:
    """Cumulative privacy loss of a sequence of Gaussian releases (Opacus' RDP accountant).

    Each release is recorded with its noise multiplier (noise std / sensitivity) and its
    sampling rate (1.0 when the observer knows who took part). A release with noise
    multiplier 0 makes epsilon infinite.
    """

    def __init__(self) -> None:
        # Imported here: Opacus takes longer to import than torch, and every process that
        # reads a run-config imports this module; only accounting processes need Opacus.
        with opacus_import():
            from opacus.accountants import RDPAccountant

        self.accountant = RDPAccountant()

    def record(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Compose ``steps`` releases of noise multiplier ``noise_multiplier``."""
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate={sample_rate} must be in (0, 1]")
        if steps < 1:
            return
        history = self.accountant.history
        last = history[-1] if history else None
        if last is not None and last[:2] == (noise_multiplier, sample_rate):
            history[-1] = (noise_multiplier, sample_rate, last[2] + steps)
        else:
            history.append((noise_multiplier, sample_rate, steps))

    @property
    def releases(self) -> int:
        """Number of releases recorded."""
        return sum(steps for _, _, steps in self.accountant.history)

    def epsilon(self, delta: float) -> float:
        """Epsilon at ``delta`` after every recorded release; 0.0 only if none was recorded."""
        if not self.accountant.history:
            return 0.0
        if any(sigma == 0 for sigma, _, _ in self.accountant.history):
            return math.inf
        with warnings.catch_warnings():  # Opacus warns when the best order is its smallest
            warnings.simplefilter("ignore", UserWarning)
            return float(self.accountant.get_epsilon(delta=delta))

    def to_lists(self) -> dict[str, list[float]]:
        """The history as parallel lists (for a Flower ConfigRecord in ``context.state``)."""
        history = self.accountant.history
        return {
            "noise": [float(h[0]) for h in history],
            "rate": [float(h[1]) for h in history],
            "steps": [float(h[2]) for h in history],
        }

    @classmethod
    def from_lists(cls, lists: Mapping[str, Sequence[float]]) -> PrivacyAccount:
        """Rebuild an account from :meth:`to_lists`."""
        account = cls()
        for noise, rate, steps in zip(lists["noise"], lists["rate"], lists["steps"], strict=True):
            account.accountant.history.append((float(noise), float(rate), int(steps)))
        return account
