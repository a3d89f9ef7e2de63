"""The single-ArrayRecord payload: model arrays plus anchors under a reserved key."""

import numpy as np
import pytest
import torch

from fedaso.models import TinyLM, TinyLMConfig
from fedaso.models.arrays import load_model_arrays, model_to_arrays
from fedaso.wire import ANCHORS_KEY, join_payload, split_payload


def test_join_and_split_round_trip_keeps_order_and_values():
    model = TinyLM(TinyLMConfig(n_layer=1, n_embd=8, n_head=2, block_size=4))
    arrays = model_to_arrays(model)
    anchors = np.ones((3, 8), dtype=np.float32)
    joined = join_payload(arrays, anchors)
    assert list(joined)[-1] == ANCHORS_KEY and list(joined)[:-1] == list(arrays)
    model_arrays, got_anchors = split_payload(joined)
    assert list(model_arrays) == list(arrays)
    np.testing.assert_array_equal(got_anchors, anchors)
    assert split_payload(arrays)[1] is None


def test_reserved_prefix_in_a_model_is_refused():
    with pytest.raises(ValueError, match="reserved prefix"):
        join_payload({"aso.weight": np.zeros(1)}, None)


def test_load_model_arrays_checks_names_and_shapes():
    model = TinyLM(TinyLMConfig(n_layer=1, n_embd=8, n_head=2, block_size=4))
    arrays = model_to_arrays(model)
    arrays["ln_f.weight"] = np.full(8, 2.0, dtype=np.float32)
    load_model_arrays(model, arrays)
    assert torch.equal(model.ln_f.weight.detach(), torch.full((8,), 2.0))
    bad = dict(arrays, **{"ln_f.weight": np.zeros(9, dtype=np.float32)})
    with pytest.raises(ValueError, match=r"'ln_f.weight' has shape \(9,\)"):
        load_model_arrays(model, bad)
    with pytest.raises(ValueError, match="missing"):
        load_model_arrays(model, {k: v for k, v in arrays.items() if k != "ln_f.bias"})
