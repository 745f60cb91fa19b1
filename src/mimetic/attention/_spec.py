"""The registry of inits: what each declares (the tensors it writes, its parameters with their
bounds) and the checks made from it. No torch: the workflow's config check reads it."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mimetic.registry import Registry

NOISE = ("normal", "uniform")
ATTENTION_PARTS = ("q", "k", "v", "proj")


@dataclass(frozen=True)
class Param:
    """One parameter of an init: its default and what values it takes."""

    default: Any
    help: str
    minimum: float | None = None  # numbers: inclusive bounds
    maximum: float | None = None
    choices: tuple[str, ...] | None = None  # words: one of these
    text: bool = False  # free text (a name, a path), or None
    file: bool = False  # text naming a local file the init reads: an input of the runs

    def check(self, init: str, name: str, value: Any) -> None:
        if self.text or self.file:
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"init {init!r}: {name}={value!r} must be a non-empty string or null")
            return
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"init {init!r}: {name}={value!r}; choose one of {self.choices}")
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"init {init!r}: {name}={value!r} must be a finite number")
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            bounds = " and ".join(s for s in (f">= {self.minimum}" if self.minimum is not None else "",
                                              f"<= {self.maximum}" if self.maximum is not None else "") if s)
            raise ValueError(f"init {init!r}: {name}={value!r} must be {bounds}")

    def schema(self) -> dict[str, Any]:
        if self.text or self.file:
            return {"type": ["string", "null"], "minLength": 1}
        if self.choices is not None:
            return {"enum": list(self.choices)}
        prop: dict[str, Any] = {"type": "number"}
        if self.minimum is not None:
            prop["minimum"] = self.minimum
        if self.maximum is not None:
            prop["maximum"] = self.maximum
        return prop


@dataclass(frozen=True)
class Init:
    """A registered init: fn(model, generator, **params) writes the model in place."""

    name: str
    fn: Callable[..., None]
    touches: tuple[str, ...]
    params: Mapping[str, Param] = field(default_factory=dict)
    source: str = ""
    needs: Mapping[str, Any] = field(default_factory=dict)  # recipe key -> the value it must have
    # A check of the full params at planning, without torch: (param, what is wrong) or None.
    preflight: Callable[[dict[str, Any]], tuple[str, str] | None] | None = None
    kinds: tuple[str, ...] = ("vision", "lm")  # the experiment kinds whose models it can write (ViT, GPT)

    @property
    def description(self) -> str:
        return " ".join((self.fn.__doc__ or "").split())

    def unmet_need(self, recipe: Any) -> tuple[str, Any, Any] | None:
        """(key, the value it needs, the recipe's) for the first recipe value it needs and lacks."""
        for key, value in self.needs.items():
            if getattr(recipe, key) != value:
                return key, value, getattr(recipe, key)
        return None

    def declares(self, part: str) -> bool:
        """Whether `part` (a parameter name, or `<attention layer>[q|k|v|proj]`) is one it may write."""
        for t in self.touches:
            if t in ATTENTION_PARTS:
                if part.endswith(f"[{t}]"):
                    return True
            elif "[" not in part and re.fullmatch(t, part):
                return True
        return False


INITS: Registry[Init] = Registry("init")


def register_init(name: str, *, touches: Sequence[str], params: Mapping[str, Param] | None = None,
                  source: str = "", needs: Mapping[str, Any] | None = None,
                  preflight: Callable[[dict[str, Any]], tuple[str, str] | None] | None = None,
                  kinds: Sequence[str] = ("vision", "lm")) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def add(fn: Callable[..., None]) -> Callable[..., None]:
        INITS.register(name)(Init(name, fn, tuple(touches), dict(params or {}), source, dict(needs or {}),
                                  preflight, tuple(kinds)))
        return fn

    return add


def init_params(init: str) -> dict[str, object]:
    """The parameters `init` takes, with their defaults."""
    return {n: p.default for n, p in INITS.lookup(init).params.items()}


def init_files(init: str, params: dict[str, object]) -> list[str]:
    """The local files `init` reads with `params` (a teacher checkpoint): the runs' inputs."""
    spec = INITS.lookup(init).params
    return [str(value) for name, value in params.items() if spec[name].file and value is not None]


def check_params(init: str, params: dict[str, object]) -> dict[str, object]:
    """`params` completed with the init's defaults; ValueError naming any bad key or value."""
    spec = INITS.lookup(init).params
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise ValueError(f"init {init!r} takes no parameter {unknown}; its parameters are {sorted(spec) or 'none'}")
    full = {**init_params(init), **params}
    for key, value in full.items():
        spec[key].check(init, key, value)
    return full
