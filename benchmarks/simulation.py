"""Wall time of a federation on Flower's simulation engine against its compute floor.

    python -m benchmarks.simulation [--num-clients 50,200,500] [--rounds 2] [--steps 4]
        [--repeats 1] [--client-cpus 1] [--set KEY=VALUE ...]

For each number of clients N, every client trains in every round (fraction-train 1) for a
fixed workload of ``--steps`` local steps of one batch, and the benchmark runs, interleaved:

- the **simulation**: ``simulations.engine.simulate`` (Flower's simulation engine on Ray,
  one actor per ``--client-cpus`` CPUs), timed from the call to its return, so Ray's start
  and stop, the server's initialization (data, k-means anchors) and its central evaluation
  every round are included;
- the **compute floor**: the same local training (same partitions, model, anchors shape,
  seeds and steps) run back to back in this process with no framework.

It prints, per N, both wall times and their ratio; the CPU time of the simulation (this
process plus every Ray process, all of which are reaped children) against the floor's, which
does not depend on how busy the machine is; the framework's cost per client task, in ms,
``(simulation CPU - floor CPU) / tasks``; how the simulation's wall time splits into Ray,
server initialization, central evaluation and rounds; and the peak resident memory of this
driver process and of the Ray worker processes (polled from ``/proc``), to show whether
memory stays flat in N. A last section times the ClientApp's own work per message in this
process (parse the config, build the model, decode and encode the payload) against
``train_local`` alone. Finally the wall time is fitted as ``fixed + per-task * tasks``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.app.metadata import Metadata

from benchmarks.common import (
    MIB,
    machine_header,
    peak_rss_bytes,
    require_positive,
    reset_peak_rss,
    spread,
)
from clients.client_app import app as client_app
from clients.client_app import client_seed
from fedaso.config import RunConfig
from fedaso.config.client import ClientConfig
from fedaso.data import load_central, load_partition
from fedaso.models.arrays import load_model_arrays, model_to_arrays
from fedaso.training.trainer import train_local
from fedaso.wire import join_payload, split_payload
from flower_wire.records import arrays_to_record, record_to_arrays
from simulations.console import HelpFormatter
from simulations.engine import format_table, parse_value, simulate


@dataclass(frozen=True)
class Timing:
    """Wall and CPU seconds of one measured phase."""

    wall: float
    cpu: float


@dataclass
class SimulationRun:
    """One simulation: its timing, its metrics.json and the peak memory of its processes."""

    timing: Timing  # cpu: this process plus every descendant process
    metrics: dict[str, Any]
    driver_cpu: float  # seconds of this process (ServerApp, Flower's engine threads)
    driver_peak: int  # bytes, VmHWM of this process during the run
    processes: dict[int, ProcessRecord]  # every Ray process seen, by pid


def benchmark_run_config(
    args: argparse.Namespace, num_clients: int, out_dir: str, *, fraction_train: float = 1.0
) -> RunConfig:
    """The run-config of one measurement: every sampled client trains ``args.steps`` steps."""
    flat: dict[str, Any] = {
        "num-server-rounds": args.rounds,
        "fraction-train": fraction_train,
        "min-train-nodes": min(2, num_clients),
        "max-steps": args.steps,
        # Enough passes that even a one-batch partition reaches max-steps.
        "local-epochs": args.steps,
        "facts-entities": args.facts_entities,
        "seed": 0,
    }
    for pair in args.set:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set {pair!r} is not KEY=VALUE")
        flat[key.strip()] = parse_value(value.strip())
    flat["out-dir"] = out_dir
    return RunConfig.from_flat(flat)


def compute_floor(run: RunConfig, num_clients: int) -> Timing:
    """Wall and CPU seconds of every client task's ``train_local``, back to back, no framework.

    Partitions, model initialization, batch-order seeds and step counts are those of the
    simulation; anchors are a fixed random set of the same shape (cost does not depend on
    their values). Data partitions are loaded (and cached) before the clock starts.
    """
    data_config = run.data_config(num_partitions=num_clients)
    partitions = [load_partition(data_config, pid).train for pid in range(num_clients)]
    aso = run.local_aso()
    anchors = None
    if aso is not None:
        generator = torch.Generator().manual_seed(run.federation.seed)
        anchors = torch.randn(run.aso.num_anchors, run.model.model_width, generator=generator)
    wall = cpu = 0.0
    for server_round in range(1, run.federation.num_server_rounds + 1):
        for pid, data in enumerate(partitions):
            model = run.build_model()
            seed = client_seed(run, server_round, pid)
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            train_local(
                model,
                data,
                anchors=anchors,
                aso=aso,
                train=run.training,
                seed=seed,
                proximal_mu=run.federation.applied_proximal_mu,
            )
            wall += time.perf_counter() - start_wall
            cpu += time.process_time() - start_cpu
    return Timing(wall=wall, cpu=cpu)


@dataclass
class ProcessRecord:
    """What the monitor last saw of one descendant process."""

    name: str  # argv[0], e.g. "ray::ClientAppActor.run" for an actor
    peak_rss: int = 0  # bytes, VmHWM
    cpu: float = 0.0  # seconds, user + system


class ProcessMonitor:
    """Polls every descendant process's peak RSS and CPU time while a simulation runs.

    Ray's worker processes are children of its raylet, which is killed at shutdown, so
    their CPU time never reaches this process's ``RUSAGE_CHILDREN``; polling ``/proc``
    sees it, up to the last ``interval`` seconds of each process's life.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.records: dict[int, ProcessRecord] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._ticks = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> ProcessMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read_all()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._read_all()

    def _read_all(self) -> None:
        for pid in descendants(os.getpid()):
            try:
                name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / self._ticks  # utime + stime
                peak = peak_rss_bytes(pid)
            except (OSError, ValueError, IndexError):
                continue  # the process ended between listing and reading
            record = self.records.setdefault(pid, ProcessRecord(name=name))
            record.name = name or record.name
            record.peak_rss = max(record.peak_rss, peak)
            record.cpu = max(record.cpu, cpu)

    def total_cpu(self) -> float:
        """CPU seconds of all descendant processes seen."""
        return sum(r.cpu for r in self.records.values())


def descendants(root: int) -> list[int]:
    """Process ids of every descendant of ``root``, from ``/proc/PID/task/TID/children``."""
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                kids = [int(k) for k in children.read_text().split()]
            except OSError:
                continue
            found.extend(kids)
            frontier.extend(kids)
    return found


def run_simulation_once(
    run: RunConfig, num_clients: int, client_cpus: float, *, verbose: bool = True
) -> SimulationRun:
    """Run one simulation, timing it and recording its processes' CPU and peak memory."""
    reset_peak_rss()
    own_cpu = time.process_time()
    start = time.perf_counter()
    with ProcessMonitor() as monitor:
        metrics = simulate(run, num_clients=num_clients, client_cpus=client_cpus, verbose=verbose)
    wall = time.perf_counter() - start
    driver_cpu = time.process_time() - own_cpu
    return SimulationRun(
        timing=Timing(wall=wall, cpu=driver_cpu + monitor.total_cpu()),
        metrics=metrics,
        driver_cpu=driver_cpu,
        driver_peak=peak_rss_bytes(),
        processes=monitor.records,
    )


def wall_split(sim: SimulationRun) -> dict[str, float]:
    """Where the simulation's wall time went, from its own metrics.json."""
    rounds = sim.metrics["rounds"]
    seconds = [r["central"].get("round-seconds", 0.0) for r in rounds if r["round"] > 0]
    evaluation = sum(r["central"].get("eval-seconds", 0.0) for r in rounds)
    server_total = sim.metrics["total-seconds"]
    return {
        "ray start+stop": sim.timing.wall - server_total,
        "server init": server_total - sum(seconds) - evaluation,
        "central eval": evaluation,
        "round 1": seconds[0] if seconds else 0.0,
        "later rounds": sum(seconds[1:]),
    }


def cpu_by_process(sim: SimulationRun) -> dict[str, float]:
    """CPU seconds of the driver and of the Ray processes, grouped by program name."""
    groups = {"driver (ServerApp, Flower's engine)": sim.driver_cpu}
    for record in sim.processes.values():
        name = Path(record.name).name or "?"
        groups[name] = groups.get(name, 0.0) + record.cpu
    return dict(sorted(groups.items(), key=lambda item: -item[1]))


def worker_memory(sim: SimulationRun) -> tuple[int, int]:
    """(largest peak RSS of a ClientApp actor, sum of all Ray processes' peaks), bytes."""
    records = sim.processes.values()
    actors = [r.peak_rss for r in records if "ClientAppActor" in r.name]
    return max(actors, default=0), sum(r.peak_rss for r in records)


def measure(args: argparse.Namespace) -> dict[int, list[tuple[Timing, SimulationRun]]]:
    """Interleaved (floor, simulation) pairs for every N, ``args.repeats`` times."""
    results: dict[int, list[tuple[Timing, SimulationRun]]] = {n: [] for n in args.num_clients}
    with tempfile.TemporaryDirectory(prefix="fedaso-bench-") as scratch:
        for repeat in range(args.repeats):
            for num_clients in args.num_clients:
                out_dir = str(Path(scratch) / f"n{num_clients}-r{repeat}")
                run = benchmark_run_config(args, num_clients, out_dir)
                floor = compute_floor(run, num_clients)
                sim = run_simulation_once(run, num_clients, args.client_cpus)
                results[num_clients].append((floor, sim))
                print(
                    f"  N={num_clients} repeat {repeat + 1}: floor {floor.wall:.1f} s, "
                    f"simulation {sim.timing.wall:.1f} s",
                    flush=True,
                )
    return results


def median_of(values: Any) -> float:
    return statistics.median(list(values))


def print_results(args: argparse.Namespace, results: dict) -> None:
    """Time, CPU and memory per N; where the wall time went; the headline ratios."""
    time_rows, memory_rows, fit_points = [], [], []
    for num_clients, pairs in results.items():
        tasks = num_clients * args.rounds
        sims = [s for _, s in pairs]
        time_rows.append(
            [
                num_clients,
                tasks,
                median_of(f.wall for f, _ in pairs),
                median_of(s.timing.wall for s in sims),
                median_of(s.timing.wall / f.wall for f, s in pairs),
                median_of(f.cpu for f, _ in pairs),
                median_of(s.timing.cpu for s in sims),
                median_of(s.timing.cpu / f.cpu for f, s in pairs),
                median_of(s.driver_cpu for s in sims),
                median_of((s.timing.cpu - f.cpu) / tasks * 1e3 for f, s in pairs),
            ]
        )
        actor, total = zip(*map(worker_memory, sims), strict=True)
        memory_rows.append(
            [
                num_clients,
                median_of(s.driver_peak / MIB for s in sims),
                median_of(a / MIB for a in actor),
                median_of(t / MIB for t in total),
            ]
        )
        fit_points.extend((tasks, s.timing.wall) for s in sims)
    print("\ntime (wall: elapsed; CPU: this process plus every Ray process; medians):")
    header = ["N", "tasks", "floor s", "sim s", "sim/floor", "floor CPU s", "sim CPU s",
              "CPU ratio", "driver CPU s", "framework CPU ms/task"]  # fmt: skip
    print(format_table(header, time_rows))
    print("\nwhere the simulation's wall time went (seconds, medians):")
    splits = {n: [wall_split(s) for _, s in pairs] for n, pairs in results.items()}
    keys = list(next(iter(splits.values()))[0])
    rows = [[n, *(median_of(s[k] for s in v) for k in keys)] for n, v in splits.items()]
    print(format_table(["N", *keys], rows))
    print("\nCPU seconds by process, largest first (first run of each N):")
    for num_clients, pairs in results.items():
        groups = cpu_by_process(pairs[0][1])
        top = ", ".join(f"{name} {cpu:.1f}" for name, cpu in list(groups.items())[:6])
        print(f"  N={num_clients}: floor {pairs[0][0].cpu:.1f}; {top}")
    print("\npeak resident memory (MiB, medians):")
    print(format_table(["N", "driver", "largest actor", "all Ray processes"], memory_rows))
    print()
    for num_clients, pairs in results.items():
        tasks = num_clients * args.rounds
        per_task = [(s.timing.cpu - f.cpu) / tasks for f, s in pairs]
        print(
            f"simulation / compute floor at N={num_clients}: "
            f"wall {spread([s.timing.wall / f.wall for f, s in pairs])}; "
            f"CPU {spread([s.timing.cpu / f.cpu for f, s in pairs])}; framework cost per "
            f"client task {spread(per_task, scale=1e3, digits=1)} ms CPU"
        )
    if len({t for t, _ in fit_points}) >= 2:
        slope, intercept = np.polyfit(*zip(*fit_points, strict=True), deg=1)
        print(
            f"simulation wall time grows as {intercept:.1f} s + {slope * 1e3:.1f} ms per "
            "client task (least squares over all runs)"
        )


def train_message(run: RunConfig, payload: dict[str, np.ndarray]) -> Message:
    """A train instruction as the server sends it: payload arrays and the client config."""
    content = RecordDict(
        {
            "arrays": arrays_to_record(payload),
            "config": ConfigRecord(
                ClientConfig(run=run, server_round=1, run_key="benchmark").to_message()
            ),
        }
    )
    metadata = Metadata(
        run_id=1, message_id="m", src_node_id=0, dst_node_id=1, reply_to_message_id="",
        group_id="1", created_at=time.time(), ttl=600.0, message_type="train",
    )  # fmt: skip
    return Message(content=content, metadata=metadata)


def client_handler_costs(args: argparse.Namespace, tasks: int = 10) -> dict[str, list[float]]:
    """CPU seconds per message of the ClientApp's train handler and of its parts.

    Calls the real ClientApp in this process (no engine) with a real Flower message, next to
    ``train_local`` alone and to each piece of the handler's own work: parsing the config,
    building the model, decoding the payload into it, loading the (cached) partition and
    encoding the reply. The message is built before the clock starts.
    """
    num_clients = max(args.num_clients)
    run = benchmark_run_config(args, num_clients, out_dir="")
    model = run.build_model()
    anchors = None
    if run.federation.strategy == "fedaso":
        rng = np.random.default_rng(run.federation.seed)
        anchors = rng.standard_normal((run.aso.num_anchors, run.model.model_width)).astype(
            np.float32
        )
    message = train_message(run, join_payload(model_to_arrays(model), anchors))
    data_config = run.data_config(num_partitions=num_clients)

    def context(pid: int) -> Context:
        node_config = {"partition-id": pid, "num-partitions": num_clients}
        return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(),
                       run_config={})  # fmt: skip

    def train_only(pid: int) -> None:
        train_local(
            run.build_model(),
            load_partition(data_config, pid).train,
            anchors=None if anchors is None else torch.from_numpy(anchors),
            aso=run.local_aso(),
            train=run.training,
            seed=pid,
        )

    parts: dict[str, Callable[[int], object]] = {
        "whole train handler": lambda pid: client_app(message, context(pid)),
        "train_local alone": train_only,
        "parse config": lambda pid: ClientConfig.from_message(dict(message.content["config"])),
        "build model": lambda pid: run.build_model(),
        "decode payload into model": lambda pid: load_model_arrays(
            model, split_payload(record_to_arrays(message.content["arrays"]))[0]
        ),
        "load partition (cached)": lambda pid: load_partition(data_config, pid),
        "encode reply": lambda pid: arrays_to_record(join_payload(model_to_arrays(model), anchors)),
    }
    for call in parts.values():
        call(0)  # warm-up; caches the partitions
    times: dict[str, list[float]] = {name: [] for name in parts}
    for task in range(tasks):
        for name, call in parts.items():
            start = time.process_time()
            call(task % num_clients)
            times[name].append(time.process_time() - start)
    return times


def print_handler(times: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    handler, train = medians["whole train handler"], medians["train_local alone"]
    samples = len(times["train_local alone"])
    print(f"\nClientApp work per message in this process (CPU ms, median of {samples}):")
    for name, value in medians.items():
        print(f"  {name:>26}: {value:8.2f} ms  {100 * value / handler:5.1f} % of the handler")
    print(
        f"ClientApp handler / train_local: {handler / train:.3f} "
        f"({handler - train:.1f} ms of work per message besides training)"
    )


# The registered-clients comparison (--registered): the reference federation's size.
REFERENCE_REGISTERED = 2000
POOL_SHARE = 0.85  # of a file's records, the rest held out for evaluation and k-means
WORDS = ("anchor", "client", "round", "model", "token", "window", "server", "update",
         "site", "data", "local", "global", "batch", "step", "share", "river", "stone")  # fmt: skip


def write_records(path: Path, registered: int, seed: int = 0) -> str:
    """A ``file:PATH`` dataset with one short text record per client, and its name.

    Facts would need 17,000 entities for 100,000 partitions, and their held-out evaluation
    and probes grow with them (5.9 GB per process); these records give each client one
    document of about 120 bytes (a few training windows) and hold out 15% as every
    dataset does, so central evaluation stays small.
    """
    rng = np.random.default_rng(seed)
    count = math.ceil(registered / POOL_SHARE) + 100
    with path.open("w") as file:
        for index in range(count):
            words = " ".join(WORDS[k] for k in rng.integers(len(WORDS), size=18))
            file.write(json.dumps({"text": f"Record {index}: {words}."}) + "\n")
    return f"file:{path}"


def registered_run_config(
    args: argparse.Namespace, registered: int, out_dir: str, dataset: str
) -> RunConfig:
    """``args.per_round`` of ``registered`` clients sampled per round (Flower rounds down)."""
    config = benchmark_run_config(
        args, registered, out_dir, fraction_train=args.per_round / registered
    )
    return config.replace(dataset=dataset)


def prepare_data(run: RunConfig, registered: int) -> tuple[float, float]:
    """Build the corpus and the partition rows (cached) before any clock starts.

    Returns the seconds of both, in this process: the corpus is cached in memory (both runs
    then share it, as the driver's central evaluation needs it), the rows on disk.
    """
    data_config = run.data_config(num_partitions=registered)
    start = time.perf_counter()
    load_central(data_config)
    corpus = time.perf_counter() - start
    load_partition(data_config, 0)  # computes every partition's rows, or reads their cache
    return corpus, time.perf_counter() - start - corpus


def flower_bytes_per_node(num_nodes: int = 10_000) -> float:
    """Bytes per node that Flower's simulation engine allocates to register its nodes.

    Its own ``_register_nodes`` (the link state's node records) and
    ``_register_node_info_stores`` (a ``Context`` per node), under tracemalloc: what any
    simulation of that many nodes costs the driver, whatever the ServerApp does.
    """
    import tracemalloc

    from flwr.server.superlink.fleet.vce import vce_api
    from flwr.server.superlink.linkstate import LinkStateFactory
    from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supercore.run import Run
    from flwr.superlink.federation import NoOpFederationManager

    factory = LinkStateFactory(
        FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory()
    )
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    mapping = vce_api._register_nodes(num_nodes, factory)  # pylint: disable=protected-access
    stores = vce_api._register_node_info_stores(mapping, Run.create_empty(run_id=1))
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del stores
    return held / num_nodes


def measure_registered(args: argparse.Namespace) -> dict[int, SimulationRun]:
    """One simulation per federation size, the reference first, on the same records."""
    sizes = (args.reference, args.registered)
    sims: dict[int, SimulationRun] = {}
    with tempfile.TemporaryDirectory(prefix="fedaso-bench-") as scratch:
        dataset = write_records(Path(scratch) / "records.jsonl", args.registered)
        runs = {
            n: registered_run_config(args, n, str(Path(scratch) / f"n{n}"), dataset) for n in sizes
        }
        for registered, run in runs.items():
            corpus, rows = prepare_data(run, registered)
            print(f"  {registered} registered: corpus {corpus:.1f} s, partition rows {rows:.1f} s")
        # Unreported: this process's one-time imports and caches would count in the first
        # measured run's peak, and not in the second's.
        warm_up = registered_run_config(args, args.per_round, str(Path(scratch) / "warm"), dataset)
        simulate(warm_up.replace(num_server_rounds=1), num_clients=args.per_round, verbose=False)
        for registered, run in runs.items():
            start = time.perf_counter()
            sims[registered] = run_simulation_once(run, registered, args.client_cpus, verbose=False)
            print(f"  {registered} registered: simulation {time.perf_counter() - start:.1f} s")
    return sims


def round_figures(sim: SimulationRun) -> dict[str, float]:
    """Round 1's seconds, later rounds' mean seconds, instructions per round, eval seconds."""
    rounds = [r for r in sim.metrics["rounds"] if r["round"] > 0]
    seconds = [r["central"]["round-seconds"] for r in rounds]
    server_total = sim.metrics["total-seconds"]
    evaluation = sum(r["central"].get("eval-seconds", 0.0) for r in sim.metrics["rounds"])
    return {
        "before round 1 s": server_total - sum(seconds) - evaluation,
        "round 1 s": seconds[0],
        "later rounds s": statistics.mean(seconds[1:]) if len(seconds) > 1 else float("nan"),
        "eval s/round": evaluation / len(sim.metrics["rounds"]),
        "sampled/round": statistics.mean(r["traffic"].get("messages", 0) for r in rounds),
        "wall s": sim.timing.wall,
    }


def print_registered(sims: dict[int, SimulationRun], flower_node_bytes: float) -> None:
    """One table of both federations, then the ratios the issue sets targets on."""
    header = ["registered", "driver peak MiB", "largest actor MiB", "all Ray MiB"]
    rows, figures = [], {n: round_figures(sim) for n, sim in sims.items()}
    for registered, sim in sims.items():
        actor, total = worker_memory(sim)
        memory = [sim.driver_peak / MIB, actor / MIB, total / MIB]
        rows.append([registered, *memory, *figures[registered].values()])
    header += list(next(iter(figures.values())))
    print("\nregistered clients (one run each; rounds: seconds of configure, train, aggregate):")
    print(format_table(header, rows))
    (small, big), (ref, large) = sims, sims.values()
    growth = (large.driver_peak - ref.driver_peak) / (big - small)
    ray_growth = (worker_memory(large)[1] - worker_memory(ref)[1]) / (big - small)
    later = figures[big]["later rounds s"] / figures[small]["later rounds s"]
    print(
        f"\n{big} / {small} registered: driver peak {large.driver_peak / ref.driver_peak:.3f}x "
        f"(target <= 1.5), later rounds {later:.3f}x (target <= 1.2), round 1 "
        f"{figures[big]['round 1 s'] / figures[small]['round 1 s']:.3f}x"
    )
    print(
        f"growth per registered client: driver {growth:,.0f} bytes, all Ray processes "
        f"{ray_growth:,.0f} bytes; of which Flower's engine registers {flower_node_bytes:,.0f} "
        "bytes per node (node record and Context, tracemalloc over 10,000 nodes)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.simulation",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--num-clients",
        type=lambda text: [int(n) for n in text.split(",") if n],
        default=[50, 200, 500],
        help="comma-separated numbers of clients",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="local steps per client task")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repetitions")
    parser.add_argument(
        "--facts-entities",
        type=int,
        default=100,
        help="entities per facts domain (600 documents: enough for 500 partitions)",
    )
    parser.add_argument(
        "--registered",
        type=int,
        default=0,
        help="compare a federation of this many registered clients with one of --reference "
        "(memory and round times), instead of --num-clients",
    )
    parser.add_argument(
        "--reference",
        type=int,
        default=REFERENCE_REGISTERED,
        help="registered clients of the reference federation, with --registered",
    )
    parser.add_argument(
        "--per-round", type=int, default=100, help="clients sampled per round with --registered"
    )
    parser.add_argument("--client-cpus", type=float, default=1.0, help="CPUs per actor")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the floor")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="run-config override"
    )
    args = parser.parse_args(argv)
    if not args.num_clients or min(args.num_clients) < 1:
        parser.error(f"--num-clients={args.num_clients} must list numbers >= 1")
    if not Path(f"/proc/{os.getpid()}/task").exists():
        parser.error("this benchmark reads process times and memory from /proc (Linux only)")
    require_positive(parser, args, ["rounds", "steps", "repeats", "threads", "per_round"])
    if args.registered and not args.per_round <= args.reference < args.registered:
        parser.error(
            f"--per-round={args.per_round}, --reference={args.reference} and --registered="
            f"{args.registered} must grow in that order"
        )
    try:
        benchmark_run_config(args, max(args.num_clients), out_dir="")
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    run = benchmark_run_config(args, max(args.num_clients), out_dir="")
    print(
        f"Simulation vs compute floor: strategy {run.federation.strategy}, {args.rounds} rounds, "
        "every "
        f"{'sampled ' * bool(args.registered)}client trains {args.steps} steps of batch "
        f"{run.training.batch_size} per round; model "
        f"d={run.model.model_width}, {run.model.model_layers} layers, T={run.data.seq_len}, "
        f"M={run.aso.num_anchors}; "
        f"{args.client_cpus:g} CPU per actor ({int((os.cpu_count() or 1) // args.client_cpus)}"
        f" concurrent clients); "
        + ("data: see below" if args.registered else f"facts-entities={args.facts_entities}")
    )
    print(machine_header(torch.get_num_threads()))
    if args.registered:
        print(f"registered clients: {args.reference} and {args.registered}, "
              f"{args.per_round} sampled per round; data: one short text record per client "
              f"(file:PATH, the same for both)")  # fmt: skip
        print_registered(measure_registered(args), flower_bytes_per_node())
        print(machine_header().split(";")[0].replace("machine", "at the end"))
        return 0
    results = measure(args)
    print_results(args, results)
    print_handler(client_handler_costs(args))
    print(machine_header().split(";")[0].replace("machine", "at the end"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
