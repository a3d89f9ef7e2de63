"""Central pretraining of a small base language model on public text, before federation.

ASO presumes a model whose embedding space already carries meaning (docs/SPEC.md section 1): in
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
import pkgutil
import random
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from fedaso.checks import is_finite_number, require

# Stdlib modules whose import has side effects (opens a browser, prints, starts Tk) or
# that hold no prose; the rest are imported to read their docstrings.
_SKIPPED_MODULES = frozenset(
    {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3",
     "ensurepip", "venv", "test", "pydoc_data", "__hello__", "__phello__"}
)  # fmt: skip
_MIN_DOCSTRING_CHARS = 80  # shorter docstrings are mostly one-line signatures
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
    steps: int = 2000  # optimizer steps
    lr: float = 3e-3  # peak AdamW learning rate (linear warm-up, cosine decay to 10%)
    warmup: int = 150  # warm-up steps
    weight_decay: float = 0.1  # AdamW weight decay
    eval_every: int = 200  # steps between held-out checks; the best checkpoint is kept
    seed: int = 0  # seeds the weights and the order of windows

    def __post_init__(self) -> None:
        positive = ("width", "layers", "heads", "vocab_size", "seq_len", "batch_size", "steps")
        for key in (*positive, "eval_every"):
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
    held_out_perplexity: float  # exp(mean cross-entropy) on the held-out split, best check
    initial_perplexity: float  # the same before training (about the vocabulary size)
    best_step: int  # the step of the kept checkpoint (the lowest held-out perplexity)
    curve: tuple[tuple[int, float], ...]  # (step, held-out perplexity) of every check
    seconds: float  # training wall time
    cached: bool  # True when an earlier run with the same settings was reused


def pretraining_texts() -> list[str]:
    """Public English prose shipped with CPython: pydoc topics and stdlib docstrings.

    Docstrings are those of the standard library's public modules and subpackages, and of
    their public classes, methods and functions; repeated ones are kept once.
    """
    from pydoc_data.topics import topics

    texts = [topics[name] for name in sorted(topics)]
    for module in _stdlib_modules():
        texts.extend(_module_docstrings(module))
    return [text for text in dict.fromkeys(texts) if text.strip()]


def _stdlib_modules() -> list[ModuleType]:
    """The importable public standard-library modules and their public submodules."""
    modules = []
    with _quiet():
        for name in sorted(sys.stdlib_module_names):
            if name.startswith("_") or name in _SKIPPED_MODULES:
                continue
            module = _import_or_none(name)
            if module is None:
                continue
            modules.append(module)
            for info in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
                parts = info.name.split(".")
                if not any(part.startswith("_") or part in ("test", "tests") for part in parts):
                    submodule = _import_or_none(info.name)
                    modules += [submodule] if submodule is not None else []
    return modules


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # Importing some modules prints; reading deprecated attributes (typing.io) warns.
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield


def _import_or_none(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except Exception:  # platform-specific modules fail to import: skip them
        return None


def _module_docstrings(module: ModuleType) -> list[str]:
    """The docstrings of ``module`` and of its public classes, methods and functions."""
    docs = [inspect.getdoc(module) or ""]
    with _quiet():
        for attribute, value in sorted(vars(module).items()):
            defined_here = getattr(value, "__module__", None) == module.__name__
            if attribute.startswith("_") or not defined_here:
                continue
            functions = [value] if inspect.isfunction(value) else []
            if inspect.isclass(value):
                docs.append(inspect.getdoc(value) or "")
                functions += [f for n, f in sorted(vars(value).items()) if inspect.isfunction(f)
                              and not n.startswith("_")]  # fmt: skip
            docs += [inspect.cleandoc(f.__doc__ or "") for f in functions]
    return [doc for doc in docs if len(doc) >= _MIN_DOCSTRING_CHARS]


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


def text_windows(tokenizer: Any, texts: list[str], seq_len: int) -> torch.Tensor:
    """``texts`` tokenized, each followed by EOS, as disjoint windows ``(n, seq_len + 1)``."""
    eos = [tokenizer.eos_token_id]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return token_windows([i for ids in encoded for i in [*ids, *eos]], seq_len)


def held_out_windows(tokenizer: Any, seq_len: int) -> torch.Tensor:
    """The pretraining corpus's held-out documents as windows ``(n, seq_len + 1)``.

    Text the base model never trained on: its perplexity there, before and after a
    fine-tune, is how much of its general language the fine-tune cost (forgetting).
    """
    return text_windows(tokenizer, split_held_out(pretraining_texts())[1], seq_len)


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


# (step done, training loss, latest held-out perplexity or NaN before the first check)
ProgressCallback = Callable[[int, float, float], None]


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
        result = metadata["result"] | {"path": str(folder), "cached": True}
        result["curve"] = tuple(tuple(point) for point in result["curve"])
        return PretrainResult(**result)
    import transformers
    from transformers import AutoModelForCausalLM

    from simulations.tools.random_hf import causal_lm_config, train_bpe_tokenizer

    transformers.utils.logging.disable_progress_bar()
    train_texts, held_texts = split_held_out(pretraining_texts())
    tokenizer = train_bpe_tokenizer(train_texts, vocab_size=config.vocab_size)
    train = text_windows(tokenizer, train_texts, config.seq_len)
    held = text_windows(tokenizer, held_texts, config.seq_len)
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
    curve = _train(model, train, held, config, on_step)
    seconds = time.perf_counter() - started
    best_step, best = min(curve, key=lambda point: point[1])
    result = PretrainResult(
        path=str(folder),
        parameters=sum(p.numel() for p in model.parameters()),
        train_tokens=train.numel(),
        held_out_tokens=held.numel(),
        held_out_perplexity=best,
        initial_perplexity=initial,
        best_step=best_step,
        curve=tuple(curve),
        seconds=seconds,
        cached=False,
    )
    _save(model, tokenizer, config, result, folder)
    return result


def _train(
    model: torch.nn.Module,
    windows: torch.Tensor,
    held: torch.Tensor,
    config: PretrainConfig,
    on_step: ProgressCallback | None,
) -> list[tuple[int, float]]:
    """Train; check held-out perplexity every ``eval_every`` steps and at the end.

    The model is left with the weights of the best check (early stopping: the text is
    small, and later epochs memorize it). Returns every ``(step, perplexity)`` check.
    """
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95)
    )
    order = random.Random(config.seed)
    batches: list[int] = []
    curve: list[tuple[int, float]] = []
    best_state: dict[str, torch.Tensor] = {}
    latest = math.nan
    for step in range(1, config.steps + 1):
        model.train()
        if len(batches) < config.batch_size:  # a new epoch: reshuffle the windows
            batches = list(range(len(windows)))
            order.shuffle(batches)
        rows, batches = batches[: config.batch_size], batches[config.batch_size :]
        batch = windows[rows]  # (B, T+1)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step - 1, config)
        # HF shifts the labels inside: T + 1 ids give T next-token targets.
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % config.eval_every == 0 or step == config.steps:
            latest = perplexity(model, held)
            if not curve or latest < min(value for _, value in curve):
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            curve.append((step, latest))
        if on_step is not None:
            on_step(step, loss.item(), latest)
    model.load_state_dict(best_state)
    return curve


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
