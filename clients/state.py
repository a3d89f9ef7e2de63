"""A partition's state across rounds, kept on its node's disk so that it survives a resume.

A client keeps, per run and partition, its own anchor set (docs/SPEC.md section 5) and one Opacus
accountant history per privacy mechanism (``clients.release``). Flower's ``Context.state``
lives as long as one Flower run, and a resumed FedASO run is a new Flower run: the state
would restart empty, the client would report too small an epsilon and train from another
anchor set than an uninterrupted run. So the state lives on disk instead, under

    <root>/<run-key>/partition-<K>/round-<R>.npz

``run-key`` is sent by the server with every message and kept in its checkpoint, so a
resumed run finds the same directory. ``root`` is the node config's ``state-dir``, else
``$FEDASO_CLIENT_STATE_DIR``, else ``$XDG_CACHE_HOME/fedaso/client-state`` (or
``~/.cache/fedaso/client-state``).

Each file is the state *after* round ``R``. Round ``R`` starts from the anchors of the latest
file before ``R`` and from the accountant histories of the latest file of all: a round that
is replayed after a crash then trains as it did the first time, but a release it made before
the crash is never forgotten (an epsilon may over-count, never under-count). Files are
written atomically; the two most recent are kept.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedaso.durable import write_atomically
from fedaso.privacy import PrivacyAccount

STATE_DIR_KEY = "state-dir"  # node config key of the state root
STATE_DIR_VARIABLE = "FEDASO_CLIENT_STATE_DIR"
KEEP_ROUNDS = 2  # snapshots kept per partition
SNAPSHOT = re.compile(r"round-(\d+)\.npz")
SAFE_KEY = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def state_root(node_config: Mapping[str, object]) -> Path:
    """Where this node keeps client state (see the module docstring)."""
    configured = node_config.get(STATE_DIR_KEY) or os.environ.get(STATE_DIR_VARIABLE)
    if configured:
        return Path(str(configured)).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "fedaso" / "client-state"


def partition_directory(root: Path, run_key: str, partition_id: int) -> Path:
    """The state directory of one partition in one run; ``run_key`` must be a plain name."""
    if not SAFE_KEY.fullmatch(run_key) or run_key in (".", ".."):
        raise ValueError(f"run-key={run_key!r} is invalid: must be 1-128 of [A-Za-z0-9_.-]")
    return root / run_key / f"partition-{partition_id}"


@dataclass
class PartitionState:
    """One partition's anchors and accountant histories, as of the start of a round."""

    directory: Path
    anchors: np.ndarray | None = None  # the partition's own set; None before its first round
    accounts: dict[str, PrivacyAccount] = field(default_factory=dict)

    def account(self, name: str) -> PrivacyAccount:
        """The history of mechanism ``name`` (created empty on first use)."""
        return self.accounts.setdefault(name, PrivacyAccount())

    def save(self, server_round: int) -> Path:
        """Write the state after ``server_round``; drop later (replayed) and older files."""
        self.directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        if self.anchors is not None:
            arrays["anchors"] = np.asarray(self.anchors)
        for name, account in self.accounts.items():
            for column, values in account.to_lists().items():
                arrays[f"account.{name}.{column}"] = np.asarray(values, dtype=np.float64)
        target = self.directory / f"round-{server_round:06d}.npz"
        write_atomically(target, lambda stream: np.savez(stream, allow_pickle=False, **arrays))
        rounds = snapshot_rounds(self.directory)
        kept = [r for r in rounds if r <= server_round][-KEEP_ROUNDS:]
        for stale in set(rounds) - set(kept):
            (self.directory / f"round-{stale:06d}.npz").unlink(missing_ok=True)
        return target


def snapshot_rounds(directory: Path) -> list[int]:
    """The rounds that have a state file in ``directory``, ascending."""
    if not directory.is_dir():
        return []
    found = (SNAPSHOT.fullmatch(path.name) for path in directory.iterdir())
    return sorted(int(match.group(1)) for match in found if match)


def load_state(directory: Path, server_round: int) -> PartitionState:
    """The state a round ``server_round`` starts from (see the module docstring)."""
    rounds = snapshot_rounds(directory)
    state = PartitionState(directory)
    before = [r for r in rounds if r < server_round]
    if before:
        state.anchors = read_snapshot(directory, before[-1]).get("anchors")
    if rounds:
        state.accounts = read_accounts(read_snapshot(directory, rounds[-1]))
    return state


def read_snapshot(directory: Path, server_round: int) -> dict[str, np.ndarray]:
    """The arrays of one state file."""
    with np.load(directory / f"round-{server_round:06d}.npz", allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def read_accounts(arrays: Mapping[str, np.ndarray]) -> dict[str, PrivacyAccount]:
    """Rebuild the accountant histories stored as ``account.<name>.<column>`` arrays."""
    names = {key.split(".")[1] for key in arrays if key.startswith("account.")}
    return {
        name: PrivacyAccount.from_lists(
            {
                column: arrays[f"account.{name}.{column}"].tolist()
                for column in ("noise", "rate", "steps")
            }
        )
        for name in sorted(names)
    }
