"""Benchmarks: tiny smoke runs of each command (not timed) and their helpers."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import aso_overhead, dp, reply_checks, simulation
from benchmarks.common import (
    current_rss_bytes,
    peak_rss_bytes,
    ratios,
    reset_peak_rss,
    spread,
    supports_rss,
)

RATIO = r"\d+\.\d{3} \((IQR|range) \d+\.\d{3}-\d+\.\d{3}, n=\d+\)"


def test_spread_reports_median_and_iqr_or_range():
    assert spread([1.0, 2.0, 3.0]) == "2.000 (range 1.000-3.000, n=3)"
    assert spread([1.0, 2.0, 3.0, 4.0, 5.0], scale=10, digits=1).startswith("30.0 (IQR ")
    with pytest.raises(ValueError, match="at least one"):
        spread([])


def test_ratios_are_paired():
    assert ratios([2.0, 6.0], [1.0, 3.0]) == [2.0, 2.0]
    with pytest.raises(ValueError):
        ratios([1.0], [1.0, 2.0])


@pytest.mark.skipif(not supports_rss(), reason="reads /proc (Linux)")
def test_peak_rss_sees_an_allocation_after_a_reset():
    if not reset_peak_rss():
        pytest.skip("this kernel does not allow resetting VmHWM")
    before = current_rss_bytes()
    block = bytearray(64 * 2**20)  # zero-filled, so every page is touched
    assert peak_rss_bytes() - before >= 60 * 2**20
    del block
    assert peak_rss_bytes(os.getpid()) >= before


def test_descendants_lists_a_child_process():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in simulation.descendants(os.getpid())
    finally:
        child.kill()
        child.wait()


def test_aso_overhead_smoke(capsys):
    code = aso_overhead.main(
        ["--repeats", "2", "--steps", "2", "--batch-size", "2", "--seq-len", "8",
         "--num-anchors", "8", "--subspace-rank", "2", "--width", "8", "--widths", "8",
         "--sweep-repeats", "1", "--sweep-steps", "1", "--memory-repeats", "1"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(rf"^ASO / plain step time: {RATIO}", out, re.MULTILINE), out
    assert "projection hook (aso - no-projection)" in out
    assert "nearest token per anchor" in out
    if supports_rss():
        assert re.search(rf"^ASO / plain peak RSS: {RATIO}", out, re.MULTILINE), out


def test_aso_overhead_on_a_hugging_face_shape_smoke(capsys):
    code = aso_overhead.main(
        ["--model", "tiny-llama-shape", "--repeats", "2", "--steps", "1", "--batch-size", "2",
         "--seq-len", "16", "--num-anchors", "8", "--subspace-rank", "2", "--lora-r", "2"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    for mode in ("full", "lora"):
        section = out.split(f"\n{mode}: ")[1]
        assert re.search(rf"ASO step / plain step: {RATIO}", section), out
        assert re.search(r"aso  : \d+\.\d ms per step, \d+ tokens/s", section), out
    share = float(re.search(r"LoRA / full bytes per message: (\d\.\d+)", out).group(1))
    assert 0 < share < 0.5


def test_reply_checks_smoke(capsys):
    code = reply_checks.main(["--num-replies", "3", "--models", "tiny", "--repeats", "2"])
    out = capsys.readouterr().out
    assert code == 0
    # A difference of two timings: on a loaded machine the estimate itself can be negative.
    number = r"-?\d+\.\d{3} \(range -?\d+\.\d{3}--?\d+\.\d{3}, n=2\)"
    line = rf"^tiny \(\d+ values\), N=3: checks {number}, of which decoding {number}; "
    assert re.search(line, out, re.MULTILINE), out
    assert re.search(rf"checks / aggregation {number}, less decoding {number}$", out, re.M), out


def test_the_benchmarks_package_is_this_repositorys():
    # Opacus installs a top-level `benchmarks` package too; ours must win from the repo root.
    assert Path(aso_overhead.__file__).parent == Path(__file__).parents[3] / "benchmarks"


def test_client_processes_import_neither_sklearn_nor_opacus():
    # Every Ray actor imports the ClientApp. sklearn and Opacus each cost about as much as
    # torch to import, and a client needs them only for federated k-means or DP-SGD, so
    # fedaso imports them inside the functions that use them.
    code = "import sys, clients.client_app; print(sorted({'sklearn', 'opacus'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bad_benchmark_flags_are_named(capsys):
    with pytest.raises(SystemExit):
        simulation.main(["--num-clients", "0"])
    assert "--num-clients=[0]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        simulation.main(["--set", "aso-tau=-1"])
    assert "aso-tau=-1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        aso_overhead.main(["--steps", "0"])
    assert "--steps=0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dp.main(["--max-grad-norm", "0"])
    assert "dp-max-grad-norm" in capsys.readouterr().err
