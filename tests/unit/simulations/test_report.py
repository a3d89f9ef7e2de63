"""simulations.report: one report over finished runs of two central commands."""

from pathlib import Path

import pytest

from simulations.central import main as central
from simulations.report import Source, main


@pytest.fixture(scope="module")
def two_commands(tmp_path_factory, tiny):
    """Two finished central commands: plain and aso on seeds 0, 1; plain at another lr on 1, 2."""
    root = tmp_path_factory.mktemp("runs")
    data = tiny.flags(local_epochs=1, dataset="facts", facts_entities=2)
    for name, variants, seeds, lr in (("a", "plain,aso", "0,1", 0.05), ("b", "plain", "1,2", 0.01)):
        argv = ["--variants", variants, "--seeds", seeds, "--rounds", "2"]
        assert central([*argv, "--out", str(root / name), *data, f"--set=lr={lr}"]) == 0
    return root


def test_report_labels_shared_variants_and_keeps_paired_seeds(two_commands, capsys):
    out = two_commands / "both"
    a, b = str(two_commands / "a"), str(two_commands / "b")
    argv = ["--from", f"{a}:plain,aso", "--from", f"{b}:plain"]
    assert main([*argv, "--reference", "plain (a)", "--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    assert "dropped, not run by every variant: [0, 2]" in summary and "seeds 1 " in summary
    assert "| speed-up vs plain (a) [95% CI] |" in summary
    rows = (out / "metrics.csv").read_text().splitlines()
    variants = [row.split(",")[0] for row in rows[1:]]
    assert list(dict.fromkeys(variants)) == ["plain (a)", "aso", "plain (b)"]  # as listed


def test_report_names_what_it_cannot_read(two_commands, capsys):
    out = str(two_commands / "bad")
    assert main(["--from", str(two_commands / "nope"), "--reference", "plain", "--out", out]) == 1
    assert "nope: no such folder" in capsys.readouterr().err
    a = str(two_commands / "a")
    assert main(["--from", f"{a}:lambda-3", "--reference", "plain", "--out", out]) == 1
    assert "no finished runs of lambda-3" in capsys.readouterr().err
    assert main(["--from", a, "--reference", "fedavg", "--out", out]) == 1
    assert "--reference='fedavg' is not among aso, plain" in capsys.readouterr().err
    broken = two_commands / "broken" / "plain"
    broken.mkdir(parents=True)
    (broken / "metrics.json").write_text('{"rounds": []}')  # a run that never finished
    assert main(["--from", str(broken.parent), "--reference", "plain", "--out", out]) == 1
    assert "plain/metrics.json: not a finished run's metrics" in capsys.readouterr().err


def test_source_parses_a_folder_and_its_variants():
    assert Source.parse("runs/a") == Source(Path("runs/a"))
    assert Source.parse("runs/a:plain,aso") == Source(Path("runs/a"), ("plain", "aso"))
