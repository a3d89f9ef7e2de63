"""Tiny random-init Hugging Face models for the tests, built offline and cached per session.

Each architecture is written once per test session with ``save_pretrained`` (a tokenizer
trained on the fly with ``tokenizers`` beside it), so that ``model = hf:DIR`` loads it like
any user's model.
"""

import functools
import tempfile
from pathlib import Path

from fedaso.data import dataset_texts
from simulations.tools.random_hf import save_random_model

ROOT = Path(tempfile.mkdtemp(prefix="fedaso-test-hf-"))


@functools.cache
def tiny_hf_model(arch: str = "llama", width: int = 32) -> str:
    """Folder of a tiny ``arch`` model (d = ``width``, 2 layers) with a 400-token BPE."""
    texts = dataset_texts("facts", facts_entities=12)
    out = ROOT / f"{arch}-{width}"
    save_random_model(out, arch=arch, texts=texts, vocab_size=400, width=width, heads=4)
    return str(out)
