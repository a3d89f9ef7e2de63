"""Helpers shared by the benchmarks: robust summaries, the machine header, peak memory.

Every benchmark measures the things it compares in *interleaved* repetitions inside one
run (A, B, A, B, ...), so that load from other processes hits all of them alike, and
prints medians with their spread rather than single figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

MIB = 2**20

T = TypeVar("T")


def interleaved(
    calls: Mapping[str, Callable[[], T]], *, repeats: int, warmup: bool = True
) -> dict[str, list[T]]:
    """Each call's results over ``repeats`` rounds of A, B, C, A, B, C, ... (after a warm-up).

    Interleaving makes load from other processes hit every call alike, so ratios of the
    results of one round are fair even on a busy machine.
    """
    if warmup:
        for call in calls.values():
            call()
    results: dict[str, list[T]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            results[name].append(call())
    return results


def spread(values: Sequence[float], *, scale: float = 1.0, digits: int = 3) -> str:
    """``median (IQR q1-q3, n=K)`` of ``values`` times ``scale``; min-max for fewer than 4."""
    if not values:
        raise ValueError("spread() needs at least one value")
    scaled = [v * scale for v in values]
    median = statistics.median(scaled)
    if len(scaled) >= 4:
        low, _, high = statistics.quantiles(scaled, n=4)
        label = "IQR"
    else:
        low, high = min(scaled), max(scaled)
        label = "range"
    return f"{median:.{digits}f} ({label} {low:.{digits}f}-{high:.{digits}f}, n={len(scaled)})"


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Element-wise ratios of paired measurements (same repetition, so same machine load)."""
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def machine_header(threads: int | None = None) -> str:
    """One line naming the machine, its load and the software, for BENCHMARKS.md."""
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    load = "/".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    parts = [
        f"machine: {cpu}, {os.cpu_count()} cores, load average {load} (1/5/15 min)",
        f"python {platform.python_version()}, torch {torch.__version__}",
    ]
    if threads is not None:
        parts.append(f"torch threads {threads}")
    return "; ".join(parts)


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``), in bytes."""
    return _status_kib("VmRSS") * 1024


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS; False if unsupported.

    Linux >= 4.0 resets the high-water mark when "5" is written to ``/proc/self/clear_refs``,
    which lets a process measure the peak of one phase (e.g. training) instead of its
    lifetime peak (often set by imports).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes(pid: int | str = "self") -> int:
    """Peak resident set size (``VmHWM``) of process ``pid``, in bytes."""
    return _status_kib("VmHWM", pid) * 1024


def _status_kib(field: str, pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise OSError(f"/proc/{pid}/status has no {field} (not Linux?)")


def supports_rss() -> bool:
    """True where ``/proc/self/status`` reports VmRSS and VmHWM (Linux)."""
    return sys.platform.startswith("linux") and Path("/proc/self/status").exists()


def require_positive(
    parser: argparse.ArgumentParser, args: argparse.Namespace, names: Sequence[str]
) -> None:
    """Exit through ``parser.error`` naming the first flag in ``names`` that is below 1."""
    for name in names:
        value = getattr(args, name)
        if value < 1:
            parser.error(f"--{name.replace('_', '-')}={value} must be >= 1")
