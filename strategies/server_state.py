"""Server checkpoints: everything a run needs to continue after the server stops.

After every round the ServerApp writes one file, ``<checkpoint-dir>/checkpoint.npz``, with
- the global payload (model arrays and, under FedASO, the global anchors);
- the round number and the run-config it was written under;
- the metrics history (aggregated train/evaluate metrics and central evaluation per round);
- the state of every registered component: the strategy (FedASO's per-partition anchor
  store, Flower's FedAdam/FedYogi/FedAdagrad moments ``m_t``/``v_t``), the random number
  generators (Python's ``random``, which Flower samples clients with, NumPy's and torch's),
  and anything else that implements :class:`Stateful` (e.g. a privacy accountant), via
  :meth:`Checkpoints.register`.

The file is written atomically: to a temporary file that is then read back and checked,
and only then renamed over the previous checkpoint, so a crash or a full disk mid-write
leaves the last good checkpoint in place. A SHA-256 digest over its content makes a corrupt
or truncated file fail with a :class:`CheckpointError` (a ``ValueError``) that says so,
before anything of the resumed run has started.

The format is a NumPy ``.npz`` archive read with ``allow_pickle=False``: arrays as arrays,
everything else as JSON, so loading a checkpoint never executes code.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from logging import ERROR, INFO
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from flwr.app import ArrayRecord, MetricRecord
from flwr.common import log
from flwr.serverapp.strategy import Result, Strategy
from flwr.serverapp.strategy.fedopt import FedOpt

from fedaso.config import RunConfig
from fedaso.durable import sync_directory
from flower_wire.records import arrays_to_record, record_to_arrays

CHECKPOINT_FILE = "checkpoint.npz"
FORMAT = "fedaso-checkpoint"
VERSION = 1
# Run-config keys a resumed run may change; every other key must match the checkpoint's.
RESUMABLE_CHANGES = (
    "num-server-rounds",
    "out-dir",
    "checkpoint-dir",
    "resume",
    "round-timeout",
    "fault-plan",
    "fault-delay",
)
HISTORY_FIELDS = {
    "train": "train_metrics_clientapp",
    "evaluate": "evaluate_metrics_clientapp",
    "central": "evaluate_metrics_serverapp",
}


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or does not fit the run that wants to resume from it."""


@runtime_checkable
class Stateful(Protocol):
    """A component whose state a checkpoint saves and restores.

    ``state_dict`` returns nested dicts, lists and tuples of JSON scalars, NumPy arrays and
    torch tensors; ``load_state_dict`` takes back what ``state_dict`` returned.
    """

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RandomState:
    """The process-wide generators: Python's ``random``, NumPy's legacy one, torch's CPU one."""

    def state_dict(self) -> dict[str, Any]:
        """Return the three generators' states."""
        return {
            "python": random.getstate(),
            "numpy": np.random.get_state(legacy=False),
            "torch": torch.get_rng_state().numpy().copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Set the three generators to ``state``."""
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        np.random.set_state(state["numpy"])
        torch.set_rng_state(torch.from_numpy(np.asarray(state["torch"], dtype=np.uint8)))


class FedOptState:
    """The server-optimizer moments of Flower's FedOpt family (FedAdam, FedYogi, FedAdagrad).

    Flower creates ``m_t`` and ``v_t`` at the first aggregation; before it they are absent.
    """

    def __init__(self, strategy: FedOpt) -> None:
        self.strategy = strategy

    def state_dict(self) -> dict[str, Any]:
        """Return ``m_t`` and ``v_t`` (None where not created yet)."""
        return {name: getattr(self.strategy, name, None) for name in ("m_t", "v_t")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Set ``m_t`` and ``v_t`` from ``state``."""
        for name in ("m_t", "v_t"):
            if state.get(name) is not None:
                setattr(self.strategy, name, dict(state[name]))


def strategy_components(strategy: Strategy) -> dict[str, Stateful]:
    """The stateful parts of ``strategy`` and of the strategies it wraps (``.strategy``).

    A wrapper such as Flower's DP strategies keeps the wrapped strategy in ``.strategy``;
    each level that is :class:`Stateful`, or a FedOpt, is saved under its own name.
    """
    components: dict[str, Stateful] = {}
    level: Strategy | None = strategy
    name = "strategy"
    while level is not None:
        if isinstance(level, Stateful):
            components[name] = level
        elif isinstance(level, FedOpt):
            components[name] = FedOptState(level)
        name, level = f"{name}.inner", getattr(level, "strategy", None)
    return components


@dataclass
class Checkpoint:
    """What one checkpoint file holds."""

    server_round: int  # the last completed round
    config: dict[str, Any]  # the run-config (flat) it was written under
    arrays: dict[str, np.ndarray]  # the global payload after ``server_round``
    history: dict[str, dict[int, dict[str, Any]]]  # "train"/"evaluate"/"central" -> round
    components: dict[str, Any] = field(default_factory=dict)  # name -> state_dict()


# -- encoding: nested Python values <-> JSON + a list of arrays ---------------------------
def encode(value: Any, arrays: list[np.ndarray], where: str = "state") -> Any:
    """Return ``value`` as JSON-able data; arrays and tensors go to ``arrays`` by index."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        arrays.append(value.detach().cpu().numpy().copy())
        return {"__tensor__": len(arrays) - 1}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"{where}: object arrays cannot be checkpointed")
        arrays.append(value)
        return {"__array__": len(arrays) - 1}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {
            "__dict__": [
                [encode(k, arrays, f"{where} key"), encode(v, arrays, f"{where}[{k!r}]")]
                for k, v in value.items()
            ]
        }
    raise TypeError(f"{where}: cannot checkpoint a {type(value).__name__}")


def decode(data: Any, arrays: list[np.ndarray]) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(data, list):
        return [decode(v, arrays) for v in data]
    if not isinstance(data, dict):
        return data
    if "__array__" in data:
        return arrays[data["__array__"]]
    if "__tensor__" in data:
        return torch.from_numpy(arrays[data["__tensor__"]].copy())
    if "__tuple__" in data:
        return tuple(decode(v, arrays) for v in data["__tuple__"])
    return {decode(k, arrays): decode(v, arrays) for k, v in data["__dict__"]}


def digest(meta_text: str, arrays: list[np.ndarray]) -> str:
    """SHA-256 over the metadata and every array's dtype, shape and bytes."""
    sha = hashlib.sha256(meta_text.encode())
    for array in arrays:
        sha.update(f"{array.dtype.str}{array.shape}".encode())
        sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()


# -- files ---------------------------------------------------------------------------------
def checkpoint_file(location: str | Path) -> Path:
    """The checkpoint file of a directory (or the file itself, if given one)."""
    path = Path(location).expanduser()
    return path if path.suffix == ".npz" else path / CHECKPOINT_FILE


def write_checkpoint(directory: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``directory/checkpoint.npz`` atomically; return the path.

    The new file is written next to the old one, flushed to disk, read back and verified,
    and only then renamed over it: the previous checkpoint survives any failure here.
    """
    target = checkpoint_file(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    arrays: list[np.ndarray] = []
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "round": checkpoint.server_round,
        "config": encode(checkpoint.config, arrays, "config"),
        "payload-names": list(checkpoint.arrays),
        "payload": [encode(a, arrays, "payload") for a in checkpoint.arrays.values()],
        "history": encode(checkpoint.history, arrays, "history"),
        "components": encode(checkpoint.components, arrays, "components"),
    }
    meta_text = json.dumps(meta)
    members = {f"a{i}": array for i, array in enumerate(arrays)}
    temporary = target.with_name(f".{target.stem}.{os.getpid()}.tmp.npz")
    try:
        with temporary.open("wb") as stream:
            np.savez(
                stream,
                allow_pickle=False,
                meta=np.frombuffer(meta_text.encode(), dtype=np.uint8),
                digest=np.frombuffer(digest(meta_text, arrays).encode(), dtype=np.uint8),
                **members,
            )
            stream.flush()
            os.fsync(stream.fileno())
        read_checkpoint(temporary)  # never replace a good checkpoint by an unreadable one
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)
    sync_directory(target.parent)
    return target


def read_checkpoint(location: str | Path) -> Checkpoint:
    """Read and verify a checkpoint file (or ``DIR/checkpoint.npz``).

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, corrupt (digest mismatch) or not a checkpoint.
    """
    path = checkpoint_file(location)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta_text = archive["meta"].tobytes().decode()
            stored_digest = archive["digest"].tobytes().decode()
            meta = json.loads(meta_text)
            arrays = [archive[f"a{i}"] for i in range(count_arrays(archive.files))]
    except Exception as error:  # any unreadable file is reported the same way
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or corrupt and cannot be read "
            f"({type(error).__name__}: {error})"
        ) from None
    if digest(meta_text, arrays) != stored_digest:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt: its SHA-256 does not match")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(
            f"{str(path)!r} is not a {FORMAT} version {VERSION} file "
            f"(format={meta.get('format')!r}, version={meta.get('version')!r})"
        )
    payload = [decode(a, arrays) for a in meta["payload"]]
    return Checkpoint(
        server_round=int(meta["round"]),
        config=decode(meta["config"], arrays),
        arrays=dict(zip(meta["payload-names"], payload, strict=True)),
        history=decode(meta["history"], arrays),
        components=decode(meta["components"], arrays),
    )


def count_arrays(names: list[str]) -> int:
    """Number of ``a<i>`` members in an archive."""
    return sum(1 for name in names if name.startswith("a") and name[1:].isdigit())


# -- the run's view --------------------------------------------------------------------------
def check_resumable(saved: Mapping[str, Any], run: RunConfig, location: str) -> None:
    """Raise unless ``run`` may continue a checkpoint written under run-config ``saved``."""
    defaults = RunConfig().to_flat()
    for key, value in run.to_flat().items():
        before = saved.get(key, defaults[key])
        if key not in RESUMABLE_CHANGES and before != value:
            raise CheckpointError(
                f"resume={location!r} is invalid: the checkpoint was written with "
                f"{key}={before!r}, this run has {key}={value!r}; a resumed run may change "
                f"only {', '.join(RESUMABLE_CHANGES)}"
            )


def history_of(result: Result) -> dict[str, dict[int, dict[str, Any]]]:
    """The metrics history of ``result`` as plain dicts."""
    return {
        name: {r: dict(record) for r, record in getattr(result, attr).items()}
        for name, attr in HISTORY_FIELDS.items()
    }


class Checkpoints:
    """Writes a checkpoint after every round and, with ``resume``, restores one first.

    Parameters
    ----------
    run : RunConfig
        The run; ``run.checkpoint_path()`` is where checkpoints go ("" = nowhere) and
        ``run.reliability.resume`` the checkpoint to continue from ("" = start afresh).

    Raises
    ------
    CheckpointError
        At construction, before any work, if ``resume`` cannot be read or does not fit.
    """

    def __init__(self, run: RunConfig) -> None:
        self.run = run
        self.directory = run.checkpoint_path()
        self.components: dict[str, Stateful] = {"rng": RandomState()}
        self.resumed: Checkpoint | None = None
        if run.reliability.resume:
            self.resumed = read_checkpoint(run.reliability.resume)
            check_resumable(self.resumed.config, run, run.reliability.resume)
            if self.resumed.server_round > run.federation.num_server_rounds:
                raise CheckpointError(
                    f"num-server-rounds={run.federation.num_server_rounds} is invalid: the "
                    "checkpoint "
                    f"{run.reliability.resume!r} is already at round {self.resumed.server_round}"
                )

    def register(self, name: str, component: Stateful, *, restore_now: bool = False) -> None:
        """Save and restore ``component`` under ``name`` with every checkpoint.

        ``restore_now`` loads its state from the resumed checkpoint at once, for state that
        is needed before the rounds start (e.g. :class:`RunIdentity`).
        """
        if not isinstance(component, Stateful):
            raise TypeError(f"{name}: a checkpointed component needs state_dict/load_state_dict")
        self.components[name] = component
        if restore_now and self.resumed is not None:
            if name not in self.resumed.components:
                raise CheckpointError(
                    f"resume={self.run.reliability.resume!r} holds no state for {name!r}"
                )
            component.load_state_dict(self.resumed.components[name])

    def register_strategy(self, strategy: Strategy) -> None:
        """Register the stateful parts of ``strategy`` (see :func:`strategy_components`)."""
        for name, component in strategy_components(strategy).items():
            self.register(name, component)

    def restore(self, result: Result) -> tuple[int, ArrayRecord] | None:
        """Load the resumed checkpoint into the components and ``result``.

        Returns ``(last completed round, global arrays)``, or None when not resuming.
        """
        if self.resumed is None:
            return None
        saved = self.resumed
        missing = sorted(set(self.components) - set(saved.components))
        if missing:
            raise CheckpointError(
                f"resume={self.run.reliability.resume!r} holds no state for {missing}"
            )
        for name, component in self.components.items():
            component.load_state_dict(saved.components[name])
        for name, attr in HISTORY_FIELDS.items():
            records = {r: MetricRecord(m) for r, m in saved.history.get(name, {}).items()}
            getattr(result, attr).update(records)
        arrays = arrays_to_record(saved.arrays)
        result.arrays = arrays
        log(
            INFO,
            "FedASO: resumed from %s after round %d",
            self.run.reliability.resume,
            saved.server_round,
        )
        return saved.server_round, arrays

    def save(self, server_round: int, arrays: ArrayRecord, result: Result) -> Path | None:
        """Write the checkpoint of the state after ``server_round`` (if a directory is set)."""
        if not self.directory:
            return None
        checkpoint = Checkpoint(
            server_round=server_round,
            config=self.run.to_flat(),
            arrays=record_to_arrays(arrays),
            history=history_of(result),
            components={name: c.state_dict() for name, c in self.components.items()},
        )
        try:
            path = write_checkpoint(self.directory, checkpoint)
        except (OSError, CheckpointError) as error:  # e.g. a full disk: keep training
            log(ERROR, "FedASO: checkpoint after round %d NOT written: %s", server_round, error)
            return None
        log(INFO, "FedASO: checkpoint after round %d written to %s", server_round, path)
        return path


class RunIdentity:
    """The run key that names a run across resumes (``fedaso.wire.RUN_KEY``).

    Drawn at random when a run starts afresh and restored from the checkpoint on resume;
    clients key their on-disk state by it (``clients.state``).
    """

    def __init__(self) -> None:
        self.key = uuid.uuid4().hex

    def state_dict(self) -> dict[str, Any]:
        """The key, for a checkpoint."""
        return {"key": self.key}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the key of the resumed run."""
        self.key = str(state["key"])
