"""ASO local step time over plain training on the reference LM, measured side by side.

    python -m benchmarks.aso_overhead [--repeats 15] [--steps 20] [--num-anchors 512]

Runs the same batches through plain training and through ASO (scoring, loss weighting,
projection hook, anchor update) in interleaved repetitions, so that machine noise hits both
alike, and prints the median step time of each and their ratio with its spread.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fedaso.config import ASOConfig, TrainConfig
from fedaso.data import TensorSplit
from fedaso.models import TinyLM, TinyLMConfig
from fedaso.trainer import train_local


def step_seconds(model_state, data, *, anchors, aso, train, dp_sgd=None) -> float:
    """Seconds per local step of one ``train_local`` call from the same starting weights."""
    model = TinyLM(TinyLMConfig(**model_state["config"]))
    model.load_state_dict(model_state["weights"])
    start = time.perf_counter()
    result = train_local(model, data, anchors=anchors, aso=aso, train=train, dp_sgd=dp_sgd)
    return (time.perf_counter() - start) / result.num_steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.aso_overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=15, help="interleaved repetitions")
    parser.add_argument("--steps", type=int, default=20, help="local steps per repetition")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-anchors", type=int, default=512)
    parser.add_argument("--subspace-rank", type=int, default=16)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    config = {"block_size": args.seq_len, "n_layer": args.layers, "n_embd": args.width, "n_head": 4}
    model = TinyLM(TinyLMConfig(**config))
    state = {"config": config, "weights": {k: v.clone() for k, v in model.state_dict().items()}}
    tokens = torch.randint(0, 256, (args.steps * args.batch_size, args.seq_len + 1))
    data = TensorSplit(inputs=tokens[:, :-1], targets=tokens[:, 1:])
    anchors = torch.randn(args.num_anchors, args.width)
    train = TrainConfig(batch_size=args.batch_size, lr=1e-3)
    variants = {
        "plain": ASOConfig(enabled=False),
        "aso": ASOConfig(num_anchors=args.num_anchors, subspace_rank=args.subspace_rank),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    ratios = []
    step_seconds(state, data, anchors=anchors, aso=variants["aso"], train=train)  # warm-up
    for _ in range(args.repeats):
        for name, aso in variants.items():
            times[name].append(step_seconds(state, data, anchors=anchors, aso=aso, train=train))
        ratios.append(times["aso"][-1] / times["plain"][-1])
    print(
        f"TinyLM d={args.width} layers={args.layers} T={args.seq_len} batch={args.batch_size} "
        f"M={args.num_anchors} R={args.subspace_rank}, torch threads={torch.get_num_threads()}"
    )
    for name, values in times.items():
        print(
            f"{name:>6} step: median {statistics.median(values) * 1e3:.2f} ms "
            f"(min {min(values) * 1e3:.2f}, max {max(values) * 1e3:.2f})"
        )
    quartiles = statistics.quantiles(ratios, n=4)
    print(
        f"ASO / plain step time: median {statistics.median(ratios):.3f} "
        f"(IQR {quartiles[0]:.3f}-{quartiles[2]:.3f}, {args.repeats} interleaved repeats)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
