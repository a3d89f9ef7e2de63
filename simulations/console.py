"""What the simulation commands print: a parser whose help shows defaults and whose errors
are one line, Flower's and Ray's log quieted unless ``--verbose``, and a progress bar.

By default a command shows one progress bar per run (round, central loss, elapsed time,
estimated time left) and its final table. ``--verbose`` brings back Flower's log (every
round's metric dictionaries) and the ClientApps' log lines that Ray forwards. Flower's
deprecation warning about ``run_simulation``, which these commands call on the user's
behalf, is dropped either way: the user did not call it and cannot act on it.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TextIO

FLOWER_LOGGER = "flwr"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout and ends every flag's help with its default."""

    def _format_action(self, action: argparse.Action) -> str:
        if action.option_strings and not action.help:
            action = copy.copy(action)
            action.help = "(default: %(default)s)"  # argparse prints nothing without a help
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").strip()
        if action.required:
            return f"{text} (required)".strip()
        if (
            not action.option_strings
            or action.default is argparse.SUPPRESS
            or "%(default)" in text
            or "(default" in text
            or isinstance(action, argparse._HelpAction)
        ):
            return text
        if action.default == "":
            return f"{text} (default: '')".strip()
        return f"{text} (default: %(default)s)".strip()


class CommandParser(argparse.ArgumentParser):
    """An argument parser for the commands: defaults in ``--help``, one-line errors."""

    def __init__(self, prog: str, description: str | None, **kwargs: Any) -> None:
        super().__init__(
            prog=prog, description=description, formatter_class=HelpFormatter, **kwargs
        )

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message`` on one line (no usage block) and exit with 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``--verbose``: show Flower's and the clients' log instead of progress bars only."""
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show Flower's log (every round's metrics) and the clients' log lines",
    )


class DropRunSimulationDeprecation(logging.Filter):
    """Drops Flower's warning that ``run_simulation`` is deprecated."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the deprecation record of ``run_simulation``."""
        message = str(record.msg) + " ".join(str(arg) for arg in record.args or ())
        return not ("DEPRECATED FEATURE" in message and "run_simulation" in message)


@contextmanager
def flower_log(verbose: bool) -> Iterator[None]:
    """Inside the block Flower logs nothing unless ``verbose``; never the deprecation.

    Quiet, Ray's Python warnings (a tip about GPU environment variables) are dropped too;
    failures reach the command as its exception.
    """
    logger = logging.getLogger(FLOWER_LOGGER)
    drop = DropRunSimulationDeprecation()
    level = logger.level
    logger.addFilter(drop)
    with warnings.catch_warnings():
        if not verbose:
            logger.setLevel(logging.CRITICAL)
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray\.")
        try:
            yield
        finally:
            logger.setLevel(level)
            logger.removeFilter(drop)


def ray_init_args(verbose: bool) -> dict[str, Any]:
    """``ray.init`` arguments that keep Ray and the actors' log off the console if quiet."""
    if verbose:
        return {}
    return {"log_to_driver": False, "logging_level": logging.ERROR}


class RunBar:
    """One run's progress bar: rounds done, central loss, elapsed time, estimate left."""

    def __init__(self, label: str, rounds: int, stream: TextIO | None = None) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=rounds,
            desc=label,
            unit="round",
            file=stream or sys.stderr,
            bar_format="{desc}: {bar:20} round {n_fmt}/{total_fmt}{postfix} "
            "[{elapsed} elapsed, {remaining} left]",
            dynamic_ncols=False,
            ncols=110,
        )

    def round_done(self, loss: float) -> None:
        """Advance by one round and show its central loss."""
        self.bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
        self.bar.update(1)

    def close(self, note: str = "") -> None:
        """End the bar's line, optionally with a note (e.g. the run's wall time)."""
        if note:
            self.bar.set_postfix_str(f"{self.bar.postfix or ''} {note}".strip(), refresh=False)
        self.bar.close()


def fail(prog: str, error: BaseException) -> int:
    """Print ``prog: error: ...`` on one line and return the exit status 1.

    For errors that stop a command after its flags were accepted (bad data found when the
    run starts, a run whose clients all fail); what finished before stays on disk.
    """
    text = " ".join(str(error).split()) or type(error).__name__
    print(f"{prog}: error: {text}", file=sys.stderr, flush=True)
    return 1
