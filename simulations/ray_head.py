"""One local Ray head for many federations: Flower's engine starts once, not once per run.

Flower's simulation engine starts a local Ray instance for each federation and shuts it
down afterwards (``RayBackend.terminate`` calls ``ray.shutdown``): seconds of every run.
A command that runs many federations starts one head here instead, and every run joins
it as a user's runs join their Ray cluster (``--ray-address``); leaving a cluster does not
stop it. The head runs in a session of its own and is stopped by its pid, with every
process it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RAY = Path(sys.executable).parent / "ray"
START_TIMEOUT = 120.0  # seconds for `ray start` to report the runtime up


@dataclass(frozen=True)
class RayHead:
    """A running Ray head: the address runs join, and the folder of its logs."""

    address: str  # host:port of the head's GCS
    temp_dir: Path  # Ray's --temp-dir: session_latest/logs holds the workers' logs

    def worker_logs(self) -> dict[Path, str]:
        """``{path: text}`` of every worker log of the head's current session."""
        logs = (self.temp_dir / "session_latest" / "logs").glob("worker-*")
        return {path: path.read_text(errors="replace") for path in logs}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def ray_head(num_cpus: int) -> Iterator[RayHead]:
    """Start ``ray start --head --block`` with ``num_cpus`` CPUs; stop it on exit.

    Raises ``RuntimeError`` with the head's log if it does not come up.
    """
    if num_cpus < 1:
        raise ValueError(f"num_cpus={num_cpus} must be >= 1")
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # socket paths must be short
    log_path = temp_dir / "head.log"
    command = [
        str(RAY), "start", "--head", f"--port={port}", "--block", f"--num-cpus={num_cpus}",
        "--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats",
    ]  # fmt: skip
    with log_path.open("w") as log:
        head = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    previous = _exit_on_sigterm()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Ray runtime started" not in log_path.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not start:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield RayHead(f"127.0.0.1:{port}", temp_dir)
    finally:
        stop_session(head)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm() -> Any:
    """Make SIGTERM raise ``SystemExit`` in the main thread, so that a terminated command
    still stops its head (the default action ends Python without ``finally``); returns the
    handler it replaced, or None off the main thread (where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, terminate)


def stop_session(process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Stop ``process``, the leader of its own session, and every process in its group.

    SIGTERM lets ``ray start --block`` stop the raylet and GCS it started; whatever of the
    group is left after ``timeout`` seconds is killed.
    """
    with suppress(ProcessLookupError):  # the group may be gone already
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
