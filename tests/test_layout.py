"""The package's layout as rules that hold: what each folder may import, what planning loads,
and the parts of the schema and docs generated from the code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mimetic import generated

SRC = Path(__file__).resolve().parents[1] / "src" / "mimetic"
HEAVY = ("torch", "timm", "torchvision", "matplotlib", "seaborn")


def imports_of(folder: str) -> set[str]:
    """Every mimetic module that a module of `folder` imports (at any depth of the code)."""
    found = set()
    for path in (SRC / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("mimetic.")}


@pytest.mark.parametrize("folder, forbidden", [
    ("attention", ("mimetic.train", "mimetic.report", "mimetic.bench")),
    ("data", ("mimetic.train", "mimetic.report", "mimetic.bench")),
    ("report", ("mimetic.train", "mimetic.bench")),
    ("train", ("mimetic.report", "mimetic.bench")),
])
def test_each_folder_imports_only_what_its_role_allows(folder, forbidden):
    bad = sorted(m for m in imports_of(folder) if m.startswith(forbidden))
    assert not bad, f"{folder}/ imports {bad}"


def loaded(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", f"import sys; {code}; print(sorted(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    modules = eval(out)  # noqa: S307 - our own subprocess's list of names
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


def test_planning_and_the_report_load_no_torch_timm_or_plotting():
    """What common.smk imports, and mimetic.report with its tables (the figures load matplotlib
    where they are drawn)."""
    code = ("import mimetic.checks, mimetic.report, mimetic.report.claims, mimetic.report.outputs, "
            "mimetic.report.tables, mimetic.report.records, mimetic.train.recipe, mimetic.cli; "
            "from mimetic.train.recipe import TrainConfig; "
            "TrainConfig(dataset='digits', model='vit_digits').validate()")
    assert loaded(code) == []
    assert "torch" not in loaded("import mimetic.report.figures, mimetic.report.structure_figures")


def test_the_bench_has_no_import_cycle():
    for module in ("measure", "project", "reference", "flops", "options", "_timing"):
        assert subprocess.run([sys.executable, "-c", f"import mimetic.bench.{module}"]).returncode == 0, module


def test_the_generated_schema_and_docs_are_current():
    """workflow/schemas/config.schema.yaml (recipe, arm) and config/README.md (recipe table) are
    generated from mimetic.train.recipe and the inits: `mimetic schema --write` after a change."""
    assert generated.stale() == [], f"stale; run `{generated.COMMAND}`"


def test_stale_generated_parts_are_found(monkeypatch, tmp_path):
    schema = tmp_path / "schema.yaml"
    schema.write_text(generated.SCHEMA.read_text().replace("minimum: 1, default: 200", "minimum: 1, default: 100"))
    monkeypatch.setattr(generated, "SCHEMA", schema)
    assert generated.stale() == [schema]


def test_every_face_names_what_exists():
    import importlib

    for package in ("mimetic", "mimetic.attention", "mimetic.train", "mimetic.report", "mimetic.bench", "mimetic.data"):
        module = importlib.import_module(package)
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{package}.{name}"
