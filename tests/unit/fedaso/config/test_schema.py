"""The run-config schema: one declaration per key, generated files in step, sections' checks."""

import dataclasses
import tomllib
from pathlib import Path

import pytest

from fedaso.aso.robust import ReplyBounds
from fedaso.config import SECTIONS, RunConfig, client_keys, run_config_keys, server_only_keys
from fedaso.config.client import ClientConfig
from fedaso.config.generated import config_doc, stale_files, with_table
from fedaso.data.config import DataConfig
from fedaso.models import ModelSpec
from fedaso.privacy import DPSGDConfig

ROOT = Path(__file__).resolve().parents[4]


def test_the_generated_files_match_the_schema():
    assert stale_files(ROOT) == [], "run: python -m fedaso.config --write"


def test_the_pyproject_table_holds_every_key_with_its_declared_default(tmp_path):
    table = tomllib.loads(with_table((ROOT / "pyproject.toml").read_text()))
    defaults = {name: key.default for name, key in run_config_keys().items()}
    assert table["tool"]["flwr"]["app"]["config"] == defaults
    assert RunConfig.from_flat(defaults) == RunConfig()


def test_regenerating_the_table_keeps_the_rest_of_pyproject():
    original = tomllib.loads((ROOT / "pyproject.toml").read_text())
    regenerated = tomllib.loads(with_table((ROOT / "pyproject.toml").read_text()))
    original["tool"]["flwr"]["app"].pop("config")
    regenerated["tool"]["flwr"]["app"].pop("config")
    assert regenerated == original


def test_a_drifted_file_is_found(tmp_path):
    (tmp_path / "docs").mkdir()
    pyproject = (
        (ROOT / "pyproject.toml").read_text().replace("aso-lambda = 1.0", "aso-lambda = 2.0")
    )
    (tmp_path / "pyproject.toml").write_text(pyproject)
    (tmp_path / "docs" / "CONFIG.md").write_text(config_doc())
    assert stale_files(tmp_path) == [tmp_path / "pyproject.toml"]


def test_every_key_appears_in_the_reference_once():
    doc = config_doc()
    for name in run_config_keys():
        assert doc.count(f"| `{name}` |") == 1, name


def test_each_section_declares_only_keys():
    for name, section in SECTIONS.items():
        for field in dataclasses.fields(section):
            assert "help" in field.metadata, f"{name}.{field.name} is not a run-config key"


@pytest.mark.parametrize("component", [DataConfig, ModelSpec, ReplyBounds, DPSGDConfig])
def test_no_component_restates_a_default(component):
    """A component takes its values from a section; it never keeps a default of its own."""
    for field in dataclasses.fields(component):
        assert field.default is dataclasses.MISSING, f"{component.__name__}.{field.name}"
        assert field.default_factory is dataclasses.MISSING, f"{component.__name__}.{field.name}"


def test_clients_get_every_key_but_the_server_only_ones():
    view = RunConfig().client_view()
    assert set(view) == client_keys()
    assert not server_only_keys() & set(view)
    assert {"num-server-rounds", "update-dp", "out-dir", "anchor-seed"} <= server_only_keys()


def test_a_client_parses_what_the_server_sends():
    run = RunConfig.of(strategy="fedprox", lr=0.01, dataset="pydoc")
    sent = ClientConfig(run=run, server_round=3, run_key="k").to_message()
    received = ClientConfig.from_message(sent)
    assert received.run.client_view() == run.client_view()
    assert received.server_round == 3


def test_a_message_with_a_server_only_key_is_refused():
    sent = ClientConfig(run=RunConfig(), server_round=1, run_key="k").to_message()
    with pytest.raises(ValueError, match="server-only key"):
        ClientConfig.from_message(sent | {"out-dir": "/tmp/x"})


def test_sections_route_field_names_and_reject_unknown_ones():
    run = RunConfig.of(aso_lambda=2.0, lora_r=4, round_timeout=5.0)
    assert (run.aso.aso_lambda, run.model.lora_r, run.reliability.round_timeout) == (2.0, 4, 5.0)
    assert run.replace(lr=0.5).training.lr == 0.5
    with pytest.raises(ValueError, match=r"unknown run-config key 'aso-lamda'.*aso-lambda"):
        RunConfig.of(aso_lamda=1.0)


def test_a_run_config_is_not_built_with_unresolved_anchors():
    with pytest.raises(ValueError, match="num-anchors=0"):
        RunConfig(aso=dataclasses.replace(RunConfig().aso, num_anchors=0))
