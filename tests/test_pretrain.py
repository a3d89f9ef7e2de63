"""The pretrained base: public text only, Hugging Face format, cached by its settings."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from fedaso.data import dataset_texts
from simulations.pretrain import main
from simulations.tools.pretraining import (
    METADATA_FILE,
    PretrainConfig,
    learning_rate,
    perplexity,
    pretraining_texts,
    split_held_out,
    token_windows,
)

TINY = ["--width", "16", "--layers", "1", "--heads", "2", "--vocab-size", "300",
        "--seq-len", "16", "--steps", "6", "--warmup", "1", "--batch-size", "4",
        "--eval-every", "2"]  # fmt: skip


def test_pretraining_text_is_public_prose_and_never_facts():
    texts = pretraining_texts()
    joined = "\n".join(texts)
    assert len(joined) > 500_000  # pydoc topics plus standard-library docstrings
    assert "Return the" in joined  # docstring prose
    facts = dataset_texts("facts")
    assert not any(document in joined for document in facts[:50])
    train, held = split_held_out(texts)
    assert len(held) == len(texts) // 20 and len(train) + len(held) == len(texts)
    assert held[0] == texts[19]


def test_windows_and_schedule():
    windows = token_windows(list(range(10)), 3)  # (2, 4): the last 2 ids are dropped
    assert windows.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    config = PretrainConfig(steps=100, warmup=10, lr=1.0)
    assert learning_rate(0, config) == pytest.approx(0.1)
    assert learning_rate(10, config) == pytest.approx(1.0)
    assert learning_rate(100, config) == pytest.approx(0.1)


def test_pretrain_writes_a_loadable_model_and_reuses_the_cache(tmp_path, capsys):
    out, cache = tmp_path / "base", tmp_path / "cache"
    argv = [*TINY, "--out", str(out), "--cache-dir", str(cache), "--no-progress"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "trained in" in first and "held-out perplexity" in first
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert metadata["config"]["width"] == 16
    result = metadata["result"]
    assert [step for step, _ in result["curve"]] == [2, 4, 6]
    best = min(result["curve"], key=lambda point: point[1])
    assert (result["best_step"], result["held_out_perplexity"]) == tuple(best)
    assert result["held_out_perplexity"] < result["initial_perplexity"]
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    # The saved weights are those of the best check (early stopping), not the last step.
    _, held_texts = split_held_out(pretraining_texts())
    encoded = tokenizer(held_texts, add_special_tokens=False)["input_ids"]
    held = token_windows([i for ids in encoded for i in [*ids, tokenizer.eos_token_id]], 16)
    assert perplexity(model, held) == pytest.approx(result["held_out_perplexity"], rel=1e-4)
    ids = torch.tensor([tokenizer("Return the value")["input_ids"]])
    assert model(input_ids=ids).logits.shape[-1] == len(tokenizer)
    assert main(argv) == 0
    assert "cached" in capsys.readouterr().out
    assert len(list(cache.iterdir())) == 1  # one entry, no partial folder left behind
    assert main([*argv, "--steps", "3"]) == 0  # other settings: another cache entry
    assert len(list(cache.iterdir())) == 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"width": 30, "heads": 4}, "width=30"), ({"warmup": 5, "steps": 5}, "warmup=5")],
)
def test_bad_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        PretrainConfig(**settings)
