"""ASO local step time and peak memory over plain training, measured side by side.

    python -m benchmarks.aso_overhead [--repeats 15] [--steps 20] [--num-anchors 512]
        [--subspace-rank 16] [--widths 64,128,256] [--memory-repeats 3]
    python -m benchmarks.aso_overhead --model gpt2-small-shape   # benchmarks.hf_overhead

On the reference LM (TinyLM, d=64, 2 layers, T=64, batch 16, so N=1024 tokens per step),
with M anchors and subspace rank R, it prints:

1. Step time of plain training and of ASO (scoring, loss weighting, projection hook,
   anchor update) and of ASO with one mechanism ablated at a time, all from the same
   starting weights on the same batches, in interleaved repetitions; ratios to plain are
   paired per repetition. Time is this process's CPU time (one torch thread), which on a
   shared machine excludes the time spent waiting for a core; wall time is printed too.
2. The breakdown: paired ablation differences, and each component timed in isolation on
   the tensors of one real step (the report's table lists similarity, projection and anchor
   update separately).
3. A width sweep: ASO costs O(N M d) per step against the model's O(N L d^2), so the ratio
   falls as the model widens; each width also gets its ratio of matrix-multiply FLOPs
   (counted by ``torch.utils.flop_counter``, independent of the machine).
4. Peak memory: each run in a fresh process, the growth of its peak resident set size
   during training (the peak is reset just before training starts; Linux only).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import hf_overhead
from benchmarks.common import (
    MIB,
    current_rss_bytes,
    interleaved,
    machine_header,
    peak_rss_bytes,
    ratios,
    require_positive,
    reset_peak_rss,
    spread,
    supports_rss,
)
from fedaso.aso.anchors import ema_update_towards
from fedaso.aso.projection import project_gradient, semantic_subspace
from fedaso.aso.relevance import (
    column_max,
    cosine_similarities,
    relevance_from_similarities,
    score_tokens,
)
from fedaso.config import ASOConfig, TrainConfig
from fedaso.data import TensorSplit
from fedaso.models import TinyLM, TinyLMConfig
from fedaso.privacy import DPSGDConfig
from fedaso.training.batches import EmbeddingCapture, per_token_losses
from fedaso.training.trainer import LocalTrainResult, train_local
from simulations.console import HelpFormatter

# ASOConfig overrides of each variant; None is plain training.
VARIANTS: dict[str, dict[str, bool] | None] = {
    "plain": None,
    "aso": {},
    "no-projection": {"project_gradients": False},
    "static-anchors": {"update_anchors": False},
    "lambda-only": {"project_gradients": False, "update_anchors": False},
}


@dataclass(frozen=True)
class Setup:
    """One benchmark configuration: model shape, starting weights, batches and anchors."""

    model: TinyLMConfig
    weights: dict[str, torch.Tensor]
    data: TensorSplit
    anchors: torch.Tensor  # (M, d)
    train: TrainConfig
    num_anchors: int
    subspace_rank: int

    def aso(self, variant: str) -> ASOConfig | None:
        """The ASOConfig of ``variant`` (see ``VARIANTS``); None trains plainly."""
        overrides = VARIANTS[variant]
        if overrides is None:
            return None
        return ASOConfig(
            num_anchors=self.num_anchors, subspace_rank=self.subspace_rank, **overrides
        )

    def train_round(
        self,
        model: TinyLM,
        variant: str,
        dp_sgd: DPSGDConfig | None = None,
        data: TensorSplit | None = None,
    ) -> LocalTrainResult:
        """One ``train_local`` round of ``variant`` on ``data`` (default: all batches)."""
        return train_local(
            model,
            self.data if data is None else data,
            anchors=self.anchors,
            aso=self.aso(variant),
            train=self.train,
            seed=0,
            dp_sgd=dp_sgd,
        )

    def fresh_model(self) -> TinyLM:
        """The model at the shared starting weights."""
        model = TinyLM(self.model)
        model.load_state_dict(self.weights)
        return model


def make_setup(
    *,
    width: int,
    layers: int,
    seq_len: int,
    batch_size: int,
    steps: int,
    num_anchors: int,
    subspace_rank: int,
    seed: int = 0,
) -> Setup:
    """Seeded random bytes as data, random anchors, one model initialization."""
    torch.manual_seed(seed)
    config = TinyLMConfig(block_size=seq_len, n_layer=layers, n_embd=width, n_head=4)
    weights = {k: v.clone() for k, v in TinyLM(config).state_dict().items()}
    tokens = torch.randint(0, 256, (steps * batch_size, seq_len + 1))
    return Setup(
        model=config,
        weights=weights,
        data=TensorSplit(inputs=tokens[:, :-1], targets=tokens[:, 1:]),
        anchors=torch.randn(num_anchors, width),
        train=TrainConfig(batch_size=batch_size, lr=1e-3, local_epochs=1),
        num_anchors=num_anchors,
        subspace_rank=subspace_rank,
    )


def time_round(
    setup: Setup, variant: str, dp_sgd: DPSGDConfig | None = None
) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per local step of one ``train_local`` round.

    Per step, because DP-SGD's Poisson sampling varies the number of examples per step.
    """
    model = setup.fresh_model()
    cpu, wall = time.process_time(), time.perf_counter()
    result = setup.train_round(model, variant, dp_sgd)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / result.num_steps, wall / result.num_steps


def step_times(
    setup: Setup, variants: list[str], repeats: int
) -> dict[str, list[tuple[float, float]]]:
    """Interleaved repetitions of every variant, after one warm-up round each."""
    calls = {variant: partial(time_round, setup, variant) for variant in variants}
    return interleaved(calls, repeats=repeats)


def step_tensors(setup: Setup) -> dict[str, torch.Tensor]:
    """Embeddings, per-token losses and an incoming gradient of one real training step."""
    model = setup.fresh_model()
    inputs = setup.data.inputs[: setup.train.batch_size]
    targets = setup.data.targets[: setup.train.batch_size]
    with EmbeddingCapture(model.embedding_point) as capture:
        losses = per_token_losses(model(inputs), targets)
        embedding = capture.output
    gradient = torch.autograd.grad(losses.mean(), embedding)[0]
    return {
        "embeddings": embedding.detach().reshape(-1, setup.model.n_embd),  # (N, d)
        "losses": losses.detach(),  # (N,)
        "gradient": gradient.reshape(-1, setup.model.n_embd),  # (N, d)
    }


def component_calls(setup: Setup) -> dict[str, Callable[[], object]]:
    """Each ASO component of one step as a call on the tensors of a real step."""
    tensors = step_tensors(setup)
    aso = setup.aso("aso")
    embeddings, anchors = tensors["embeddings"], setup.anchors
    scores = score_tokens(embeddings=embeddings, anchors=anchors, tau=aso.aso_tau)
    similarities = cosine_similarities(embeddings=embeddings, anchors=anchors)
    basis = semantic_subspace(anchors=anchors, rank=aso.subspace_rank)
    relevance, losses = scores.relevance, tensors["losses"]
    return {
        "scoring, fused (score_tokens)": lambda: score_tokens(
            embeddings=embeddings, anchors=anchors, tau=aso.aso_tau
        ),
        "  part: cosine similarities (N x M)": lambda: cosine_similarities(
            embeddings=embeddings, anchors=anchors
        ),
        "  part: relevance from similarities": lambda: relevance_from_similarities(
            similarities=similarities, tau=aso.aso_tau
        ),
        "  part: nearest token per anchor": lambda: column_max(similarities),
        "loss weighting": lambda: ((1.0 + aso.aso_lambda * relevance) * losses).mean(),
        "projection hook": lambda: project_gradient(
            gradient=tensors["gradient"], basis=basis, relevance=relevance
        ),
        "anchor update": lambda: ema_update_towards(
            anchors=anchors,
            embeddings=embeddings,
            nearest_token=scores.nearest_token,
            alpha=aso.aso_alpha,
        ),
        "subspace SVD (once per round)": lambda: semantic_subspace(
            anchors=anchors, rank=aso.subspace_rank
        ),
    }


def component_times(
    calls: dict[str, Callable[[], object]], repeats: int, inner: int = 10
) -> dict[str, list[float]]:
    """CPU seconds per call of each component, interleaved, ``inner`` calls per sample."""

    def per_call(call: Callable[[], object]) -> float:
        start = time.process_time()
        for _ in range(inner):
            call()
        return (time.process_time() - start) / inner

    return interleaved(
        {name: partial(per_call, call) for name, call in calls.items()}, repeats=repeats
    )


def matmul_flops(setup: Setup, variant: str) -> int:
    """Matrix-multiply FLOPs of one local step (forward, backward, ASO), counted by torch."""
    one_batch = TensorSplit(
        inputs=setup.data.inputs[: setup.train.batch_size],
        targets=setup.data.targets[: setup.train.batch_size],
    )
    counter = FlopCounterMode(display=False)
    with counter:
        setup.train_round(setup.fresh_model(), variant, data=one_batch)
    return counter.get_total_flops()


def peak_rss_growth(
    setup: Setup, variant: str, threads: int, dp_sgd: DPSGDConfig | None = None
) -> tuple[int, int]:
    """In this (fresh) process: (RSS before training, peak RSS during training), bytes."""
    torch.set_num_threads(threads)
    model = setup.fresh_model()
    reset_peak_rss()
    before = current_rss_bytes()
    setup.train_round(model, variant, dp_sgd)
    return before, peak_rss_bytes()


def memory_runs(
    setup: Setup,
    runs: Mapping[str, tuple[str, DPSGDConfig | None]],
    repeats: int,
    threads: int,
) -> dict[str, list[tuple[int, int]]]:
    """Interleaved runs of each named ``(variant, DP-SGD config)``, each in a fresh process."""

    def in_fresh_process(variant: str, dp_sgd: DPSGDConfig | None) -> tuple[int, int]:
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            return pool.submit(peak_rss_growth, setup, variant, threads, dp_sgd).result()

    calls = {name: partial(in_fresh_process, *run) for name, run in runs.items()}
    return interleaved(calls, repeats=repeats, warmup=False)


def print_step_section(setup: Setup, times: dict[str, list[tuple[float, float]]]) -> None:
    plain_cpu = [cpu for cpu, _ in times["plain"]]
    plain_wall = [wall for _, wall in times["plain"]]
    repeats = len(plain_cpu)
    print(f"\n1. step time, ms per local step (CPU time; {repeats} interleaved repeats):")
    for variant, values in times.items():
        print(f"  {variant:>15}: {spread([c for c, _ in values], scale=1e3, digits=2)}")
    print("\n   ratios to plain, paired per repeat:")
    for variant, values in times.items():
        if variant == "plain":
            continue
        cpu = ratios([c for c, _ in values], plain_cpu)
        wall = ratios([w for _, w in values], plain_wall)
        print(f"  {variant:>15} / plain: CPU {spread(cpu)}; wall {spread(wall)}")
    aso_cpu = ratios([c for c, _ in times["aso"]], plain_cpu)
    print(
        f"\nASO / plain step time: {spread(aso_cpu)} "
        f"[M={setup.num_anchors}, R={setup.subspace_rank}, d={setup.model.n_embd}, CPU time]"
    )


def print_breakdown(times: dict[str, list[tuple[float, float]]], isolated: dict) -> None:
    cpu = {v: [c for c, _ in values] for v, values in times.items()}
    plain = statistics.median(cpu["plain"])
    print("\n2. breakdown, % of the plain step")
    print("   a) ablations (paired differences in one run):")
    for label, (high, low) in {
        "scoring + loss weighting (lambda-only - plain)": ("lambda-only", "plain"),
        "projection hook (aso - no-projection)": ("aso", "no-projection"),
        "anchor update (aso - static-anchors)": ("aso", "static-anchors"),
        "all of ASO (aso - plain)": ("aso", "plain"),
    }.items():
        deltas = [(h - lo) / p for h, lo, p in zip(cpu[high], cpu[low], cpu["plain"], strict=True)]
        print(f"  {label:>48}: {spread(deltas, scale=100, digits=1)} %")
    print("   b) each component alone on one step's tensors (ms per call; % of plain step):")
    for name, values in isolated.items():
        median = statistics.median(values)
        print(f"  {name:>48}: {median * 1e3:7.3f} ms  {100 * median / plain:5.1f} %")


def print_sweep(rows: list[dict[str, float]], repeats: int, steps: int) -> None:
    print(f"\n3. width sweep ({repeats} interleaved repeats x {steps} steps per width):")
    print(f"  {'d':>5} {'plain ms':>9} {'ASO ms':>9} {'ASO/plain (CPU)':>30} {'FLOP ratio':>11}")
    for row in rows:
        print(
            f"  {row['width']:>5} {row['plain_ms']:9.2f} {row['aso_ms']:9.2f} "
            f"{row['ratio']:>30} {row['flop_ratio']:11.4f}"
        )


def print_memory(runs: dict[str, list[tuple[int, int]]]) -> None:
    growth = {v: [peak - before for before, peak in values] for v, values in runs.items()}
    peaks = {v: [peak for _, peak in values] for v, values in runs.items()}
    print(f"\n4. peak memory (fresh process per run, {len(growth['plain'])} interleaved runs):")
    for variant in growth:
        print(
            f"  {variant:>6}: peak RSS {spread(peaks[variant], scale=1 / MIB, digits=1)} MiB; "
            f"growth during training {spread(growth[variant], scale=1 / MIB, digits=1)} MiB"
        )
    extra = [a - p for a, p in zip(growth["aso"], growth["plain"], strict=True)]
    print(
        f"ASO / plain peak RSS: {spread(ratios(peaks['aso'], peaks['plain']))}; "
        f"ASO - plain growth during training: {spread(extra, scale=1 / MIB, digits=1)} MiB"
    )


def width_sweep(args: argparse.Namespace) -> list[dict[str, float]]:
    rows = []
    for width in args.widths:
        setup = setup_from_args(args, width=width, steps=args.sweep_steps)
        times = step_times(setup, ["plain", "aso"], args.sweep_repeats)
        cpu = {v: [c for c, _ in values] for v, values in times.items()}
        rows.append(
            {
                "width": width,
                "plain_ms": statistics.median(cpu["plain"]) * 1e3,
                "aso_ms": statistics.median(cpu["aso"]) * 1e3,
                "ratio": spread(ratios(cpu["aso"], cpu["plain"])),
                "flop_ratio": matmul_flops(setup, "aso") / matmul_flops(setup, "plain"),
            }
        )
    return rows


def add_setup_flags(parser: argparse.ArgumentParser, *, num_anchors: int, rank: int) -> None:
    """The flags of :func:`make_setup` (and of the timing loop), shared with benchmarks.dp."""
    parser.add_argument("--repeats", type=int, default=15, help="interleaved repetitions")
    parser.add_argument("--steps", type=int, default=20, help="local steps per repetition")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-anchors", type=int, default=num_anchors)
    parser.add_argument("--subspace-rank", type=int, default=rank)
    parser.add_argument("--width", type=int, default=64, help="reference model width d")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")


SETUP_FLAGS = ("width", "layers", "seq_len", "batch_size", "steps", "num_anchors", "subspace_rank")


def setup_from_args(args: argparse.Namespace, **overrides: int) -> Setup:
    """:func:`make_setup` with the flags of :func:`add_setup_flags`, some overridden."""
    return make_setup(**({name: getattr(args, name) for name in SETUP_FLAGS} | overrides))


HF_DEFAULTS = {"repeats": 5, "steps": 2, "batch_size": 4, "seq_len": 128}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.aso_overhead",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    add_setup_flags(parser, num_anchors=512, rank=16)
    parser.add_argument(
        "--widths",
        type=lambda text: [int(w) for w in text.split(",") if w],
        default=[64, 128, 256],
        help="comma-separated widths of the sweep (empty: no sweep)",
    )
    parser.add_argument("--sweep-repeats", type=int, default=5)
    parser.add_argument("--sweep-steps", type=int, default=5)
    parser.add_argument("--memory-repeats", type=int, default=3, help="0: skip memory")
    hf_overhead.add_flags(parser)
    args = parser.parse_args(argv)
    if args.model != "tinylm":
        # A Hugging Face shape is far larger: fewer, smaller steps unless flags say otherwise.
        for name, value in HF_DEFAULTS.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    require_positive(
        parser, args, ["repeats", "steps", "batch_size", "sweep_repeats", "sweep_steps", "threads"]
    )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.model != "tinylm":
        return hf_overhead.run(args)
    torch.set_num_threads(args.threads)
    setup = setup_from_args(args)
    print(
        f"ASO overhead: TinyLM d={args.width}, {args.layers} layers, T={args.seq_len}, "
        f"batch {args.batch_size} (N={args.batch_size * args.seq_len} tokens per step), "
        f"M={args.num_anchors}, R={args.subspace_rank}"
    )
    print(machine_header(torch.get_num_threads()))
    times = step_times(setup, list(VARIANTS), args.repeats)
    print_step_section(setup, times)
    isolated = component_times(component_calls(setup), args.repeats)
    print_breakdown(times, isolated)
    if args.widths:
        print_sweep(width_sweep(args), args.sweep_repeats, args.sweep_steps)
    if args.memory_repeats and supports_rss():
        runs = {"plain": ("plain", None), "aso": ("aso", None)}
        print_memory(memory_runs(setup, runs, args.memory_repeats, args.threads))
    print(machine_header(torch.get_num_threads()).split(";")[0].replace("machine", "at the end"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
