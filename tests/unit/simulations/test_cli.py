"""The ``fedaso`` command: sub-commands, help with every default, one-line errors."""

import subprocess
import sys

import pytest

from benchmarks.__main__ import BENCHMARKS
from benchmarks.__main__ import main as benchmarks_main
from simulations import cli
from simulations.console import CommandParser

SUBCOMMANDS = ["run", "compare", "ablate", "forgetting", "make-hf-model", "pretrain", "probe"]


def option_blocks(help_text: str) -> dict[str, str]:
    """``{flag: its help text}`` from the ``options:`` section of ``--help``."""
    blocks: dict[str, str] = {}
    flag = ""
    for line in help_text.split("\noptions:\n", 1)[1].splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            flag = next((word for word in line.split() if word.startswith("--")), flag)
            blocks[flag] = line
        elif flag:
            blocks[flag] += " " + line.strip()
    return blocks


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_flag_of_every_subcommand_shows_its_default(name, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([name, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: fedaso {name} ")
    blocks = option_blocks(out)
    module = __import__(cli.COMMANDS[name].module, fromlist=["build_parser"])
    flags = [a.option_strings[-1] for a in module.build_parser()._actions if a.dest != "help"]
    assert set(blocks) == {*flags, "--help"}
    for flag in flags:
        assert "(default:" in blocks[flag] or "(required)" in blocks[flag], blocks[flag]


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_bench_help_shows_every_default(name, capsys):
    with pytest.raises(SystemExit):
        benchmarks_main([name, "--help"])
    blocks = option_blocks(capsys.readouterr().out)
    del blocks["--help"]
    assert len(blocks) >= 2
    assert all("(default:" in text for text in blocks.values()), blocks


def test_top_level_help_lists_the_subcommands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in [*SUBCOMMANDS, "bench"]:
        assert f"\n  {name} " in out


def test_unknown_command_and_unknown_key_are_one_line_errors_with_a_suggestion(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["comprae"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean compare?" in err
    with pytest.raises(SystemExit):
        cli.main(["run", "--out", "x", "--set", "aso-lamda=0"])
    err = capsys.readouterr().err
    assert err.startswith("fedaso run: error: unknown run-config key 'aso-lamda'; did you mean")
    assert err.count("\n") == 1


def test_any_run_config_key_is_accepted_by_set(tmp_path):
    parser = CommandParser("t", None)
    from simulations.engine import add_run_flags, resolve_run_config

    add_run_flags(parser)
    args = parser.parse_args(["--set", "tracking-dir=/x", "--set", "aso-lambda=0"])
    run = resolve_run_config(args)
    assert run.outputs.tracking_dir == "/x" and run.aso.aso_lambda == 0.0


def test_the_console_script_is_installed_and_runs():
    script = [sys.executable, "-c", "from simulations.cli import main; raise SystemExit(main())"]
    done = subprocess.run([*script, "compare", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "fedaso compare" in done.stdout
    installed = subprocess.run(
        [str(cli.Path(sys.executable).parent / "fedaso"), "bench", "--help"],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0 and "aso-overhead" in installed.stdout
