"""Recipe fields that own their facts: a dataclass field's default, description, bounds and
choices, read by the checks and by the generated schema and docs. One idiom for every kind of run
(TrainConfig for ViTs, LMConfig for GPTs); no torch."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any

# Fields that an arm or a run sets, not the experiment: not in the workflow's experiment schema.
RUN_SET = ("init", "init_params", "seed")


def opt(default: Any, help: str, *, choices: tuple | None = None, at_least: float | None = None,
        above: float | None = None, below: float | None = None, at_most: float | None = None,
        required: bool = False, pattern: str | None = None) -> Any:
    """A recipe field: its default, description (`help`) and bounds, which the checks and the
    generated schema and docs read. at_least/above bound from below (>=, >), below/at_most from
    above (<, <=)."""
    meta = {"help": help, "choices": choices, "at_least": at_least, "above": above, "below": below,
            "at_most": at_most, "required": required, "pattern": pattern}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "dict": dict}


def check_field(f: dataclasses.Field, value: Any) -> None:
    """ValueError `name=value: what is wrong` for a value of the wrong type or out of its field's bounds."""
    m, name = f.metadata, f.name
    if value is None:
        if m["required"] or "None" not in str(f.type):
            raise ValueError(f"{name}: missing; it is required" if m["required"] else f"{name}=None: must be set")
        return
    kind = _TYPES[str(f.type).replace(" | None", "")]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        what = {str: "a string", int: "an integer", bool: "true or false", dict: "a mapping"}.get(kind, "a number")
        raise ValueError(f"{name}={value!r}: must be {what}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name}={value}: must be a finite number")  # JSON's NaN and Infinity pass every bound
    if m["choices"] is not None and value not in m["choices"]:
        raise ValueError(f"{name}={value!r}: unknown; choose one of {list(m['choices'])}")
    low = ">=" if m["at_least"] is not None else ">" if m["above"] is not None else None
    high = "<" if m["below"] is not None else "<=" if m["at_most"] is not None else None
    lo = m["at_least"] if m["at_least"] is not None else m["above"]
    hi = m["below"] if m["below"] is not None else m["at_most"]
    bad_low = low and (value < lo if low == ">=" else value <= lo)
    bad_high = high and (value >= hi if high == "<" else value > hi)
    if bad_low or bad_high:
        if low and high:
            raise ValueError(f"{name}={value}: must be in {'[' if low == '>=' else '('}{lo:g}, {hi:g}"
                             f"{')' if high == '<' else ']'}")
        raise ValueError(f"{name}={value}: must be {low or high} {lo if low else hi:g}")


def check_fields(config: Any) -> None:
    """check_field for every field of the dataclass instance `config`."""
    for f in dataclasses.fields(config):
        check_field(f, getattr(config, f.name))


def schema_properties(cls: type) -> dict[str, dict[str, Any]]:
    """The JSON-schema property of every field of the recipe dataclass `cls` but those an arm or a
    run sets (RUN_SET): what the workflow's experiment section takes."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in RUN_SET:
            continue
        m, base = f.metadata, str(f.type).replace(" | None", "")
        prop: dict[str, Any] = {}
        if m["choices"] is not None:
            prop["enum"] = list(m["choices"])
        else:
            kind = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}[base]
            prop["type"] = [kind, "null"] if "None" in str(f.type) else kind
        for key, schema_key in (("at_least", "minimum"), ("above", "exclusiveMinimum"), ("below", "exclusiveMaximum"),
                                ("at_most", "maximum")):
            if m[key] is not None:
                prop[schema_key] = m[key]
        if m["pattern"]:
            prop["pattern"] = m["pattern"]
        if not m["required"]:
            prop["default"] = f.default
        prop["description"] = m["help"]
        out[f.name] = prop
    return out


def recipe_json(cls: type, experiment: dict[str, Any], init: str, params: dict[str, Any]) -> dict[str, Any]:
    """What one run of the recipe dataclass `cls` computes: `experiment`'s keys of `cls` less its
    execution keys (cls.EXECUTION) and the keys at their default, with the arm's init."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    keys = {k: v for k, v in experiment.items()
            if k in defaults and k not in cls.EXECUTION and v != defaults[k]}
    return {**keys, "init": init, "init_params": params}
