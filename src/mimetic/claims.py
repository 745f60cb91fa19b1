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

# The schemas live with the workflow (Snakemake validates the config from there too); this
# resolves in a source checkout or an editable install. Pass `schema=` otherwise.
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "workflow" / "schemas"
CLAIMS_SCHEMA = SCHEMA_DIR / "claims.schema.yaml"
REFERENCES_SCHEMA = SCHEMA_DIR / "references.schema.yaml"


class SpecError(ValueError):
    """A claims or references file that does not parse or does not match its schema."""


@dataclass(frozen=True)
class Claim:
    id: str
    experiment: str
    baseline: str
    treatment: str
    gain: float  # accuracy points
    quote: str
    source: str
    metric: str = "final_test_acc"
    url: str | None = None
    note: str | None = None


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a claim id given twice is a mistake."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from e


def validate(path: str | os.PathLike, schema: str | os.PathLike) -> dict:
    """The parsed file at `path`, with the schema's defaults filled in; SpecError listing every
    violation as `path: key/path: message`."""
    path, schema = Path(path), Path(schema)
    if not schema.is_file():
        raise FileNotFoundError(f"schema {schema} not found (pass schema= when mimetic is not run from its checkout)")
    doc = _read_yaml(path)
    spec = yaml.safe_load(schema.read_text())
    jsonschema.Draft202012Validator.check_schema(spec)  # a broken schema must not pass everything
    validator = jsonschema.Draft202012Validator(spec)
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [f"{path}: {'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors]
        raise SpecError("\n".join(lines))
    return _with_defaults(doc, spec, spec)


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


def load_claims(path: str | os.PathLike, schema: str | os.PathLike = CLAIMS_SCHEMA) -> list[Claim]:
    """The claims of `path` in file order."""
    doc = validate(path, schema)
    claims = [Claim(id=str(cid), **{k: (float(v) if k == "gain" else v) for k, v in c.items()})
              for cid, c in doc["claims"].items()]
    _check_claim_arms(Path(path), claims)
    return claims


def load_references(path: str | os.PathLike, schema: str | os.PathLike = REFERENCES_SCHEMA) -> list[Reference]:
    """The published results of `path` in file order (an empty `references: {}` is allowed)."""
    doc = validate(path, schema)
    refs = []
    for rid, r in doc["references"].items():
        arms = {str(a): Accuracy(float(v["mean"]), None if v["sd"] is None else float(v["sd"]), v["n"])
                for a, v in r["arms"].items()}
        refs.append(Reference(id=str(rid), **{**r, "arms": arms}))
    return refs
