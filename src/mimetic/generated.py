"""The parts of the workflow's schema and of config/README.md that repeat the code's facts,
generated from their one owner: the recipe fields (mimetic.train.recipe.TrainConfig, their
defaults, bounds, choices and descriptions), the inits' parameters (mimetic.attention.init) and
the schema's own top-level keys (config/README.md's table of them); docs/inits.md's table of every
init (from its registration).

`mimetic schema --write` rewrites each block between its BEGIN/END marker lines;
`mimetic schema` (and a test) fails while a file differs from what would be written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
CONFIG_DOCS = ROOT / "config" / "README.md"
INIT_DOCS = ROOT / "docs" / "inits.md"
COMMAND = "mimetic schema --write"


def _yaml_block(mapping: dict[str, Any], indent: int) -> list[str]:
    text = yaml.safe_dump(mapping, default_flow_style=None, sort_keys=False, width=110, allow_unicode=True)
    return [" " * indent + line if line else line for line in text.rstrip("\n").split("\n")]


def recipe_block() -> list[str]:
    from mimetic.train._fields import schema_properties
    from mimetic.train.recipe import TrainConfig

    return _yaml_block(schema_properties(TrainConfig), 6)


def lm_recipe_block() -> list[str]:
    from mimetic.train._fields import schema_properties
    from mimetic.train.recipe import LMConfig

    return _yaml_block(schema_properties(LMConfig), 6)


def kinds_block() -> list[str]:
    """The experiment schema's switch: a text corpus makes a language-model experiment."""
    from mimetic.data.text import TEXT_DATASETS

    return _yaml_block({"if": {"properties": {"dataset": {"enum": list(TEXT_DATASETS)}}}}, 4)


def arm_block() -> list[str]:
    """The arm's `init` choices and the union of the inits' parameters with their schema."""
    from mimetic.attention.init import INITS

    params: dict[str, Any] = {}
    for init in INITS.values():
        for name, spec in init.params.items():
            if params.setdefault(name, spec.schema()) != spec.schema():
                raise ValueError(f"parameter {name!r} has two schemas among the inits: {params[name]} "
                                 f"and {spec.schema()} ({init.name}); give one of them another name")
    return _yaml_block({
        "init": {"description": "initialization (`mimetic inits` lists each with what it touches)",
                 "enum": list(INITS)},
        "params": {"description": "the initialization's parameters, e.g. {alpha1: 0.5, beta1: 0.5}; unset ones take "
                                  "the defaults", "type": "object", "default": {}, "additionalProperties": False,
                   "properties": params}}, 6)


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"`{yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()}`"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""` (off)'
    return f"`{value!r}`"


def docs_block(cls: type | None = None, definition: str = "vision_experiment") -> list[str]:
    """config/README.md's table of one recipe dataclass (default TrainConfig; its schema
    definition `definition`), and which keys are execution keys."""
    from mimetic.train._fields import RUN_SET
    from mimetic.train.recipe import TrainConfig

    cls = cls or TrainConfig
    schema = yaml.safe_load(SCHEMA.read_text())
    workflow_only = {k: v for k, v in schema["$defs"][definition]["properties"].items()
                     if k not in {f.name for f in dataclasses.fields(cls)}}
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name in RUN_SET:
            continue
        default = "(required)" if f.metadata["required"] else _cell(f.default)
        meaning, choices = f.metadata["help"], f.metadata["choices"] or ()
        if any(f"`{c}`" not in meaning for c in choices):
            meaning += ": " + ", ".join(f"`{c}`" for c in choices)
        rows.append(f"| `{f.name}` | {default} | {meaning} |")
    for name, prop in workflow_only.items():
        rows.append(f"| `{name}` | {_cell(prop.get('default'))} | {' '.join(prop['description'].split())} |")
    execution = [*cls.EXECUTION, *workflow_only]
    listed = ", ".join(f"`{k}`" for k in execution)
    return rows + ["", f"The execution keys {listed} (and the top-level `runs_per_gpu`, `threads_per_run` and "
                       "`cpus_per_gpu`) say how a run executes, not what it computes: changing them never re-runs "
                       "a finished run."]


def lm_docs_block() -> list[str]:
    from mimetic.train.recipe import LMConfig

    return docs_block(LMConfig, "lm_experiment")


def top_level_block() -> list[str]:
    """config/README.md's table of the top-level keys: the schema's defaults and descriptions."""
    schema = yaml.safe_load(SCHEMA.read_text())
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for name, prop in schema["properties"].items():
        default = "(required)" if name in schema.get("required", ()) else _cell(prop.get("default"))
        rows.append(f"| `{name}` | {default} | {' '.join(prop['description'].split())} |")
    return rows


def inits_block() -> list[str]:
    """docs/inits.md's table: every init, what it touches, its parameters and its source."""
    from mimetic.attention.init import INITS

    def param(name: str, p: Any) -> str:
        values = (f"one of {', '.join(f'`{c}`' for c in p.choices)}" if p.choices else
                  " and ".join(s for s in (f">= {p.minimum:g}" if p.minimum is not None else "",
                                           f"<= {p.maximum:g}" if p.maximum is not None else "") if s))
        return f"`{name}` = {_cell(p.default)}: {p.help}" + (f" ({values})" if values else "")

    rows = ["| init | touches | parameters | what it does | source |", "|---|---|---|---|---|"]
    for init in INITS.values():
        touches = ", ".join(f"`{t}`" for t in init.touches) or "nothing"
        params = "<br>".join(param(n, p) for n, p in init.params.items()) or "none"
        needs = "".join(f" Needs `{k}: {v}` in the recipe." for k, v in init.needs.items())
        rows.append(f"| `{init.name}` | {touches} | {params} | {init.description}{needs} | {init.source or '–'} |")
    return rows


def _replace(text: str, begin: str, end: str, block: list[str], path: Path) -> str:
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"{path}: needs one line {begin!r} and, after it, one line {end!r}")
    return "\n".join(lines[: starts[0] + 1] + block + lines[ends[0]:])


def render() -> dict[Path, str]:
    """Every generated file as it should read."""
    schema = SCHEMA.read_text()
    schema = _replace(schema, f"# BEGIN recipe: generated by `{COMMAND}`", "# END recipe", recipe_block(), SCHEMA)
    schema = _replace(schema, f"# BEGIN lm-recipe: generated by `{COMMAND}`", "# END lm-recipe", lm_recipe_block(),
                      SCHEMA)
    schema = _replace(schema, f"# BEGIN kinds: generated by `{COMMAND}`", "# END kinds", kinds_block(), SCHEMA)
    schema = _replace(schema, f"# BEGIN arm: generated by `{COMMAND}`", "# END arm", arm_block(), SCHEMA)
    docs = _replace(CONFIG_DOCS.read_text(), f"<!-- BEGIN recipe: generated by `{COMMAND}` -->",
                    "<!-- END recipe -->", docs_block(), CONFIG_DOCS)
    docs = _replace(docs, f"<!-- BEGIN lm-recipe: generated by `{COMMAND}` -->", "<!-- END lm-recipe -->",
                    lm_docs_block(), CONFIG_DOCS)
    docs = _replace(docs, f"<!-- BEGIN top-level: generated by `{COMMAND}` -->", "<!-- END top-level -->",
                    top_level_block(), CONFIG_DOCS)
    inits = _replace(INIT_DOCS.read_text(), f"<!-- BEGIN inits: generated by `{COMMAND}` -->", "<!-- END inits -->",
                     inits_block(), INIT_DOCS)
    return {SCHEMA: schema, CONFIG_DOCS: docs, INIT_DOCS: inits}


def stale() -> list[Path]:
    return [path for path, text in render().items() if path.read_text() != text]


def write() -> list[Path]:
    """Rewrite the generated blocks; returns the files that changed."""
    from mimetic import io

    changed = stale()
    for path, text in render().items():
        if path in changed:
            io.write_text(path, text)
    return changed

