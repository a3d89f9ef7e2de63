"""Hugging Face causal LMs as FedASO models, fully fine-tuned or with LoRA adapters (PEFT).

``model = hf:NAME_OR_PATH`` loads ``AutoModelForCausalLM.from_pretrained(NAME_OR_PATH)``
(a local directory, or a hub name where the hub is reachable). Its **embedding point**
(docs/SPEC.md section 11) is found generically, with no per-architecture table: it is the input of
``get_output_embeddings()``, the LM head, i.e. the final hidden state after the last norm.
A forward pre-hook on the head routes that input through an ``nn.Identity`` tap and hands
the tap's output to the head, so the tensor that ASO scores and whose gradient it projects
is the very tensor the head reads, as with the reference TinyLM.

With ``peft = lora`` the base is frozen and PEFT's LoRA adapters are the only trainable
parameters; ``fedaso.models.arrays`` then exchanges only those (the base never travels), and the
final adapter is written with ``save_pretrained`` as PEFT users expect.
"""

from __future__ import annotations

import copy
import functools
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedaso.config.model import HF_PREFIX, ModelConfig, hf_source
from fedaso.models.cache import cached


class HFCausalLM(nn.Module):
    """A ``transformers`` causal LM (optionally a ``PeftModel``) with an embedding point."""

    def __init__(self, lm: nn.Module, *, source: str) -> None:
        super().__init__()
        self.lm = lm
        self.source = source
        head = lm.get_output_embeddings()  # type: ignore[operator]
        if head is None or getattr(head, "weight", None) is None:
            raise ValueError(
                f"model='hf:{source}' has no output embeddings (LM head): not a causal LM"
            )
        self.embedding_tap = nn.Identity()  # the embedding point: the LM head's input
        # The hook holds the tap, not self: a hook bound to self would make every model a
        # reference cycle, kept (weights, gradients, Adam state) until Python's cyclic
        # collector happens to run, in a client process that builds one per message.
        self._head_hook = head.register_forward_pre_hook(
            functools.partial(_route_through, self.embedding_tap)
        )
        self._width = int(head.weight.shape[1])
        config = lm.config
        self._max_length = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )

    @property
    def embedding_point(self) -> nn.Module:
        """The tap whose output is the hidden state the LM head reads."""
        return self.embedding_tap

    @property
    def embedding_width(self) -> int:
        """Width d of the hidden state (the head's input features)."""
        return self._width

    @property
    def max_length(self) -> int | None:
        """Longest input in tokens, when the config states one."""
        return None if self._max_length is None else int(self._max_length)

    @property
    def is_peft(self) -> bool:
        """True when ``lm`` is a ``PeftModel`` (only its adapters train and travel)."""
        return hasattr(self.lm, "peft_config")

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``(B, T, V)`` of right-padded ``input_ids`` ``(B, T)``.

        No attention mask is needed: padding sits right of every scored token, and a causal
        model's outputs at a position never see later positions.
        """
        return self.lm(input_ids=input_ids, use_cache=False).logits

    def save(self, out_dir: Path) -> Path:
        """Write the adapter to ``out_dir/adapter`` (LoRA) or the model to ``out_dir/model``.

        Both are ``save_pretrained`` layouts: ``PeftModel.from_pretrained(base, adapter)``
        and ``AutoModelForCausalLM.from_pretrained(model)`` load them. The tokenizer is
        saved beside a full model, so that the folder is a complete ``hf:`` model.
        """
        target = out_dir / ("adapter" if self.is_peft else "model")
        self.lm.save_pretrained(target)  # type: ignore[operator]
        if not self.is_peft:
            from fedaso.data.tokens import load_codec

            codec = load_codec(self.source)
            codec.tokenizer.save_pretrained(target)  # type: ignore[attr-defined]
        return target


def _route_through(tap: nn.Module, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook of the LM head: its input, passed through the embedding tap."""
    return (tap(args[0]), *args[1:])


def build_hf_model(config: ModelConfig) -> HFCausalLM:
    """A fresh model of the pretrained weights of ``config.model``, with LoRA if asked.

    The pretrained weights are read once per process (``fedaso.models.cache``, keyed by the
    files' identity) and never handed out themselves: a full fine-tune gets its own copy of
    every weight; under LoRA the frozen base of a fresh module tree *shares* the cached
    tensors (read-only: nothing writes a frozen weight), and only the adapters are new. LoRA's
    A matrices are drawn from torch's global RNG, so the caller seeds it; in a federation
    the server's initial adapters are sent anyway.
    """
    source = hf_source(config.model)
    pretrained = _pretrained(source)
    if config.peft != "lora":
        return HFCausalLM(copy.deepcopy(pretrained), source=source)
    lm = _add_lora(_share_weights(pretrained), config)
    _unshare_trainable(lm, pretrained)
    return HFCausalLM(lm, source=source)


def _share_weights(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters are new objects over the same tensors.

    New ``nn.Parameter`` objects, so that PEFT setting ``requires_grad=False`` on them leaves
    the cached module's own parameters trainable for a later full fine-tune. Buffers and
    modules are copied (hooks that Opacus or FedASO add land on the copy). Tied parameters
    stay tied: the memo maps each parameter once.
    """
    memo: dict[int, Any] = {
        id(param): nn.Parameter(param.detach(), requires_grad=param.requires_grad)
        for param in module.parameters()
    }
    return copy.deepcopy(module, memo)


def _unshare_trainable(lm: nn.Module, pretrained: nn.Module) -> None:
    """Give every trainable parameter of ``lm`` still on the cache's tensors its own copy.

    PEFT freezes the whole base under plain LoRA, so this finds nothing then; it guards the
    cache against PEFT options that leave part of the base trainable (``modules_to_save``,
    trainable biases), which training would otherwise write into every later model.
    """
    cached = {param.data_ptr() for param in pretrained.parameters()}
    for param in lm.parameters():
        if param.requires_grad and param.data_ptr() in cached:
            param.data = param.data.clone()


def _add_lora(lm: nn.Module, config: ModelConfig) -> nn.Module:
    """``lm`` wrapped by PEFT with ``config``'s LoRA adapters (which freezes its base)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules_list(),
        task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():
            # PEFT asks a transformers 5 model the deprecated is_gradient_checkpointing.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing")
            return get_peft_model(lm, lora)
    except ValueError as error:
        raise ValueError(
            f"lora-target-modules={config.lora_target_modules!r} does not fit "
            f"model={config.model!r}: {error}"
        ) from None


def require_transformers(model: str) -> None:
    """Raise ``ValueError`` naming ``model`` unless transformers and PEFT are installed."""
    try:
        import peft  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise ValueError(
            f"model={model!r} needs Hugging Face transformers and PEFT: "
            "pip install 'fedaso[hf]' (make setup installs them)"
        ) from None


def _read_pretrained(source: str) -> nn.Module:
    """The pretrained model at ``source``, in eval mode (cached below: never modify it)."""
    require_transformers(HF_PREFIX + source)
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"model='hf:{source}' could not be loaded: {error}".splitlines()[0]
        ) from None
    lm.eval()
    return lm


_pretrained = cached(_read_pretrained)
