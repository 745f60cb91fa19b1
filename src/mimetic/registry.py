"""One registry idiom for the project's plug-ins (inits, datasets, models), as timm's
`@register_model`: a decorator adds the entry under its name, and a lookup of an unknown name
says what there is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """name -> entry, filled by `@registry.register(name)`; `kind` names the entries in errors."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = entry
            return entry

        return add

    def lookup(self, name: str, hint: str = "") -> T:
        """The entry of `name`; ValueError listing the registered names if there is none."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {sorted(self)}{hint}")
        return self[name]
