"""simulations.ray_head: one Ray head for many runs, stopped with its processes, even on SIGTERM."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOLD_A_HEAD = """
import sys
from simulations.ray_head import ray_head
with ray_head(1) as head:
    print(head.temp_dir, flush=True)
    sys.stdin.read()  # until the test terminates us
"""


def processes_using(marker: str) -> list[int]:
    """Pids whose command line mentions ``marker`` (the head's temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in command:
                found.append(int(entry.name))
    return found


def test_a_terminated_command_still_stops_its_head():
    driver = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_HEAD],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    temp_dir = driver.stdout.readline().strip()
    assert temp_dir and processes_using(temp_dir)  # the head and its raylet run
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=90) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 30
    while processes_using(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_using(temp_dir) == []
