"""Run one federation in this process on Flower's simulation engine (Ray backend).

The run-config is resolved here from defaults, command-line flags and ``--set key=value``
pairs, validated as a whole by :class:`fedaso.config.RunConfig`, and handed to the
ServerApp directly (``flwr.simulation.run_simulation`` has no run-config of its own); the
clients receive it in their messages as in any deployment.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedaso.config import RunConfig
from fedaso.durable import write_text_atomically
from simulations.console import add_output_flags, flower_log, ray_init_args

# Flower's simulation flags and the run-config keys they set.
FLAG_KEYS = {
    "strategy": "strategy",
    "rounds": "num-server-rounds",
    "dataset": "dataset",
    "partitioner": "partitioner",
    "fraction_train": "fraction-train",
    "seed": "seed",
}


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """Add the flags shared by every simulation command."""
    parser.add_argument("--num-clients", type=int, default=20, help="simulated SuperNodes")
    default = RunConfig()
    parser.add_argument(
        "--rounds",
        type=int,
        help=f"federated rounds (default: {default.federation.num_server_rounds})",
    )
    parser.add_argument(
        "--dataset",
        help="facts | facts:a | facts:b | pydoc | digits | text:PATH | file:PATH "
        f"(default: {default.data.dataset})",
    )
    parser.add_argument(
        "--partitioner",
        help="iid | dirichlet:ALPHA | natural | natural:COLUMN "
        f"(default: {default.data.partitioner})",
    )
    parser.add_argument(
        "--fraction-train",
        type=float,
        help=f"fraction of clients per round (default: {default.federation.fraction_train})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help=f"seed of data, model, anchors and sampling (default: {default.federation.seed})",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any run-config key, e.g. --set aso-lambda=0 (repeatable)",
    )
    parser.add_argument(
        "--client-cpus", type=float, default=1.0, help="CPUs reserved per simulated client"
    )
    parser.add_argument(
        "--client-gpus",
        type=float,
        default=0.0,
        help="GPU share reserved per simulated client, e.g. 0.25 runs four clients per GPU",
    )
    parser.add_argument(
        "--site-policy",
        default="",
        metavar="PATH",
        help="every simulated site runs under this site policy: a TOML file or 'strict' "
        "(docs/SITE_POLICY.md); default: none, the user owns server and sites alike",
    )
    parser.add_argument(
        "--ray-address",
        default="",
        help="run on this existing Ray cluster (e.g. 10.0.0.5:6379 or auto) instead of "
        "starting a local one",
    )
    add_output_flags(parser)


@dataclass(frozen=True)
class EngineOptions:
    """How the commands run Flower's simulation engine: its size, Ray, and how much it says."""

    num_clients: int = 20  # simulated SuperNodes
    client_cpus: float = 1.0  # CPUs reserved per simulated client
    client_gpus: float = 0.0  # share of a GPU reserved per simulated client
    ray_address: str = ""  # an existing Ray cluster to join; "" starts a local one
    verbose: bool = False  # show Flower's and the clients' log
    site_policy: str = ""  # every simulated site's policy (clients.policy); "" = open

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EngineOptions:
        """The options given by the flags of :func:`add_run_flags`."""
        return cls(
            num_clients=args.num_clients,
            client_cpus=args.client_cpus,
            client_gpus=args.client_gpus,
            ray_address=args.ray_address,
            verbose=args.verbose,
            site_policy=args.site_policy,
        )


def parse_value(text: str) -> Any:
    """Parse a --set value the way Flower parses run-config values (TOML scalars)."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip("\"'")


def resolve_run_config(args: argparse.Namespace, **fixed: Any) -> RunConfig:
    """Defaults < flags < --set pairs < ``fixed`` (kebab-case keys), validated together."""
    flat: dict[str, Any] = {}
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            flat[key] = value
    flat |= parse_pairs(args.set)
    flat.update(fixed)
    return RunConfig.from_flat(flat)


def parse_pairs(pairs: Sequence[str], flag: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` pairs of ``flag`` -> ``{KEY: value}``, values as :func:`parse_value`."""
    flat: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} {pair!r} is not KEY=VALUE")
        flat[key.strip()] = parse_value(value.strip())
    return flat


def simulate(
    run: RunConfig,
    *,
    num_clients: int,
    client_cpus: float = 1.0,
    client_gpus: float = 0.0,
    on_round: Callable[[int, Mapping[str, float]], None] | None = None,
    ray_address: str = "",
    verbose: bool = True,
    site_policy: str = "",
) -> dict[str, Any]:
    """Run the federation in-process and return the metrics the ServerApp wrote.

    ``client_gpus`` is each client's share of a GPU (Ray places clients on GPUs by it).
    ``on_round`` receives each round's number and central metrics as the round ends.
    ``initial-model`` and ``initial-anchors``, and every client's partition of the data,
    are checked before the engine starts. With ``ray_address`` the clients run on that
    Ray cluster; without ``verbose`` Flower's and Ray's log stay off the console.
    Every simulated node's config names ``site_policy`` (``clients.policy``: a TOML path or
    ``strict``), or ``open`` without one: the user owns the server and the sites alike.
    """
    # Imported here so that `--help` and config errors answer before Ray and Flower load.
    from flwr.simulation import run_simulation

    from clients.client_app import build_client_app
    from clients.policy import OPEN, SITE_POLICY_KEY, site_policy_file
    from simulations.linkstate import indexed_message_lookup
    from simulations.registration import published_registration
    from strategies.initial_files import load_initial_files
    from strategies.server_app import build_server_app

    if num_clients < max(1, run.federation.min_train_nodes):
        raise ValueError(
            f"--num-clients={num_clients} must be >= 1 and >= min-train-nodes="
            f"{run.federation.min_train_nodes} (the server would wait for nodes forever)"
        )
    if not run.outputs.out_dir:
        raise ValueError("simulate() needs run.outputs.out_dir to collect the metrics")
    if not 0 <= client_gpus <= 1:
        raise ValueError(f"--client-gpus={client_gpus} must be in [0, 1] (a share of one GPU)")
    load_initial_files(run)
    check_partitions(run, num_clients)
    named = site_policy_file(site_policy) if site_policy else OPEN
    client_app = build_client_app({SITE_POLICY_KEY: named})
    started = time.perf_counter()
    # Flower's own lookup costs O(N^2) per polling sweep (simulations/linkstate.py), and the
    # server learns the nodes' partitions from their registration (simulations/registration.py)
    with flower_log(verbose), indexed_message_lookup(), published_registration() as registered:
        run_simulation(
            server_app=build_server_app(run, on_round, registered),
            client_app=client_app,
            num_supernodes=num_clients,
            backend_config={
                "client_resources": {"num_cpus": client_cpus, "num_gpus": client_gpus},
                "init_args": ray_cluster_args(ray_address) | ray_init_args(verbose),
            },
        )
    metrics_path = Path(run.outputs.out_dir) / "metrics.json"
    if not metrics_path.exists():
        raise RuntimeError(f"the simulation ended without writing {metrics_path}; see the log")
    metrics = json.loads(metrics_path.read_text())
    metrics["num-clients"] = num_clients
    metrics["wall-seconds"] = time.perf_counter() - started
    write_text_atomically(metrics_path, json.dumps(metrics, indent=2))
    return metrics


def ray_cluster_args(address: str) -> dict[str, Any]:
    """``ray.init`` arguments: join the cluster at ``address``, or start a local one.

    A local Ray instance gets every core of this machine; an existing cluster keeps the
    resources it was started with (``ray.init`` refuses ``num_cpus`` when joining one).
    """
    if address:
        return {"address": address}
    return {"num_cpus": os.cpu_count() or 1, "include_dashboard": False}


def check_partitions(run: RunConfig, num_clients: int) -> None:
    """Load every client's partition once, so that a bad one fails before round 1.

    Raises ``ValueError`` naming ``--num-clients`` when the data cannot be cut into
    ``num_clients`` partitions (e.g. ``partitioner=natural`` with another number of
    sites) or a partition is too small to train on.
    """
    from fedaso.data import load_partition

    config = run.data_config(num_partitions=num_clients)
    for partition_id in range(num_clients):
        try:
            load_partition(config, partition_id)
        except ValueError as error:
            message = f"--num-clients={num_clients} does not fit the data: {error}"
            raise ValueError(message) from None


# Privacy figures printed when a run reports them (docs/PRIVACY.md).
EPSILON_COLUMNS = ("anchor-epsilon", "update-epsilon", "client-dp-sgd-epsilon-max")


def round_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per round with the figures worth printing: those that some round has."""
    epsilons = [k for k in EPSILON_COLUMNS if any(k in r["train"] for r in metrics["rounds"])]
    rows = []
    for record in metrics["rounds"]:
        central, train = record["central"], record["train"]
        rows.append(
            {
                "round": record["round"],
                "loss": central.get("loss"),
                "accuracy": central.get("accuracy"),
                "fact-recall": central.get("fact-recall"),
                "fact-loss": central.get("fact-answer-loss"),
                "train-loss": train.get("train-loss"),
                "mean-relevance": train.get("mean-relevance"),
                "seconds": central.get("round-seconds"),
            }
            | {key: train.get(key) for key in epsilons}
        )
    shown = [key for key in rows[0] if key == "round" or any(row[key] is not None for row in rows)]
    return [{key: row[key] for key in shown} for row in rows]


def format_table(header: list[str], rows: list[list[Any]]) -> str:
    """Plain aligned text table; floats with 4 significant digits, missing values as '-'."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    cells = [header, *[[cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
