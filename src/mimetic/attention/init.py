"""Initializations (a config arm's `init`) as plug-ins that declare what they write.

An init is registered with `@register_init(name, touches=..., params=...)`:

* `touches` names the tensors it may change: `q`, `k`, `v`, `proj` for those parts of every
  attention layer (`qkv` rows, `proj`), anything else a regular expression over the model's
  parameter names (`pos_embed`, `blocks\\.\\d+\\.mlp\\.fc1\\.weight`);
* `params` gives each parameter its default, bounds or choices and a description: the config's
  arm schema and the planning-time check are made from them (mimetic.generated, check_params).

`apply_init` runs it on a model that holds the model's own initialization and then compares every
tensor part with what it was: a change to a part the init did not declare stops the run naming
that part (a fair comparison means the arms differ in what they declare, and nothing else). The
constructions live in `_mimetic` (mimetic, its ablations, the identity controls, the MLP mean),
`_successors` (impulse, conditioned) and `_weight_selection` (a teacher's weights), the registry
in `_spec`; importing this module registers them, without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# The registry and the constructions, which register themselves on import (without torch).
from mimetic.attention import _mimetic, _successors, _weight_selection  # noqa: F401
from mimetic.attention._spec import (ATTENTION_PARTS, INITS, NOISE, Init, Param, check_params, init_files, init_params,
                                     register_init)

if TYPE_CHECKING:  # torch on first use: the workflow's config check reads the registry only
    from torch import Tensor, nn

__all__ = ["ATTENTION_PARTS", "INITS", "NOISE", "Init", "Param", "apply_init", "changed_parts", "check_params",
           "init_files", "init_params", "register_init", "tensor_parts"]

def tensor_parts(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter and buffer of `model` by name, the attention layers' split into their q, k,
    v and proj parts (`blocks.0.attn[q]`, x @ W convention): what an init declares it writes."""
    from mimetic.attention.weights import attention_layers

    parts: dict[str, Tensor] = {}
    split = set()
    for layer in attention_layers(model):
        w = layer.read()
        parts.update({f"{layer.name}[{p}]": getattr(w, p) for p in ATTENTION_PARTS})
        split |= {id(t) for t in layer.owners}
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if id(t) not in split:
            parts[name] = t.detach()
    return parts


def apply_init(model: nn.Module, init: str, *, seed: int | None = None, **params: object) -> nn.Module:
    """Initialize `model` in place with `init` (on top of the model's own initialization); returns it.

    seed: the init's noise comes from its own generator seeded with this, so the global torch
    RNG (data order, dropout) stays the same across inits. None draws the generator's seed from
    the global RNG. RuntimeError if the init changed a tensor part it does not declare.
    """
    import torch

    spec = INITS.lookup(init)
    full = check_params(init, params)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    before = {name: t.clone() for name, t in tensor_parts(model).items()}
    spec.fn(model, torch.Generator().manual_seed(seed), **full)
    undeclared = [name for name, diff in _differing(before, tensor_parts(model)).items()
                  if diff and not spec.declares(name)]
    if undeclared:
        raise RuntimeError(f"init {init!r} changed {undeclared[:5]}{' ...' if len(undeclared) > 5 else ''}, which "
                           f"it does not declare (touches: {list(spec.touches)}); fix the init or its declaration")
    return model


def changed_parts(model: nn.Module, reference: nn.Module) -> dict[str, bool]:
    """Part name -> whether `model`'s differs from `reference`'s (the model's own initialization
    for the same seed): what a run's init.json records."""
    return _differing(tensor_parts(reference), tensor_parts(model))


def _differing(before: dict[str, Tensor], after: dict[str, Tensor]) -> dict[str, bool]:
    import torch

    return {name: not torch.equal(t, after[name]) for name, t in before.items()}
