"""Random-init Hugging Face causal LMs and BPE tokenizers, built offline.

Tests, benchmarks and the examples of docs/MODELS.md need ``hf:`` models without a model
hub: this module trains a byte-level BPE tokenizer on text at hand with the ``tokenizers``
library, saves it as a ``PreTrainedTokenizerFast``, and writes a randomly initialized model
of a named architecture with ``save_pretrained``, so that ``model = hf:DIR`` loads both.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

ARCHITECTURES = ("gpt2", "llama", "qwen2", "gpt_neox")
END_OF_TEXT = "<|endoftext|>"


def train_bpe_tokenizer(texts: Iterable[str], *, vocab_size: int) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``texts`` (GPT-2's scheme)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=END_OF_TEXT, pad_token=END_OF_TEXT
    )


def causal_lm_config(
    arch: str,
    *,
    width: int,
    layers: int,
    heads: int,
    vocab_size: int,
    max_positions: int,
    **overrides: Any,
) -> Any:
    """A ``transformers`` config of architecture ``arch`` (one of :data:`ARCHITECTURES`).

    ``overrides`` are further config fields, e.g. ``intermediate_size``.
    """
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, Qwen2Config

    if arch == "gpt2":
        return GPT2Config(
            n_embd=width, n_layer=layers, n_head=heads, vocab_size=vocab_size,
            n_positions=max_positions, bos_token_id=0, eos_token_id=0, **overrides,
        )  # fmt: skip
    common = {
        "hidden_size": width,
        "intermediate_size": 4 * width,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "vocab_size": vocab_size,
        "max_position_embeddings": max_positions,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "num_key_value_heads": max(1, heads // 2),
    } | overrides
    if arch == "llama":
        return LlamaConfig(**common)
    if arch == "qwen2":
        return Qwen2Config(**common)
    if arch == "gpt_neox":
        return GPTNeoXConfig(**{k: v for k, v in common.items() if k != "num_key_value_heads"})
    raise ValueError(f"arch={arch!r} is not one of {', '.join(ARCHITECTURES)}")


def save_random_model(
    out_dir: Path,
    *,
    arch: str,
    texts: Iterable[str],
    vocab_size: int = 512,
    width: int = 32,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 128,
    seed: int = 0,
) -> Path:
    """Write a tokenizer trained on ``texts`` and a random ``arch`` model to ``out_dir``."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.utils.logging.disable_progress_bar()
    tokenizer = train_bpe_tokenizer(texts, vocab_size=vocab_size)
    config = causal_lm_config(
        arch,
        width=width,
        layers=layers,
        heads=heads,
        vocab_size=len(tokenizer),
        max_positions=max_positions,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
