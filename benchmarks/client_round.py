"""A client round at a Hugging Face model's shape: set-up before and after the caches, and
FedASO's plain local training against a bare PyTorch + PEFT loop.

    python -m benchmarks.client_round [--model gpt2-small-shape] [--steps 2] [--repeats 3]

A random-init model of the named shape is saved once to a temporary folder with a BPE
tokenizer, so that ``model = hf:DIR`` loads it as a user's model. For a full fine-tune and
for LoRA adapters, one plain (FedAvg) train message goes through the real ClientApp, and
these are timed in interleaved repetitions (every other one in reverse order):

* ``cold``: ``load_job`` (parse, build the model, load the message's arrays, tokenizer and
  data) after every per-process cache is cleared: what each message cost before the caches;
* ``warm``: the same with the caches kept (``fedaso.models.cache``, ``fedaso.data``);
* ``handler``: the whole ClientApp (its mods, ``load_job``, ``train_local``, the reply);
* ``alone``: ``train_local`` alone on the job's model and split, ASO off;
* ``bare``: a bare loop on the same model, batches (the same shuffled order) and Adam
  settings: ``lm(input_ids).logits``, cross-entropy, ``backward``, ``step``.

It prints the median seconds (with spread), tokens per second, set-up as a share of the
round, the plain/bare ratios (paired per repetition) and the LoRA round / full round ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.app.metadata import Metadata
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import interleaved, machine_header, ratios, require_positive, spread
from benchmarks.hf_overhead import SHAPES as HF_SHAPES
from clients.client_app import ClientJob, app, load_job
from clients.policy import SITE_POLICY_KEY
from clients.state import STATE_DIR_KEY
from fedaso.config import RunConfig, TrainConfig
from fedaso.config.client import ClientConfig
from fedaso.data import dataset_texts
from fedaso.data.tokens import IGNORE_INDEX
from fedaso.models import HFCausalLM
from fedaso.models.arrays import model_to_arrays
from fedaso.models.cache import clear_caches
from fedaso.training.trainer import train_local
from fedaso.wire import ARRAYS, CONFIG
from flower_wire.records import arrays_to_record
from simulations.tools.random_hf import causal_lm_config, train_bpe_tokenizer

SHAPES: dict[str, tuple[str, dict[str, Any]]] = HF_SHAPES | {
    # The knowledge setting's base (`fedaso pretrain` defaults): d = 128, 4 layers.
    "knowledge-base-shape": (
        "llama",
        {
            "width": 128,
            "layers": 4,
            "heads": 4,
            "vocab_size": 4096,
            "max_positions": 256,
            "num_key_value_heads": 2,
        },
    ),
}
MODES = {"full": "none", "lora": "lora"}
VARIANTS = ("cold", "warm", "handler", "alone", "bare")
FACTS_ENTITIES = 12  # entities per facts domain: a partition of a few thousand tokens
TOKENIZER_VOCAB = 1024  # BPE merges the facts text supports; the model's vocabulary stays


def save_shape_model(out_dir: Path, shape: str) -> Path:
    """Write a random-init model of ``shape`` and a BPE tokenizer trained on ``facts``."""
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.utils.logging.disable_progress_bar()
    arch, fields = SHAPES[shape]
    texts = dataset_texts("facts", facts_entities=FACTS_ENTITIES)
    tokenizer = train_bpe_tokenizer(texts, vocab_size=min(TOKENIZER_VOCAB, fields["vocab_size"]))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(causal_lm_config(arch, **fields))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def clear_process_caches() -> None:
    """Forget every per-process cache a client fills: models, tokenizers, corpora, rows.

    The partitions' on-disk cache (``FEDASO_CACHE_DIR``) stays: a deployed site keeps it.
    """
    from fedaso.data import corpora, partition

    clear_caches()
    corpora._build_corpus.cache_clear()
    partition.partition_rows.cache_clear()


def train_message(run: RunConfig, run_key: str = "client-round-bench") -> Message:
    """A round-1 train message of run ``run_key`` carrying ``run``'s initial model."""
    config = ClientConfig(run=run, server_round=1, run_key=run_key)
    content = RecordDict(
        {
            ARRAYS: arrays_to_record(model_to_arrays(run.build_model())),
            CONFIG: ConfigRecord(config.to_message()),
        }
    )
    # As a SuperNode receives it: Message's public constructor needs a server-side run.
    metadata = Metadata(
        run_id=1, message_id="m1", src_node_id=0, dst_node_id=1, reply_to_message_id="",
        group_id="1", created_at=time.time(), ttl=3600.0, message_type="train",
    )  # fmt: skip
    return Message(content=content, metadata=metadata)  # type: ignore[call-overload]


def node_context(state_dir: str) -> Context:
    """Partition 0 of 2 on a node with an open site policy (it allows ``hf:`` models)."""
    node_config: dict[str, bool | float | int | str] = {
        "partition-id": 0,
        "num-partitions": 2,
        STATE_DIR_KEY: state_dir,
        SITE_POLICY_KEY: "open",
    }
    return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config={})


@dataclass(frozen=True)
class RoundBench:
    """One mode's message and node, and the timed calls on them.

    No call collects garbage: a dropped model is freed at once (no reference cycle holds
    it, tests/unit/clients/test_client_cache.py), as in a client process between two messages.
    """

    message: Message
    context: Context

    def job(self) -> ClientJob:
        """The message's job, parsed and loaded (its model fresh from the message's arrays)."""
        return load_job(self.message, self.context)

    def setup_seconds(self, *, cold: bool) -> float:
        """Wall seconds of ``load_job``, after clearing the caches when ``cold``."""
        if cold:
            clear_process_caches()
        start = time.perf_counter()
        self.job()
        return time.perf_counter() - start

    def handler_seconds(self) -> float:
        """Wall seconds of the whole ClientApp on the message."""
        start = time.perf_counter()
        reply = app(self.message, self.context)
        seconds = time.perf_counter() - start
        if reply.has_error():
            raise RuntimeError(f"the ClientApp failed: {reply.error.reason}")
        return seconds

    def alone_seconds(self) -> float:
        """Wall seconds of ``train_local`` (ASO off) on a freshly loaded job."""
        job = self.job()
        start = time.perf_counter()
        train_local(
            job.model, job.data.train, anchors=None, aso=None, train=job.run.training, seed=job.seed
        )
        return time.perf_counter() - start

    def bare_seconds(self) -> float:
        """Wall seconds of a bare PyTorch loop on the same model, batches and optimizer."""
        job = self.job()
        model = hf_model(job)
        model._head_hook.remove()  # FedASO's embedding tap: not part of a bare loop
        start = time.perf_counter()
        bare_loop(
            model.lm, job.data.train.inputs, job.data.train.targets, job.run.training, job.seed
        )
        return time.perf_counter() - start


def hf_model(job: ClientJob) -> HFCausalLM:
    """The job's model, which this benchmark always makes an ``hf:`` one."""
    if not isinstance(job.model, HFCausalLM):
        raise TypeError(f"expected an hf: model, got {type(job.model).__name__}")
    return job.model


def bare_loop(
    lm: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, train: TrainConfig, seed: int
) -> float:
    """Train ``lm`` with Adam on shuffled batches, as anyone would; return the mean loss.

    The batches are those of ``fedaso.training.batches.make_loader``: a DataLoader shuffled by a
    generator seeded with ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        TensorDataset(inputs, targets), batch_size=train.batch_size, shuffle=True,
        generator=generator,
    )  # fmt: skip
    optimizer = torch.optim.Adam([p for p in lm.parameters() if p.requires_grad], lr=train.lr)
    dtype = train.autocast_dtype()
    lm.train()
    losses = []
    for step, (batch, batch_targets) in enumerate(loader):
        if step >= train.max_steps:
            break
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            logits = lm(input_ids=batch, use_cache=False).logits
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), batch_targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
        )  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return statistics.fmean(losses)


def round_tokens(bench: RoundBench) -> int:
    """Tokens one round scores (the same batches in every variant)."""
    job = bench.job()
    train = job.run.training
    windows = min(len(job.data.train), train.batch_size * train.max_steps)
    return windows * int(job.data.train.inputs.shape[1])


def make_bench(model_dir: Path, peft: str, args: argparse.Namespace, state_dir: str) -> RoundBench:
    """The mode's train message (``peft``) and node, on the saved model."""
    run = RunConfig.of(
        strategy="fedavg", model=f"hf:{model_dir}", peft=peft, dataset="facts",
        facts_entities=FACTS_ENTITIES, seq_len=args.seq_len, batch_size=args.batch_size,
        max_steps=args.steps, local_epochs=1, lr=1e-4, device="cpu", precision=args.precision,
    )  # fmt: skip
    return RoundBench(train_message(run), node_context(state_dir))


def time_modes(
    benches: Mapping[str, RoundBench], repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Seconds per mode and variant, over ``repeats`` interleaved repetitions of them all.

    Every repetition runs each mode's variants in turn (after a warm-up of each), so that
    the ratios of one repetition (plain/bare, LoRA/full) see the same machine load. Every
    other repetition runs them in reverse order: a call is slowed by what the call before
    it left (freed memory the allocator hands back, caches), and a fixed order would charge
    that to the same variant every time.
    """
    calls: dict[str, Callable[[], float]] = {}
    for mode, bench in benches.items():
        calls |= {
            f"{mode} cold": partial(bench.setup_seconds, cold=True),
            f"{mode} warm": partial(bench.setup_seconds, cold=False),
            f"{mode} handler": bench.handler_seconds,
            f"{mode} alone": bench.alone_seconds,
            f"{mode} bare": bench.bare_seconds,
        }
    results = interleaved(calls, repeats=1)
    backwards = dict(reversed(calls.items()))
    for repetition in range(1, repeats):
        order = backwards if repetition % 2 else calls
        for name, values in interleaved(order, repeats=1, warmup=False).items():
            results[name] += values
    return {mode: {v: results[f"{mode} {v}"] for v in VARIANTS} for mode in benches}


def print_mode(mode: str, bench: RoundBench, times: dict[str, list[float]]) -> None:
    """One mode's set-up, round, tokens per second and plain/bare ratios."""
    job = bench.job()
    trainable = sum(p.numel() for p in job.model.parameters() if p.requires_grad)
    tokens = round_tokens(bench)
    median = {variant: statistics.median(values) for variant, values in times.items()}
    print(f"\n{mode}: {trainable / 1e6:.2f}M trainable parameters, {tokens} tokens per round")
    print(f"  set-up per message, caches cleared (before): {spread(times['cold'])} s")
    print(f"  set-up per message, caches kept (after):     {spread(times['warm'])} s")
    print(f"  round (the ClientApp's train handler):       {spread(times['handler'])} s")
    print(
        f"  set-up / round: before {median['cold'] / median['handler']:.1%}, "
        f"after {median['warm'] / median['handler']:.1%}"
    )
    for variant in ("handler", "alone", "bare"):
        print(f"  tokens/s, {variant:7s}: {tokens / median[variant]:.0f}")
    print(f"  plain/bare (handler): {spread(ratios(times['bare'], times['handler']))}")
    print(f"  plain/bare (alone):   {spread(ratios(times['bare'], times['alone']))}")


def run(args: argparse.Namespace) -> int:
    """Save the model, time both modes, print the tables."""
    with tempfile.TemporaryDirectory(prefix="fedaso-client-round-") as tmp:
        model_dir = save_shape_model(Path(tmp) / "model", args.model)
        benches = {
            mode: make_bench(model_dir, peft, args, tempfile.mkdtemp(dir=tmp))
            for mode, peft in MODES.items()
        }
        config = hf_model(benches["full"].job()).lm.config
        attention = getattr(config, "_attn_implementation", "default")
        print(
            f"Client round on {args.model} (random init, {attention} attention): "
            f"seq-len {args.seq_len}, batch {args.batch_size}, {args.steps} steps, "
            f"{args.precision}, {args.repeats} repetitions"
        )
        print(machine_header(torch.get_num_threads()))
        times = time_modes(benches, args.repeats)
        for mode, bench in benches.items():
            print_mode(mode, bench, times[mode])
        lora_full = ratios(times["lora"]["handler"], times["full"]["handler"])
        print(f"\nLoRA round / full round (handler): {spread(lora_full)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and run."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.client_round", description=__doc__)
    parser.add_argument("--model", choices=list(SHAPES), default="gpt2-small-shape")
    parser.add_argument("--steps", type=int, default=2, help="local steps per round")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args(argv)
    require_positive(parser, args, ["steps", "batch_size", "seq_len", "repeats"])
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
