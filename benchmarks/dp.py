"""DP-SGD (Opacus) local step time over plain ASO on the reference LM, measured side by side.

    python -m benchmarks.dp [--repeats 15] [--steps 20] [--num-anchors 32] [--threads 1]

Runs the same data from the same starting weights through ASO local training and through
ASO under Opacus' DP-SGD (clipping, noise, Poisson batches), once with Opacus' per-sample
gradient hooks (``dp-grad-sample-mode = "hooks"``, the default) and once with its ghost
clipping (``"ghost"``: per-sample gradient norms only, then a second backward pass), in
interleaved repetitions so that machine noise hits all three alike. It prints the median
CPU time per step of each and the ratios, paired per repetition, with their spread. Times
are per step because Poisson sampling varies the examples per step.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from benchmarks.aso_overhead import add_setup_flags, memory_runs, setup_from_args, time_round
from benchmarks.common import (
    MIB,
    interleaved,
    machine_header,
    ratios,
    require_positive,
    spread,
    supports_rss,
)
from fedaso.privacy import DP_GRAD_SAMPLE_MODES, DPSGDConfig
from simulations.console import HelpFormatter


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.dp",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    add_setup_flags(parser, num_anchors=32, rank=8)
    parser.add_argument("--noise-multiplier", type=float, default=1.0)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--memory-repeats", type=int, default=3, help="0: skip memory")
    args = parser.parse_args(argv)
    require_positive(parser, args, ["repeats", "steps", "batch_size", "threads"])
    if args.memory_repeats < 0:
        parser.error(f"--memory-repeats={args.memory_repeats} must be >= 0")
    try:
        for mode in DP_GRAD_SAMPLE_MODES:
            DPSGDConfig(args.noise_multiplier, args.max_grad_norm, grad_sample_mode=mode)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    setup = setup_from_args(args)
    runs: dict[str, tuple[str, DPSGDConfig | None]] = {"aso": ("aso", None)}
    for mode in DP_GRAD_SAMPLE_MODES:
        dp_sgd = DPSGDConfig(
            noise_multiplier=args.noise_multiplier,
            max_grad_norm=args.max_grad_norm,
            grad_sample_mode=mode,
        )
        runs[f"dp-sgd {mode}"] = ("aso", dp_sgd)
    calls = {name: partial(time_round, setup, *run) for name, run in runs.items()}
    print(
        f"DP-SGD over ASO: TinyLM d={args.width}, {args.layers} layers, T={args.seq_len}, "
        f"batch {args.batch_size}, M={args.num_anchors}, R={args.subspace_rank}, "
        f"sigma={args.noise_multiplier}, clip={args.max_grad_norm}"
    )
    print(machine_header(torch.get_num_threads()))
    times = interleaved(calls, repeats=args.repeats)
    cpu = {name: [c for c, _ in values] for name, values in times.items()}
    print(f"\nms per local step (CPU time; {args.repeats} interleaved repeats):")
    for name, values in cpu.items():
        print(f"  {name:>15}: {spread(values, scale=1e3, digits=2)}")
    print()
    for mode in DP_GRAD_SAMPLE_MODES:
        print(
            f"DP-SGD ({mode}) / ASO step time: {spread(ratios(cpu[f'dp-sgd {mode}'], cpu['aso']))}"
        )
    print(
        "DP-SGD ghost / hooks step time: "
        f"{spread(ratios(cpu['dp-sgd ghost'], cpu['dp-sgd hooks']))}"
    )
    if args.memory_repeats and supports_rss():
        print_memory(memory_runs(setup, runs, args.memory_repeats, args.threads))
    return 0


def print_memory(runs: dict[str, list[tuple[int, int]]]) -> None:
    """Peak RSS growth during training of each run (fresh processes), and ghost / hooks."""
    growth = {name: [peak - before for before, peak in values] for name, values in runs.items()}
    print("\npeak RSS growth during training, MiB (fresh process per run):")
    for name, values in growth.items():
        print(f"  {name:>15}: {spread(values, scale=1 / MIB, digits=1)}")
    print(
        "DP-SGD ghost / hooks peak RSS growth: "
        f"{spread(ratios(growth['dp-sgd ghost'], growth['dp-sgd hooks']))}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
