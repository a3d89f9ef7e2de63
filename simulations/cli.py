"""The ``fedaso`` command: one entry point for the simulation, experiment and benchmark commands.

    fedaso run --strategy fedaso --num-clients 20 --rounds 3 --out runs/a
    fedaso compare --strategies fedaso,fedavg --rounds 20 --out runs/cmp
    fedaso ablate --rounds 15 --seeds 0,1,2 --out runs/ablate
    fedaso central --variants plain,aso,aso-probe --seeds 0,1,2 --out runs/central
    fedaso report --from runs/central --from runs/lr0.001:aso --reference plain --out runs/both
    fedaso forgetting --rounds 15 --out runs/forgetting
    fedaso bench simulation --num-clients 50
    fedaso make-hf-model --arch llama --out models/tiny-llama
    fedaso pretrain --out models/base

Each sub-command is the same command as its ``python -m simulations.<name>`` form, with the
same flags; ``fedaso <command> --help`` lists them with their defaults. ``fedaso bench`` runs
``python -m benchmarks`` from this repository as a child process: the benchmarks import
``simulations``, so ``simulations`` never imports them.
"""

from __future__ import annotations

import difflib
import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from simulations.console import CommandParser

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Command:
    """A sub-command: the module whose ``main(argv, prog)`` runs it, and one line of help."""

    module: str
    summary: str


COMMANDS = {
    "run": Command("simulations.run", "one federation on Flower's simulation engine"),
    "compare": Command("simulations.compare", "strategies side by side over seeds"),
    "ablate": Command("simulations.ablate", "ASO's ablations (report Table 5)"),
    "central": Command(
        "simulations.central", "ASO's variants trained centrally, no Flower (Table A)"
    ),
    "report": Command("simulations.report", "one report over finished runs of several commands"),
    "forgetting": Command("simulations.forgetting", "forgetting across two domains (Table 4)"),
    "make-hf-model": Command(
        "simulations.make_hf_model", "a small random-init Hugging Face model, to try hf:"
    ),
    "probe": Command("simulations.probe", "fact vs filler relevance of initial anchors, a grid"),
    "pretrain": Command(
        "simulations.pretrain", "a small pretrained base LM (public text), for hf:"
    ),
    "bench": Command("benchmarks", "performance benchmarks: bench NAME [flags]"),
}


def build_parser(prog: str, commands: dict[str, Command], description: str | None) -> CommandParser:
    """A parser that takes a command name and leaves every later argument to the command."""
    parser = CommandParser(prog, description)
    lines = "\n".join(f"  {name:<12} {command.summary}" for name, command in commands.items())
    parser.epilog = f"commands:\n{lines}\n\n{prog} COMMAND --help shows a command's flags."
    parser.add_argument("command", metavar="COMMAND", help=" | ".join(commands))
    return parser


def dispatch(
    prog: str, commands: dict[str, Command], argv: Sequence[str], description: str | None
) -> int:
    """Run the command named by ``argv[0]`` with the rest of ``argv``."""
    parser = build_parser(prog, commands, description)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    name, rest = argv[0], list(argv[1:])
    if name not in commands:
        close = difflib.get_close_matches(name, list(commands), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        parser.error(f"unknown command {name!r}{hint} (commands: {', '.join(commands)})")
    if commands is COMMANDS and name == "bench":
        return bench(rest)
    main: Callable[..., int] = importlib.import_module(commands[name].module).main
    return main(rest, prog=f"{prog} {name}")


def bench(argv: Sequence[str]) -> int:
    """``fedaso bench NAME [flags]``: ``python -m benchmarks NAME [flags]``, in a child process.

    The benchmarks are not installed with FedASO; they run from this repository, which goes
    first on the child's path: Opacus installs a top-level package also named
    ``benchmarks`` that would otherwise shadow this project's.
    """
    if not (ROOT / "benchmarks" / "__main__.py").is_file():
        message = f"the benchmarks are not in {ROOT} (a repository checkout has them)"
        print(f"fedaso bench: error: {message}", file=sys.stderr)
        return 2
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    command = [sys.executable, "-m", COMMANDS["bench"].module, *argv]
    return subprocess.run(command, env={**os.environ, "PYTHONPATH": path}, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedaso`` console script; returns the exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    return dispatch("fedaso", COMMANDS, arguments, __doc__)


if __name__ == "__main__":
    sys.exit(main())
