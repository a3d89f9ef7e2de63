"""docs/PRIVACY.md's worked epsilons, recomputed with Opacus' accountant: a drift fails."""

import re
import warnings
from pathlib import Path

import pytest
from opacus.accountants import RDPAccountant

PRIVACY_MD = Path(__file__).resolve().parents[4] / "docs" / "PRIVACY.md"
HEADING = "## Worked figures"
ROW = re.compile(  # | figure | sigma | q | releases | epsilon | ...
    r"^\| (?P<figure>[^|]+) \| (?P<sigma>[\d.]+) \| (?P<q>[\d.]+) "
    r"\| (?P<steps>\d+) \| (?P<epsilon>[\d.]+) \|"
)


def worked_rows() -> list[dict[str, str]]:
    """The rows of the worked-figures table: figure, sigma, q, releases, epsilon."""
    section = PRIVACY_MD.read_text(encoding="utf-8").split(HEADING, 1)[1].split("\n## ", 1)[0]
    return [match.groupdict() for line in section.splitlines() if (match := ROW.match(line))]


def test_the_table_is_there_and_covers_every_mode():
    figures = " ".join(row["figure"] for row in worked_rows())
    assert len(worked_rows()) == 11
    for mode in ("central", "local", "update-epsilon", "dp-sgd"):
        assert mode in figures


@pytest.mark.parametrize("row", worked_rows(), ids=lambda row: row["figure"])
def test_each_worked_epsilon_is_what_opacus_gives(row):
    accountant = RDPAccountant()
    accountant.history = [(float(row["sigma"]), float(row["q"]), int(row["steps"]))]
    with warnings.catch_warnings():  # Opacus warns when the best order is its smallest
        warnings.simplefilter("ignore", UserWarning)
        epsilon = accountant.get_epsilon(delta=1e-5)
    assert f"{epsilon:.2f}" == row["epsilon"]
