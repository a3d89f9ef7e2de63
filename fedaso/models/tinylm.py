"""The reference language model: a small causal byte-level transformer (TinyLM).

It is built only from ``nn.Embedding``, ``nn.Linear`` and ``nn.LayerNorm`` (attention is
written out with ``scaled_dot_product_attention``) so that Opacus can compute per-sample
gradients for them, and it exposes its **embedding point** (docs/SPEC.md section 1): the module
whose output is the per-token embedding that ASO scores and whose gradient it projects.
That is the final LayerNorm, whose output feeds the LM head. It follows nanoGPT's
``model.py`` layout, much smaller.

The embedding point is an ``nn.Identity`` tap right after that LayerNorm, not the LayerNorm
itself. Under Opacus, the LayerNorm's output is re-wrapped by its full backward hook after
forward hooks run, so a gradient hook on the LayerNorm's raw output would act *after* Opacus
captured the LayerNorm's own per-sample gradients. The tap returns the wrapped tensor itself,
so the ASO projection hook on it runs first and every parameter upstream of the embedding
point, the LayerNorm's included, sees the projected gradient (tests/test_dp_sgd.py). The tap
has no parameters and changes no number or state_dict key.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TinyLMConfig:
    """Shape of the reference language model."""

    vocab_size: int = 256  # byte-level vocabulary
    block_size: int = 64  # longest context in tokens
    n_layer: int = 2  # transformer blocks
    n_head: int = 4  # attention heads; n_embd must divide by it
    n_embd: int = 64  # embedding width d

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TinyLMConfig.{name}={value!r} must be an integer >= 1")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one fused query/key/value projection."""

    def __init__(self, config: TinyLMConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape  # (B, T, d)
        q, k, v = self.qkv(x).split(width, dim=2)  # 3 x (B, T, d)
        head_shape = (batch, seq, self.n_head, width // self.n_head)
        q, k, v = (t.view(head_shape).transpose(1, 2) for t in (q, k, v))  # (B, H, T, d/H)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, d/H)
        return self.proj(y.transpose(1, 2).reshape(batch, seq, width))  # (B, T, d)


class Block(nn.Module):
    """Pre-norm transformer block: attention then a 4x MLP, each with a residual."""

    def __init__(self, config: TinyLMConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.fc_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, T, d)
        return x + self.fc_proj(F.gelu(self.fc(self.ln_2(x))))  # (B, T, d)


class TinyLM(nn.Module):
    """Byte-level causal transformer; ``embedding_point`` is the final LayerNorm."""

    def __init__(self, config: TinyLMConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.embedding_tap = nn.Identity()  # the embedding point: ln_f's output, see above
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    @property
    def embedding_point(self) -> nn.Module:
        """The module whose output is the per-token embedding fed to the LM head."""
        return self.embedding_tap

    @property
    def embedding_width(self) -> int:
        """Width d of the embedding point's output."""
        return self.config.n_embd

    @property
    def max_length(self) -> int:
        """Longest input in tokens."""
        return self.config.block_size

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Return next-token logits ``(B, T, V)`` for ``token_ids`` ``(B, T)``."""
        batch, seq = token_ids.shape
        if seq > self.config.block_size:
            raise ValueError(f"sequence length {seq} exceeds block_size={self.config.block_size}")
        # Positions get a batch dimension first, as Opacus expects, and are materialized
        # (not a stride-0 expand) because its ghost-clipping norm of an embedding views them.
        positions = torch.arange(seq, device=token_ids.device).repeat(batch, 1)  # (B, T)
        x = self.token_embedding(token_ids) + self.position_embedding(positions)  # (B, T, d)
        for block in self.blocks:
            x = block(x)  # (B, T, d)
        return self.lm_head(self.embedding_tap(self.ln_f(x)))  # (B, T, V)
