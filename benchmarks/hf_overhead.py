"""ASO step / plain step on Hugging Face model shapes, full fine-tune and LoRA, side by side.

    python -m benchmarks.aso_overhead --model gpt2-small-shape [--repeats 5] [--steps 2]
    python -m benchmarks.aso_overhead --model llama-1b-shape --device cuda --precision bf16

A random-init model of the named shape is built from its ``transformers`` config (no
download), then ``train_local`` runs plain and ASO rounds (M anchors, rank R) on the same
random token batches, for a full fine-tune and for LoRA adapters on all linear layers, in
interleaved repetitions. It prints per mode the median ASO/plain ratio of wall time per
step (paired per repetition), tokens per second, and the bytes that one model message
carries (every exchanged array: the whole model, or only the adapters) next to the anchors'.
On CUDA the clock waits for the GPU (``torch.cuda.synchronize``) before it is read.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from benchmarks.common import MIB, interleaved, machine_header, ratios, spread
from fedaso.config import ASOConfig, ModelConfig, TrainConfig
from fedaso.data import TensorSplit
from fedaso.models import HFCausalLM
from fedaso.models.arrays import model_to_arrays
from simulations.tools.random_hf import causal_lm_config

# name -> (architecture, config fields): random-init shapes of public models.
SHAPES: dict[str, tuple[str, dict[str, Any]]] = {
    "gpt2-small-shape": (
        "gpt2",
        {"width": 768, "layers": 12, "heads": 12, "vocab_size": 50257, "max_positions": 1024},
    ),
    # TinyLlama-1.1B's shape: 22 layers, d = 2048, grouped-query attention, 32K vocabulary.
    "llama-1b-shape": (
        "llama",
        {
            "width": 2048,
            "layers": 22,
            "heads": 32,
            "vocab_size": 32000,
            "max_positions": 2048,
            "intermediate_size": 5632,
            "num_key_value_heads": 4,
        },
    ),
    # A tiny Llama, to try the command in seconds.
    "tiny-llama-shape": (
        "llama",
        {"width": 64, "layers": 2, "heads": 4, "vocab_size": 512, "max_positions": 256},
    ),
}
MODES = ("full", "lora")


@dataclass(frozen=True)
class HFBench:
    """One mode's model, batches, anchors and settings."""

    model: HFCausalLM
    data: TensorSplit
    anchors: torch.Tensor  # (M, d)
    train: TrainConfig
    aso: ASOConfig

    def step_seconds(self, variant: str) -> float:
        """Wall seconds per local step of one ``train_local`` round of ``variant``."""
        from fedaso.training.trainer import train_local

        synchronize(self.train)
        start = time.perf_counter()
        result = train_local(
            self.model,
            self.data,
            anchors=self.anchors if variant == "aso" else None,
            aso=self.aso if variant == "aso" else None,
            train=self.train,
            seed=0,
        )
        synchronize(self.train)
        return (time.perf_counter() - start) / result.num_steps


def synchronize(train: TrainConfig) -> None:
    """Wait for the GPU, so that wall time covers its work."""
    if train.torch_device().type == "cuda":
        torch.cuda.synchronize()


def build_benches(args: argparse.Namespace) -> dict[str, HFBench]:
    """The full and LoRA models of ``args.model``'s shape, sharing one base initialization."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    arch, fields = SHAPES[args.model]
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(causal_lm_config(arch, **fields))
    lora = ModelConfig(lora_r=args.lora_r)
    peft_config = LoraConfig(
        r=lora.lora_r, lora_alpha=lora.lora_alpha, lora_dropout=0.0, target_modules="all-linear"
    )
    models = {
        "full": HFCausalLM(base, source=args.model),
        "lora": HFCausalLM(get_peft_model(copy.deepcopy(base), peft_config), source=args.model),
    }
    tokens = torch.randint(
        0, fields["vocab_size"], (args.steps * args.batch_size, args.seq_len + 1)
    )
    data = TensorSplit(inputs=tokens[:, :-1], targets=tokens[:, 1:])
    train = TrainConfig(
        batch_size=args.batch_size, lr=1e-5, local_epochs=1, device=args.device,
        precision=args.precision,
    )  # fmt: skip
    aso = ASOConfig(num_anchors=args.num_anchors, subspace_rank=args.subspace_rank)
    anchors = torch.randn(args.num_anchors, fields["width"])
    return {mode: HFBench(models[mode], data, anchors, train, aso) for mode in MODES}


def message_bytes(model: HFCausalLM) -> int:
    """Bytes of the model arrays one message carries (fp32, as exchanged)."""
    return sum(array.nbytes for array in model_to_arrays(model).values())


def run(args: argparse.Namespace) -> int:
    """Print the ratios, tokens per second and message bytes of ``args.model``."""
    benches = build_benches(args)
    tokens_per_step = args.batch_size * args.seq_len
    print(
        f"ASO overhead on {args.model} (random init): T={args.seq_len}, batch "
        f"{args.batch_size} ({tokens_per_step} tokens per step), M={args.num_anchors}, "
        f"R={args.subspace_rank}, device {args.device}, {args.precision}"
    )
    print(machine_header(torch.get_num_threads()))
    anchor_bytes = args.num_anchors * benches["full"].model.embedding_width * 4
    for mode, bench in benches.items():
        trainable = sum(p.numel() for p in bench.model.parameters() if p.requires_grad)
        calls = {variant: partial(bench.step_seconds, variant) for variant in ("plain", "aso")}
        times = interleaved(calls, repeats=args.repeats)
        ratio = ratios(times["aso"], times["plain"])
        print(f"\n{mode}: {trainable / 1e6:.1f}M trainable parameters")
        print(f"  ASO step / plain step: {spread(ratio)}")
        for variant in ("plain", "aso"):
            seconds = statistics.median(times[variant])
            print(
                f"  {variant:5s}: {seconds * 1e3:.1f} ms per step, "
                f"{tokens_per_step / seconds:.0f} tokens/s"
            )
        print(
            f"  bytes per model message: {message_bytes(bench.model) / MIB:.2f} MiB "
            f"(+ anchors {anchor_bytes / MIB:.2f} MiB)"
        )
    full, lora = (message_bytes(benches[m].model) for m in MODES)
    print(f"\nLoRA / full bytes per message: {lora / full:.4f}")
    return 0


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``--model SHAPE`` runs (``benchmarks.aso_overhead`` adds them)."""
    parser.add_argument(
        "--model", choices=["tinylm", *SHAPES], default="tinylm", help="model shape to time"
    )
    parser.add_argument("--device", default="cpu", help="hf shapes: auto | cpu | cuda")
    parser.add_argument("--precision", default="fp32", help="hf shapes: fp32 | bf16 | fp16")
    parser.add_argument("--lora-r", type=int, default=8, help="hf shapes: LoRA rank")
