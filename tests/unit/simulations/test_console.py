"""What the commands print: Flower's log quiet unless --verbose, never the deprecation of
run_simulation, one-line errors."""

import logging
from logging import INFO

import pytest
from flwr.common import log
from flwr.supercore.logger import warn_deprecated_feature

from simulations.console import CommandParser, fail, flower_log


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def flower_says(verbose):
    handler = Records()
    logger = logging.getLogger("flwr")
    logger.addHandler(handler)
    try:
        with flower_log(verbose):
            warn_deprecated_feature("The `run_simulation` function is deprecated")
            log(INFO, "[ROUND 1/2]")
        log(INFO, "after the block")
    finally:
        logger.removeHandler(handler)
    return handler.messages


def test_quiet_hides_flowers_log_and_verbose_shows_it_never_the_deprecation():
    quiet, verbose = flower_says(False), flower_says(True)
    assert quiet == ["after the block"]  # the level is restored after the block
    assert verbose == ["[ROUND 1/2]", "after the block"]


def test_errors_are_one_line(capsys):
    assert fail("fedaso run", ValueError("seq-len=0 is invalid:\n must be >= 1")) == 1
    assert capsys.readouterr().err == "fedaso run: error: seq-len=0 is invalid: must be >= 1\n"
    parser = CommandParser("fedaso x", None)
    parser.add_argument("--n", type=int, default=1, help="a number")
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--n", "x"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --n: invalid int value: 'x'" in err
