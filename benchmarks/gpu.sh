#!/usr/bin/env bash
# On a machine with a CUDA GPU: ASO's overhead and throughput on a ~1B-parameter Llama shape
# (random init, bf16 autocast), full fine-tune and LoRA. One command, under 10 minutes:
#
#     bash benchmarks/gpu.sh            # sets up .venv first if needed (make setup)
#
# It prints, per mode, the ASO step / plain step ratio (median of interleaved repetitions),
# tokens per second of both, and the bytes of one model message.
set -euo pipefail
cd "$(dirname "$0")/.."
make --quiet setup
.venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible to torch")'
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 570 .venv/bin/python -m benchmarks.aso_overhead --model llama-1b-shape \
    --device cuda --precision bf16 --repeats 5 --steps 4 --batch-size 8 --seq-len 512 \
    --num-anchors 512 --subspace-rank 16 --lora-r 16 "$@"
