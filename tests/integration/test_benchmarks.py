"""Benchmarks: tiny smoke runs of the simulation and DP-SGD commands (not timed)."""

import re

from benchmarks import dp, simulation
from benchmarks.common import supports_rss
from tests.unit.benchmarks.test_benchmarks import RATIO


def test_dp_smoke(capsys):
    code = dp.main(
        ["--repeats", "2", "--steps", "2", "--batch-size", "4", "--seq-len", "8",
         "--num-anchors", "4", "--subspace-rank", "2", "--width", "8", "--memory-repeats", "1"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    for mode in ("hooks", "ghost"):
        assert re.search(rf"^DP-SGD \({mode}\) / ASO step time: {RATIO}", out, re.MULTILINE), out
    assert re.search(rf"^DP-SGD ghost / hooks step time: {RATIO}", out, re.MULTILINE), out
    if supports_rss():
        assert re.search(rf"^DP-SGD ghost / hooks peak RSS growth: {RATIO}", out, re.M), out


def test_simulation_smoke(capsys, tiny):
    code = simulation.main(
        ["--num-clients", "2", "--rounds", "1", "--steps", "1", "--facts-entities", "12",
         *tiny.flags()]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(rf"^simulation / compute floor at N=2: wall {RATIO}", out, re.MULTILINE), out
    assert re.search(r"framework cost per client task -?\d+\.\d", out), out
    assert "ClientApp work per message" in out
    assert "CPU seconds by process" in out


def test_simulation_registered_clients_smoke(capsys, tiny):
    code = simulation.main(
        ["--registered", "6", "--reference", "4", "--per-round", "2", "--rounds", "2",
         "--steps", "1", *tiny.flags()]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    figure = r"-?\d+\.\d{3}x"
    ratios_line = rf"^6 / 4 registered: driver peak {figure} .* later rounds {figure}"
    assert re.search(ratios_line, out, re.MULTILINE), out
    rows = re.findall(r"^\s+([46])\s+\d+(?:\.\d+)?\s.*\s2\s+\d+(?:\.\d+)?$", out, re.MULTILINE)
    assert rows == ["4", "6"], out  # both federations, 2 sampled per round
    assert re.search(r"growth per registered client: driver -?[\d,]+ bytes", out), out
