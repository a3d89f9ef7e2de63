"""A site's epsilon budget across runs: the ledger of everything its data has released.

A client's own accountants (``clients.state``) are kept per run key, which the server picks
afresh for every run: on their own they would let each new run on the same data start at
epsilon 0. The ledger is the site's: one file per site, partition and data source, under
the policy's ``ledger-dir`` (default ``<state root>/site-ledger``), named by a hash of

    <policy site> / <partition-id from the node config> / <data source>

where the data source is the resolved data root holding a ``text:``/``file:`` dataset (every
folder under one root shares one budget) or a built-in dataset's name. Nothing the server
sends, neither the run key nor the seed, enters the key.

Each noised release a reply carries (DP-SGD steps, local anchor and centroid releases,
relevance noise: whatever the client's accountants recorded for it) is composed into the
ledger's one RDP history (Opacus; composing different Gaussian mechanisms adds their RDP),
and the ledger's epsilon at the policy's ``budget-delta`` must stay within
``epsilon-budget``. The check comes before the reply leaves the site: a reply that would
exceed the budget is not sent (``PolicyRefusalError('epsilon-budget')``), and the ledger is
written atomically (``fedaso.durable``) before it is. A crash between the two over-counts,
never under-counts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from clients.policy import PolicyRefusalError, SitePolicy, data_path
from clients.state import state_root
from fedaso.durable import write_atomically
from fedaso.privacy import PrivacyAccount

Release = tuple[float, float, int]  # (noise multiplier, sample rate, steps), as Opacus keeps it
LEDGER_FOLDER = "site-ledger"


@dataclass(frozen=True)
class SiteLedger:
    """The ledger file of one site, partition and data source, and the budget it keeps."""

    path: Path
    epsilon_budget: float
    delta: float

    @classmethod
    def of(
        cls,
        policy: SitePolicy,
        node_config: Mapping[str, object],
        partition_id: int,
        dataset: str,
    ) -> SiteLedger:
        """The ledger a job on ``dataset`` charges (see the module docstring)."""
        folder = Path(policy.budget.ledger_dir or state_root(node_config) / LEDGER_FOLDER)
        key = f"{policy.site}\0{partition_id}\0{data_source(policy, dataset)}"
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        return cls(
            folder / f"{name}.json", policy.budget.epsilon_budget, policy.budget.budget_delta
        )

    def history(self) -> list[Release]:
        """Every release recorded so far."""
        if not self.path.exists():
            return []
        stored = json.loads(self.path.read_text())["history"]
        return [(float(noise), float(rate), int(steps)) for noise, rate, steps in stored]

    def spent(self, extra: list[Release] | None = None) -> float:
        """The epsilon of the recorded releases (and ``extra``) at the budget's delta."""
        account = PrivacyAccount()
        for noise, rate, steps in [*self.history(), *(extra or [])]:
            account.record(noise_multiplier=noise, sample_rate=rate, steps=steps)
        return account.epsilon(self.delta)

    def check_open(self) -> None:
        """Refuse a job outright when the budget is already spent."""
        if self.spent() >= self.epsilon_budget:
            raise PolicyRefusalError("epsilon-budget")

    def charge(self, releases: list[Release]) -> float:
        """Record ``releases`` if the budget holds them; return the epsilon spent after."""
        if not releases:
            return self.spent()
        after = self.spent(releases)
        if after > self.epsilon_budget:
            raise PolicyRefusalError("epsilon-budget")
        history = [list(release) for release in [*self.history(), *releases]]
        data = json.dumps({"history": history}).encode()

        def write(stream: BinaryIO) -> None:
            stream.write(data)

        write_atomically(self.path, write)
        return after


def data_source(policy: SitePolicy, dataset: str) -> str:
    """The data a ledger is kept for: the data root holding ``dataset``, or its name."""
    path = data_path(dataset)
    if path is None:
        return dataset.partition(":")[0]  # facts:a and facts:b are parts of one corpus
    resolved = Path(path).resolve()
    for root in policy.data.data_roots:
        if resolved.is_relative_to(Path(root).resolve()):
            return str(Path(root).resolve())
    return str(resolved)


def new_releases(
    before: Mapping[str, list[Release]], after: Mapping[str, list[Release]]
) -> list[Release]:
    """The releases recorded in ``after``'s histories since ``before``'s.

    An account merges a release into its last entry when the noise and rate repeat, so
    the last entry of ``before`` may have grown by some steps.
    """
    added: list[Release] = []
    for name, history in after.items():
        old = before.get(name, [])
        if old and history[len(old) - 1][2] > old[-1][2]:
            noise, rate, steps = history[len(old) - 1]
            added.append((noise, rate, steps - old[-1][2]))
        added.extend(history[len(old) :])
    return added
