"""timm's RandAugment spec string ("rand-m9-mstd0.5-inc1") as a policy: no torch, so a recipe is
checked where torch is not loaded (the workflow's planning). mimetic.train.augment applies it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Policy:
    """timm's RandAugment policy: per image `num_layers` ops drawn uniformly (with replacement)
    from the 15 of timm's `_RAND_TRANSFORMS` (or `_RAND_INCREASING_TRANSFORMS` when
    `increasing`), each applied with probability `prob` at magnitude N(magnitude, magnitude_std)
    clipped to [0, 10]."""

    magnitude: float = 10.0
    num_layers: int = 2
    magnitude_std: float = 0.0
    increasing: bool = False
    prob: float = 0.5

    @classmethod
    def parse(cls, spec: str) -> Any:
        """timm's config string, e.g. "rand-m9-mstd0.5-inc1" (keys m, n, mstd, inc, p)."""
        parts = spec.split("-")
        if parts[0] != "rand":
            raise ValueError(f"randaugment={spec!r}: must start with 'rand-' "
                             "(timm's syntax, e.g. rand-m9-mstd0.5-inc1)")
        kw: dict[str, Any] = {}
        keys = {"mstd": ("magnitude_std", float), "m": ("magnitude", float), "n": ("num_layers", int),
                "inc": ("increasing", lambda v: bool(int(v))), "p": ("prob", float)}
        for part in parts[1:]:
            key = next((k for k in keys if part.startswith(k) and part[len(k):][:1].isdigit()), None)
            if key is None:
                raise ValueError(f"randaugment={spec!r}: unsupported part {part!r}; supported: {list(keys)}")
            field_name, convert = keys[key]
            try:
                kw[field_name] = convert(part[len(key):])
            except ValueError:
                raise ValueError(f"randaugment={spec!r}: {part!r} is no number") from None
        if kw.get("magnitude_std", 0) > 100:  # timm: mstd > 100 means uniform in [0, m]
            kw["magnitude_std"] = float("inf")
        return cls(**kw)
