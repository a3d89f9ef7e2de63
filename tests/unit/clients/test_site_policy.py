"""A malicious server against a site with a policy (issue 17, item 1; docs/SITE_POLICY.md).

Real ``flwr.app.Message``s, built as the ServerApp builds them, are sent to the real
ClientApp. Each hostile setting must be refused with one line that names the policy key,
never a path, and a hostile size must be refused before anything is allocated.
"""

import os
import resource
import sys
import time

import numpy as np
import pytest

from clients.client_app import app
from clients.ledger import SiteLedger
from clients.policy import (
    SITE_POLICY_KEY,
    PolicyRefusalError,
    SiteError,
    SitePolicy,
    count_parameters,
    hub_offline,
    site_policy,
)
from clients.state import load_state, partition_directory, state_root
from fedaso.config import RunConfig
from fedaso.privacy import PrivacyAccount
from tests.hf_helpers import tiny_hf_model
from tests.unit.clients.test_client_app import RUN, context, instruction

ANCHORS = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)


def write_policy(folder, text):
    """A policy file the site owns."""
    path = folder / "policy.toml"
    path.write_text(text)
    return str(path)


def hostile(overrides, message_type="train", run=RUN, anchors=ANCHORS, server_round=1):
    """A message whose config the server changed after building its (tiny) payload."""
    msg = instruction(run, anchors, message_type=message_type, server_round=server_round)
    for key, value in overrides.items():
        msg.content["config"][key] = value
    return msg


def refusal(msg, ctx):
    """The one line the server gets: what the ClientApp raised, as Flower forwards it."""
    with pytest.raises((PolicyRefusalError, SiteError)) as raised:
        app(msg, ctx)
    line = str(raised.value)
    assert "/" not in line and "\\" not in line  # never a path
    return line


def under_policy(ctx, policy):
    ctx.node_config[SITE_POLICY_KEY] = policy
    return ctx


def test_a_foreign_py_module_is_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_module.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef build(run): raise SystemExit\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ctx = under_policy(context(), "strict")
    line = refusal(hostile({"model": "py:evil_module:build"}), ctx)
    assert line == "refused by site policy: py-factories"
    assert not marker.exists() and "evil_module" not in sys.modules


def test_data_outside_the_roots_is_refused_without_saying_whether_it_exists(tmp_path):
    inside = tmp_path / "site-data"
    inside.mkdir()
    policy = write_policy(tmp_path, f'[data]\ndata-roots = ["{inside}"]\n')
    ctx = under_policy(context(), policy)
    for dataset in ("text:/etc", f"text:{inside}/../../..", "file:/no/such/file.csv", "text:x"):
        line = refusal(hostile({"dataset": dataset}), ctx)
        assert line == "refused by site policy: data-roots"


def test_an_error_inside_the_roots_reaches_the_server_as_its_type_only(tmp_path):
    inside = tmp_path / "site-data"
    inside.mkdir()
    policy = write_policy(tmp_path, f'[data]\ndata-roots = ["{inside}"]\n')
    line = refusal(
        hostile({"dataset": f"file:{inside}/absent.csv"}), under_policy(context(), policy)
    )
    assert line.startswith("client error under site policy: ") and "absent" not in line


def test_a_files_columns_never_reach_the_server(tmp_path):
    inside = tmp_path / "site-data"
    inside.mkdir()
    rows = "\n".join(f"note {i} about the ward,{i % 3}" for i in range(40))
    (inside / "notes.csv").write_text("text,diagnosis_code\n" + rows + "\n")
    policy = write_policy(tmp_path, f'[data]\ndata-roots = ["{inside}"]\n')
    overrides = {"dataset": f"file:{inside}/notes.csv", "partitioner": "natural:ward"}
    line = refusal(hostile(overrides), under_policy(context(), policy))
    assert line == "client error under site policy: ValueError (see the site's log)"
    # Without a policy the same error names the file's columns.
    with pytest.raises(ValueError, match="diagnosis_code"):
        app(hostile(overrides), under_policy(context(), "open"))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"model-width": 65_536, "model-heads": 1}, "max-parameters"),
        ({"model-layers": 1024, "model-width": 64}, "max-parameters"),
        ({"seq-len": 2**20}, "max-seq-len"),
        ({"num-anchors": 10_000_000}, "max-anchors"),
        ({"batch-size": 10**9}, "max-batch-size"),
        ({"local-epochs": 10**6}, "max-local-epochs"),
    ],
)
def test_huge_sizes_are_refused_quickly_with_nothing_allocated(overrides, key):
    ctx = under_policy(context(), "strict")
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    line = refusal(hostile(overrides), ctx)
    assert time.perf_counter() - started < 2.0
    assert line == f"refused by site policy: {key}"
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 100_000  # width 65,536 alone would take 4 GiB per layer


def test_parameters_are_counted_exactly_without_building():
    for run in (RUN, RUN.replace(model_layers=3), RunConfig.of(dataset="digits", model_width=32)):
        built = sum(p.numel() for p in run.build_model().parameters())
        assert count_parameters(run, limit=10**9) == built
    hf = RunConfig.of(model=f"hf:{tiny_hf_model('llama')}", num_anchors=8, subspace_rank=4)
    assert count_parameters(hf, limit=10**9) == sum(
        p.numel() for p in hf.build_model().parameters()
    )


def test_hub_models_are_refused_and_hf_directories_only_under_their_roots(tmp_path):
    model_dir = tiny_hf_model("llama")
    strict = under_policy(context(), "strict")
    for model in ("hf:gpt2", f"hf:{model_dir}"):
        assert refusal(hostile({"model": model}), strict) == "refused by site policy: hf-roots"
    root = str(model_dir).rsplit("/", 1)[0]
    allowed = SitePolicy.from_toml(f'[models]\nhf-roots = ["{root}"]\n')
    allowed.check(RunConfig.of(model=f"hf:{model_dir}", num_anchors=8, subspace_rank=4))
    with pytest.raises(PolicyRefusalError, match="hf-roots"):
        allowed.check(RunConfig.of(model="hf:gpt2"))


def test_local_dp_without_noise_or_with_a_huge_clip_is_refused(tmp_path):
    policy = write_policy(
        tmp_path, "[privacy]\nmin-anchor-noise-multiplier = 0.5\nmax-anchor-clip = 10.0\n"
    )
    ctx = under_policy(context(), policy)
    local = {"anchor-dp": "local"}
    line = refusal(hostile(local | {"anchor-noise-multiplier": 0.0}), ctx)
    assert line == "refused by site policy: min-anchor-noise-multiplier"
    line = refusal(hostile(local | {"anchor-clip": 1e9}), ctx)
    assert line == "refused by site policy: max-anchor-clip"
    reply = app(hostile(local | {"anchor-noise-multiplier": 1.0, "anchor-clip": 4.0}), ctx)
    assert reply.content["metrics"]["anchor-epsilon"] > 0


def test_the_budget_holds_across_runs_with_different_run_keys(tmp_path):
    sigma, delta = 2.0, 1e-5
    epsilons = []
    for releases in (2, 3):
        account = PrivacyAccount()
        account.record(noise_multiplier=sigma, sample_rate=1.0, steps=releases)
        epsilons.append(account.epsilon(delta))
    budget = sum(epsilons) / 2  # room for two local anchor releases, not three
    policy = write_policy(tmp_path, f"[budget]\nepsilon-budget = {budget}\n")
    ctx = under_policy(context(), policy)
    local = {"anchor-dp": "local", "anchor-noise-multiplier": sigma}
    for server_round in (1, 2):
        app(hostile(local | {"run-key": "run-a"}, server_round=server_round), ctx)
    # A new run key starts the run's own accountants at 0; the site's ledger does not.
    line = refusal(hostile(local | {"run-key": "run-b"}), ctx)
    assert line == "refused by site policy: epsilon-budget"
    ledger = SiteLedger.of(site_policy(ctx.node_config), ctx.node_config, 1, RUN.data.dataset)
    assert ledger.path.exists() and ledger.spent() == pytest.approx(epsilons[0])
    # The refused reply was never sent: run-b's own state recorded nothing either.
    run_b = partition_directory(state_root(ctx.node_config), "run-b", 1)
    assert not load_state(run_b, 2).accounts


def test_a_policy_file_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ValueError, match=r"\[limits\] 'max-width'"):
        SitePolicy.from_toml("[limits]\nmax-width = 3\n")
    with pytest.raises(ValueError, match="unknown site policy key 'model'"):
        SitePolicy.from_toml("[model]\nreference = true\n")
    with pytest.raises(ValueError, match="max-seq-len=0 must be >= 1"):
        SitePolicy.from_toml("[limits]\nmax-seq-len = 0\n")
    with pytest.raises(ValueError, match="data-roots: 'data' is not absolute"):
        SitePolicy.from_toml('[data]\ndata-roots = ["data"]\n')
    with pytest.raises(ValueError, match="anchor-dp=\\['nonsense'\\]"):
        SitePolicy.from_toml('[privacy]\nanchor-dp = ["nonsense"]\n')


def test_a_deployed_node_without_a_policy_is_strict_an_open_one_checks_nothing():
    assert site_policy({"partition-id": 0, "num-partitions": 2}) == SitePolicy()
    assert site_policy({SITE_POLICY_KEY: "strict"}) == SitePolicy()
    assert site_policy({SITE_POLICY_KEY: "open"}) is None


def test_the_hub_is_offline_while_a_policy_forbids_it(monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = constants.HF_HUB_OFFLINE
    with hub_offline(True):
        assert constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"
    assert before == constants.HF_HUB_OFFLINE and "HF_HUB_OFFLINE" not in os.environ
