"""Claims to check (config/claims.yaml) and published numbers to show beside ours
(config/references.yaml), each validated against its JSON schema in workflow/schemas/.

A bad file raises SpecError naming the file and the key path of every problem, e.g.
`config/claims.yaml: claims/paper-cifar10/gain: 'five' is not of type 'number'`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mimetic import yamlfile


class SpecError(ValueError):
    """A claims or references file that does not parse or does not match its schema."""


# A claim without a number claims the sign of the gain (positive: the treatment is better).
SIGNS = {"positive": 1, "negative": -1}


@dataclass(frozen=True)
class Claim:
    """A claimed gain of `treatment` over `baseline` on `metric`, paired by seed: a number in the
    metric's gain unit (accuracy points; nats per token, baseline loss - treatment loss, for a
    loss) or, where the source gives none, a `direction` (SIGNS)."""

    id: str
    experiment: str
    baseline: str
    treatment: str
    gain: float | None
    quote: str
    source: str
    metric: str = "final_test_acc"
    url: str | None = None
    note: str | None = None
    direction: str | None = None

    def __post_init__(self) -> None:
        if (self.gain is None) == (self.direction is None):
            raise ValueError(f"claim {self.id}: give a gain or a direction, exactly one")
        if self.direction is not None and self.direction not in SIGNS:
            raise ValueError(f"claim {self.id}: direction {self.direction!r} is none of {list(SIGNS)}")

    @property
    def sign(self) -> int | None:
        """The claimed sign of the gain, for a direction claim; None for a numeric one."""
        return None if self.direction is None else SIGNS[self.direction]


@dataclass(frozen=True)
class Accuracy:
    mean: float
    sd: float | None = None
    n: int | None = None


@dataclass(frozen=True)
class Reference:
    id: str
    source: str
    origin: str  # "paper" or "third_party"
    experiment: str
    setting: str
    arms: dict[str, Accuracy] = field(default_factory=dict)
    url: str | None = None
    note: str | None = None
    secondary: bool = False  # read from someone else's copy (a chart, a digest), not the authors' own


def _read_yaml(path: Path) -> Any:
    try:
        return yamlfile.load(path)
    except (yaml.YAMLError, yamlfile.DuplicateKey) as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from e


def validate(path: str | os.PathLike, schema: str | os.PathLike) -> dict:
    """The parsed file at `path`, with the schema's defaults filled in; SpecError listing every
    violation as `path: key/path: message`."""
    path, schema = Path(path), Path(schema)
    if not schema.is_file():
        raise FileNotFoundError(f"schema {schema} not found")
    doc = _read_yaml(path)
    spec = yaml.safe_load(schema.read_text())
    jsonschema.Draft202012Validator.check_schema(spec)  # a broken schema must not pass everything
    validator = jsonschema.Draft202012Validator(spec)
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [f"{path}: {'/'.join(map(str, e.absolute_path)) or '(top level)'}: {_message(e)}" for e in errors]
        raise SpecError("\n".join(lines))
    return _with_defaults(doc, spec, spec)


def _message(e: jsonschema.ValidationError) -> str:
    # jsonschema's oneOf message repeats the whole instance (a claim's quote and all): name the
    # alternatives by their titles instead.
    if e.validator != "oneOf" or not all("title" in s for s in e.validator_value):
        return e.message
    titles = " or ".join(s["title"] for s in e.validator_value)
    return f"needs exactly one of {titles}; it has {'none' if e.context else 'several'}"


def _resolve(node: dict, root: dict) -> dict:
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $refs are supported, not {ref}")
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _with_defaults(doc: Any, node: dict, root: dict) -> Any:
    # jsonschema validates but never fills defaults; these schemas use plain properties and
    # additionalProperties only, which this walk covers.
    node = _resolve(node, root)
    if not isinstance(doc, dict):
        return doc
    out = dict(doc)
    props = node.get("properties", {})
    for key, sub in props.items():
        sub = _resolve(sub, root)
        if key not in out and "default" in sub:
            out[key] = sub["default"]
    for key, value in out.items():
        if key in props:
            out[key] = _with_defaults(value, props[key], root)
        elif isinstance(node.get("additionalProperties"), dict):
            out[key] = _with_defaults(value, node["additionalProperties"], root)
    return out


def _check_claim_arms(path: Path, claims: list[Claim]) -> None:
    bad = [f"{path}: claims/{c.id}: baseline and treatment are both {c.baseline!r}"
           for c in claims if c.baseline == c.treatment]
    if bad:
        raise SpecError("\n".join(bad))


def load_claims(path: str | os.PathLike, schema: str | os.PathLike) -> list[Claim]:
    """The claims of `path` in file order, checked against `schema` (the workflow's
    schemas/claims.schema.yaml)."""
    doc = validate(path, schema)
    claims = [Claim(id=str(cid), **{"gain": None, **{k: (float(v) if k == "gain" else v) for k, v in c.items()}})
              for cid, c in doc["claims"].items()]
    _check_claim_arms(Path(path), claims)
    return claims


def load_references(path: str | os.PathLike, schema: str | os.PathLike) -> list[Reference]:
    """The published results of `path` in file order (an empty `references: {}` is allowed), checked
    against `schema` (the workflow's schemas/references.schema.yaml)."""
    doc = validate(path, schema)
    refs = []
    for rid, r in doc["references"].items():
        arms = {str(a): Accuracy(float(v["mean"]), None if v["sd"] is None else float(v["sd"]), v["n"])
                for a, v in r["arms"].items()}
        refs.append(Reference(id=str(rid), **{**r, "arms": arms}))
    return refs
