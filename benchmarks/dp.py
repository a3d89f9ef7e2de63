"""DP-SGD (Opacus) local step time over plain ASO on the reference LM, measured side by side.

    python -m benchmarks.dp [--repeats 15] [--steps 20] [--num-anchors 32]

Runs the same data through ASO local training and through ASO under Opacus' DP-SGD
(per-sample gradients, clipping, noise, Poisson batches) in interleaved repetitions, so that
machine noise hits both alike, and prints the median step time of each and their ratio with
its spread. Per-step times are used because Poisson sampling varies the number of steps.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from benchmarks.aso_overhead import step_seconds
from fedaso.config import ASOConfig, TrainConfig
from fedaso.data import TensorSplit
from fedaso.models import TinyLM, TinyLMConfig
from fedaso.privacy import DPSGDConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.dp",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=15, help="interleaved repetitions")
    parser.add_argument("--steps", type=int, default=20, help="local steps per repetition")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-anchors", type=int, default=32)
    parser.add_argument("--subspace-rank", type=int, default=8)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--noise-multiplier", type=float, default=1.0)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    config = {"block_size": args.seq_len, "n_layer": args.layers, "n_embd": args.width, "n_head": 4}
    model = TinyLM(TinyLMConfig(**config))
    state = {"config": config, "weights": {k: v.clone() for k, v in model.state_dict().items()}}
    tokens = torch.randint(0, 256, (args.steps * args.batch_size, args.seq_len + 1))
    data = TensorSplit(inputs=tokens[:, :-1], targets=tokens[:, 1:])
    anchors = torch.randn(args.num_anchors, args.width)
    train = TrainConfig(batch_size=args.batch_size, lr=1e-3)
    aso = ASOConfig(num_anchors=args.num_anchors, subspace_rank=args.subspace_rank)
    variants = {
        "aso": None,
        "aso+dp-sgd": DPSGDConfig(
            noise_multiplier=args.noise_multiplier, max_grad_norm=args.max_grad_norm
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    ratios = []
    for dp_sgd in variants.values():  # warm-up
        step_seconds(state, data, anchors=anchors, aso=aso, train=train, dp_sgd=dp_sgd)
    for _ in range(args.repeats):
        for name, dp_sgd in variants.items():
            seconds = step_seconds(
                state, data, anchors=anchors, aso=aso, train=train, dp_sgd=dp_sgd
            )
            times[name].append(seconds)
        ratios.append(times["aso+dp-sgd"][-1] / times["aso"][-1])
    print(
        f"TinyLM d={args.width} layers={args.layers} T={args.seq_len} batch={args.batch_size} "
        f"M={args.num_anchors} R={args.subspace_rank} sigma={args.noise_multiplier} "
        f"clip={args.max_grad_norm}, torch threads={torch.get_num_threads()}"
    )
    for name, values in times.items():
        print(
            f"{name:>10} step: median {statistics.median(values) * 1e3:.2f} ms "
            f"(min {min(values) * 1e3:.2f}, max {max(values) * 1e3:.2f})"
        )
    quartiles = statistics.quantiles(ratios, n=4)
    print(
        f"DP-SGD ASO / plain ASO step time: median {statistics.median(ratios):.3f} "
        f"(IQR {quartiles[0]:.3f}-{quartiles[2]:.3f}, {args.repeats} interleaved repeats)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
