"""Central pretraining of a small base language model on public text, before federation.

ASO presumes a model whose embedding space already carries meaning (spec section 1): in
practice, federated fine-tuning starts from a publicly pretrained base. Offline, the public
English text at hand is what ships with Python itself: CPython's pydoc topics
(``pydoc_data.topics``) and the docstrings of the standard library's modules, classes and
functions. This module trains a byte-level BPE tokenizer on that text (never on ``facts``),
trains a Llama-architecture causal LM on it with AdamW and a cosine schedule, reports the
held-out perplexity, and writes both in Hugging Face format, so that ``model = hf:DIR``
loads them. Results are cached by their settings (``PretrainConfig.cache_key``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import io
import json
import math
import random
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from fedaso.config import is_finite_number, require

# Stdlib modules whose import has side effects (opens a browser, prints, starts Tk) or
# that hold no prose; the rest are imported to read their docstrings.
_SKIPPED_MODULES = frozenset(
    {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3",
     "ensurepip", "venv", "test", "pydoc_data", "__hello__", "__phello__"}
)  # fmt: skip
_MIN_DOCSTRING_CHARS = 200  # shorter class/function docstrings are mostly signatures
_HELD_OUT_EVERY = 20  # every 20th document is held out for perplexity
METADATA_FILE = "pretrain.json"


@dataclass(frozen=True)
class PretrainConfig:
    """Shape and schedule of the base model; every field is part of the cache key."""

    width: int = 128  # hidden size d
    layers: int = 4  # transformer blocks
    heads: int = 4  # attention heads (2 key/value heads: grouped-query attention)
    vocab_size: int = 4096  # BPE vocabulary, trained on the pretraining text
    seq_len: int = 128  # tokens per training window
    max_positions: int = 512  # longest input the model accepts later
    batch_size: int = 16  # windows per step
    steps: int = 3000  # optimizer steps
    lr: float = 3e-3  # peak AdamW learning rate (linear warm-up, cosine decay to 10%)
    warmup: int = 150  # warm-up steps
    weight_decay: float = 0.1  # AdamW weight decay
    seed: int = 0  # seeds the weights and the order of windows

    def __post_init__(self) -> None:
        for key in ("width", "layers", "heads", "vocab_size", "seq_len", "batch_size", "steps"):
            value = getattr(self, key)
            require(isinstance(value, int) and value >= 1, key, value, "must be an integer >= 1")
        require(self.width % self.heads == 0, "width", self.width, "must be divisible by heads")
        require(self.heads % 2 == 0, "heads", self.heads, "must be even (2 key/value groups)")
        require(
            self.max_positions >= self.seq_len,
            "max_positions",
            self.max_positions,
            f"must be >= seq_len={self.seq_len}",
        )
        require(is_finite_number(self.lr) and self.lr > 0, "lr", self.lr, "must be > 0")
        require(
            isinstance(self.warmup, int) and 0 <= self.warmup < self.steps,
            "warmup",
            self.warmup,
            f"must be an integer in [0, steps={self.steps})",
        )

    def cache_key(self) -> str:
        """A short hash of the settings and of what shapes the text (Python's version)."""
        text = json.dumps(asdict(self) | {"python": sys.version_info[:2]}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PretrainResult:
    """What a pretraining run produced (also written to ``pretrain.json``)."""

    path: str  # folder holding the model and tokenizer
    parameters: int  # number of model parameters
    train_tokens: int  # tokens in the training split
    held_out_tokens: int  # tokens in the held-out split
    held_out_perplexity: float  # exp(mean cross-entropy) on the held-out split after training
    initial_perplexity: float  # the same before training (about the vocabulary size)
    seconds: float  # training wall time
    cached: bool  # True when an earlier run with the same settings was reused


def pretraining_texts() -> list[str]:
    """Public English prose shipped with CPython: pydoc topics and stdlib docstrings."""
    from pydoc_data.topics import topics

    texts = [topics[name] for name in sorted(topics)]
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in _SKIPPED_MODULES:
            continue
        texts.extend(_module_docstrings(name))
    return [text for text in texts if text.strip()]


def _module_docstrings(name: str) -> list[str]:
    """The docstrings of module ``name`` and of its public classes and functions."""
    # Importing some modules prints; reading deprecated attributes (typing.io) warns.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            module = importlib.import_module(name)
        except Exception:  # platform-specific modules fail to import: skip them
            return []
        docs = [inspect.getdoc(module) or ""]
        for attribute, value in sorted(vars(module).items()):
            defined_here = getattr(value, "__module__", None) == name
            if attribute.startswith("_") or not defined_here:
                continue
            if inspect.isclass(value) or inspect.isfunction(value):
                doc = inspect.getdoc(value) or ""
                docs.append(doc if len(doc) >= _MIN_DOCSTRING_CHARS else "")
    return docs


def split_held_out(texts: list[str]) -> tuple[list[str], list[str]]:
    """Every ``_HELD_OUT_EVERY``-th document held out; the rest trains."""
    held = [text for i, text in enumerate(texts) if i % _HELD_OUT_EVERY == _HELD_OUT_EVERY - 1]
    train = [text for i, text in enumerate(texts) if i % _HELD_OUT_EVERY != _HELD_OUT_EVERY - 1]
    return train, held


def token_windows(ids: list[int], seq_len: int) -> torch.Tensor:
    """Disjoint windows of ``seq_len + 1`` tokens over one id stream ``(n, seq_len + 1)``."""
    stream = torch.tensor(ids, dtype=torch.int64)  # (tokens,)
    usable = (len(stream) // (seq_len + 1)) * (seq_len + 1)
    return stream[:usable].reshape(-1, seq_len + 1)  # (n, T+1)


def learning_rate(step: int, config: PretrainConfig) -> float:
    """Linear warm-up to ``config.lr``, then cosine decay to a tenth of it."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def perplexity(model: torch.nn.Module, windows: torch.Tensor, *, batch_size: int = 32) -> float:
    """``exp`` of the mean next-token cross-entropy of ``model`` over ``windows``."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]  # (b, T+1)
        logits = model(input_ids=batch[:, :-1]).logits  # (b, T, V)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
        )
        total += loss.item()
        count += batch[:, 1:].numel()
    return math.exp(total / count)


ProgressCallback = Callable[[int, float], None]  # (step done, training loss)


def pretrain(
    config: PretrainConfig,
    *,
    cache_dir: Path,
    on_step: ProgressCallback | None = None,
) -> PretrainResult:
    """Train the base model, or reuse ``cache_dir/<cache key>`` if it already holds one."""
    folder = cache_dir / config.cache_key()
    if (folder / METADATA_FILE).is_file():
        metadata = json.loads((folder / METADATA_FILE).read_text())
        return PretrainResult(**(metadata["result"] | {"path": str(folder), "cached": True}))
    import transformers
    from transformers import AutoModelForCausalLM

    from fedaso.models.random_hf import causal_lm_config, train_bpe_tokenizer

    transformers.utils.logging.disable_progress_bar()
    train_texts, held_texts = split_held_out(pretraining_texts())
    tokenizer = train_bpe_tokenizer(train_texts, vocab_size=config.vocab_size)
    eos = [tokenizer.eos_token_id]
    encoded = tokenizer(train_texts, add_special_tokens=False)["input_ids"]
    train = token_windows([i for ids in encoded for i in [*ids, *eos]], config.seq_len)
    encoded = tokenizer(held_texts, add_special_tokens=False)["input_ids"]
    held = token_windows([i for ids in encoded for i in [*ids, *eos]], config.seq_len)
    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_config(
        causal_lm_config(
            "llama",
            width=config.width,
            layers=config.layers,
            heads=config.heads,
            vocab_size=len(tokenizer),
            max_positions=config.max_positions,
            tie_word_embeddings=True,
        )
    )
    initial = perplexity(model, held)
    started = time.perf_counter()
    _train(model, train, config, on_step)
    seconds = time.perf_counter() - started
    result = PretrainResult(
        path=str(folder),
        parameters=sum(p.numel() for p in model.parameters()),
        train_tokens=train.numel(),
        held_out_tokens=held.numel(),
        held_out_perplexity=perplexity(model, held),
        initial_perplexity=initial,
        seconds=seconds,
        cached=False,
    )
    _save(model, tokenizer, config, result, folder)
    return result


def _train(
    model: torch.nn.Module,
    windows: torch.Tensor,
    config: PretrainConfig,
    on_step: ProgressCallback | None,
) -> None:
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95)
    )
    order = random.Random(config.seed)
    batches: list[int] = []
    model.train()
    for step in range(config.steps):
        if len(batches) < config.batch_size:  # a new epoch: reshuffle the windows
            batches = list(range(len(windows)))
            order.shuffle(batches)
        rows, batches = batches[: config.batch_size], batches[config.batch_size :]
        batch = windows[rows]  # (B, T+1)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        # HF shifts the labels inside: T + 1 ids give T next-token targets.
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if on_step is not None:
            on_step(step + 1, loss.item())


def _save(
    model: Any,
    tokenizer: Any,
    config: PretrainConfig,
    result: PretrainResult,
    folder: Path,
) -> None:
    """Write to a temporary folder and rename, so an interrupted run leaves no half cache."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    metadata = {"config": asdict(config), "result": asdict(result) | {"path": ""}}
    (partial / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
