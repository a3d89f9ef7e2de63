"""Starting a run from a previous run's files: loaded exactly, bad files named clearly."""

import numpy as np
import pytest
import torch

from fedaso.config import RunConfig
from strategies.initial_files import load_anchors_file, load_initial_files, load_model_file

RUN = RunConfig.of(model_width=16, model_heads=2, model_layers=1, seq_len=16, num_anchors=4,
                subspace_rank=2)  # fmt: skip


def test_a_saved_model_loads_exactly(tmp_path):
    saved = RUN.build_model()
    torch.save(saved.state_dict(), tmp_path / "model.pt")
    fresh = RUN.replace(seed=5).build_model()
    load_model_file(str(tmp_path / "model.pt"), fresh)
    for name, tensor in saved.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor)


def test_model_file_errors_name_the_key_and_path(tmp_path):
    model = RUN.build_model()
    with pytest.raises(ValueError, match=r"initial-model='.*missing.pt' is invalid: no such file"):
        load_model_file(str(tmp_path / "missing.pt"), model)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is invalid: not a saved model"):
        load_model_file(str(tmp_path / "junk.pt"), model)
    torch.save(RUN.replace(model_width=32).build_model().state_dict(), tmp_path / "wide.pt")
    with pytest.raises(ValueError, match=r"does not fit this run's model .*model-width"):
        load_model_file(str(tmp_path / "wide.pt"), model)
    broken = model.state_dict()
    first = next(iter(broken))
    broken[first] = torch.full_like(broken[first], float("nan"))
    torch.save(broken, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=f"array '{first}' is not finite"):
        load_model_file(str(tmp_path / "nan.pt"), model)


def test_anchor_file_is_checked_for_shape_and_values(tmp_path):
    anchors = np.arange(64, dtype=np.float64).reshape(4, 16)
    np.save(tmp_path / "anchors.npy", anchors)
    loaded = load_anchors_file(str(tmp_path / "anchors.npy"), num_anchors=4, width=16)
    assert loaded.dtype == np.float32 and np.array_equal(loaded, anchors)
    with pytest.raises(ValueError, match=r"holds shape \(4, 16\), but this run needs .*\(8, 16\)"):
        load_anchors_file(str(tmp_path / "anchors.npy"), num_anchors=8, width=16)
    np.save(tmp_path / "inf.npy", np.full((4, 16), np.inf))
    with pytest.raises(ValueError, match="must be finite"):
        load_anchors_file(str(tmp_path / "inf.npy"), num_anchors=4, width=16)
    with pytest.raises(ValueError, match=r"initial-anchors=.*no such file"):
        load_anchors_file(str(tmp_path / "none.npy"), num_anchors=4, width=16)


def test_the_server_loads_both_files_from_the_run_config(tmp_path):
    saved = RUN.replace(seed=3).build_model()
    torch.save(saved.state_dict(), tmp_path / "model.pt")
    np.save(tmp_path / "anchors.npy", np.ones((4, 16), dtype=np.float32))
    run = RUN.replace(initial_model=str(tmp_path / "model.pt"),
                      initial_anchors=str(tmp_path / "anchors.npy"))  # fmt: skip
    model, anchors = load_initial_files(run)
    assert torch.equal(model.state_dict()["lm_head.weight"], saved.state_dict()["lm_head.weight"])
    assert anchors.shape == (4, 16)
    fresh, none = load_initial_files(RUN)
    assert none is None
    assert not torch.equal(
        fresh.state_dict()["lm_head.weight"], saved.state_dict()["lm_head.weight"]
    )


def test_run_config_checks_the_continuation_keys():
    with pytest.raises(ValueError, match=r"initial-anchors='a\.npy' is invalid: only strategy"):
        RunConfig.of(strategy="fedavg", initial_anchors="a.npy")
    with pytest.raises(ValueError, match="extra-eval-dataset='digits' is invalid: must be"):
        RunConfig.of(extra_eval_dataset="digits")
    assert RunConfig.of(dataset="facts:b", extra_eval_dataset="facts:a").outputs.extra_eval_dataset
