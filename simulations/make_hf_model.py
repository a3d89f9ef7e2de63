"""Write a small random-init Hugging Face model and its tokenizer, to try ``hf:`` offline.

The tokenizer is a byte-level BPE trained on FedASO's built-in text (CPython's pydoc topics
and the ``facts`` corpus); the model is a randomly initialized causal LM of the named
architecture. Use the folder as ``--set model=hf:DIR``. Your own models need none of this:
give ``hf:`` the folder (or hub name) of any ``AutoModelForCausalLM``.

    python -m simulations.make_hf_model --arch llama --out models/tiny-llama
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fedaso.data import dataset_texts
from simulations.console import CommandParser
from simulations.tools.random_hf import ARCHITECTURES, save_random_model

PROG = "python -m simulations.make_hf_model"


def build_parser(prog: str = PROG) -> CommandParser:
    """The command's flags: architecture, shape, vocabulary and output folder."""
    parser = CommandParser(prog, __doc__)
    parser.add_argument("--arch", choices=ARCHITECTURES, default="llama", help="architecture")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--width", type=int, default=64, help="hidden size d")
    parser.add_argument("--layers", type=int, default=2, help="transformer blocks")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--vocab-size", type=int, default=2048, help="BPE vocabulary size")
    parser.add_argument("--max-positions", type=int, default=256, help="longest input")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Write the model and tokenizer; print the ``hf:`` value to use."""
    args = build_parser(prog).parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = dataset_texts("pydoc") + dataset_texts("facts")
    out = save_random_model(
        args.out,
        arch=args.arch,
        texts=texts,
        vocab_size=args.vocab_size,
        width=args.width,
        layers=args.layers,
        heads=args.heads,
        max_positions=args.max_positions,
        seed=args.seed,
    )
    print(f"wrote {args.arch} (d={args.width}, {args.layers} layers) to {out}: model=hf:{out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
