"""Pretrain a small base language model on public text, for ``model = hf:DIR``.

Federated fine-tuning starts from a publicly pretrained base; this command makes one offline
(see ``simulations.tools.pretraining``): a byte-level BPE tokenizer and a Llama-architecture
causal LM trained on CPython's pydoc topics and standard-library docstrings, never on
``facts``. The result is cached by its settings, so a second call with the same flags
returns at once.

    python -m simulations.pretrain --out models/base
    fedaso run --set model=hf:models/base --dataset facts ...
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from simulations.console import CommandParser
from simulations.tools.pretraining import PretrainConfig, pretrain

PROG = "python -m simulations.pretrain"
DEFAULT_CACHE = Path(os.environ.get("FEDASO_CACHE", Path.home() / ".cache" / "fedaso")) / "pretrain"


def build_parser(prog: str = PROG) -> CommandParser:
    """The command's flags: one per ``PretrainConfig`` field, the output and cache folders."""
    parser = CommandParser(prog, __doc__)
    parser.add_argument("--out", required=True, type=Path, help="output folder (hf:OUT)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="cache folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    defaults = PretrainConfig()
    for field in fields(PretrainConfig):
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(default), default=default, dest=field.name)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Pretrain (or reuse the cache), copy the model to ``--out``, print its figures."""
    args = build_parser(prog).parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        config = PretrainConfig(**{f.name: getattr(args, f.name) for f in fields(PretrainConfig)})
    except ValueError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    bar = tqdm(total=config.steps, desc="pretraining", unit="step", disable=args.no_progress)

    def on_step(step: int, loss: float, held_out_perplexity: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", held_out_ppl=f"{held_out_perplexity:.1f}")

    result = pretrain(config, cache_dir=args.cache_dir, on_step=on_step)
    bar.close()
    if Path(result.path).resolve() != args.out.resolve():
        shutil.copytree(result.path, args.out, dirs_exist_ok=True)
    source = "cached" if result.cached else f"trained in {result.seconds:.0f} s"
    print(
        f"base model ({result.parameters:,} parameters, {source}): held-out perplexity "
        f"{result.held_out_perplexity:.2f} at step {result.best_step} (untrained "
        f"{result.initial_perplexity:.0f}), {result.train_tokens:,} training tokens; "
        f"use model=hf:{args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
