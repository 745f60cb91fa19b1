"""Named GPT configurations for the language-model experiment and their factory.

The model is Hugging Face `transformers`' GPT-2 (`GPT2LMHeadModel` from a `GPT2Config`, nothing
downloaded, SDPA attention): the layout of the pretrained GPT-2 that the structure analysis
reads (mimetic.attention.pretrained), so one extraction code reads both, and its Conv1D
attention is what mimetic.attention.weights adapts. Its own initialization (normal 0.02, the
residual projections c_proj scaled by 1/sqrt(2 n_layer), tied input and output embeddings) is
the `default` arm, exactly as transformers draws it from the global RNG.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mimetic.registry import Registry

if TYPE_CHECKING:
    from torch import nn

# name -> GPT2Config arguments; the data decides the vocabulary
GPTS: Registry[Callable[[], dict[str, Any]]] = Registry("gpt model")
register_gpt = GPTS.register


@register_gpt("gpt_shakespeare_char")
def gpt_shakespeare_char() -> dict[str, Any]:
    """nanoGPT's shakespeare_char baby GPT: 6 layers, 6 heads of 64, width 384, context 256, dropout 0.2."""
    return dict(n_layer=6, n_head=6, n_embd=384, n_positions=256, dropout=0.2)


@register_gpt("gpt_char_tiny")
def gpt_char_tiny() -> dict[str, Any]:
    """A CPU-sized character GPT (the LM quickstart): 4 layers, 4 heads of 32, width 128, context 128."""
    return dict(n_layer=4, n_head=4, n_embd=128, n_positions=128, dropout=0.1)


@register_gpt("gpt2_small")
def gpt2_small() -> dict[str, Any]:
    """GPT-2 small's shape (the `gpt2` checkpoint the structure figures read): 12 layers, 12 heads
    of 64, width 768; 1,024 positions, dropout 0.1."""
    return dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, dropout=0.1)


def gpt_config(name: str, vocab_size: int) -> Any:
    """The GPT2Config of model `name` for a vocabulary of `vocab_size` tokens."""
    from transformers import GPT2Config

    args = GPTS.lookup(name)()
    dropout = args.pop("dropout")
    config = GPT2Config(vocab_size=vocab_size, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                        bos_token_id=None, eos_token_id=None, **args)
    config._attn_implementation = "sdpa"  # torch's fused attention; the weights are GPT-2's either way
    return config


def build_gpt(name: str, vocab_size: int) -> nn.Module:
    """GPT2LMHeadModel `name` with transformers' own initialization, drawn from the global RNG."""
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel(gpt_config(name, vocab_size))


def build_run_gpt(name: str, vocab_size: int, seed: int, init: str, init_params: dict[str, Any]) -> nn.Module:
    """A run's GPT: transformers' own initialization seeded by `seed`, then its attention init
    (whose noise has its own generator: every init leaves the global RNG where it was)."""
    import torch

    from mimetic.attention.init import apply_init

    torch.manual_seed(seed)
    return apply_init(build_gpt(name, vocab_size), init, seed=seed, **init_params)


def load_run_gpt(model: nn.Module, state: dict[str, Any]) -> nn.Module:
    """`model` with a run's final weights, which store the tied output embedding once (as
    transformer.wte.weight): every other key must match."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    if set(missing) != {"lm_head.weight"} or unexpected:
        raise ValueError(f"not this GPT's weights: missing {sorted(set(missing) - {'lm_head.weight'})}, "
                         f"unexpected {sorted(unexpected)}")
    return model
