"""The package's layout as rules that hold: what each folder may import, what planning loads,
and the parts of the schema and docs generated from the code."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import version
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
                         capture_output=True, text=True, check=True, cwd=SRC.parents[1]).stdout
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


def test_planning_a_config_with_pretrained_models_loads_no_timm_once_its_names_are_cached(tmp_path, monkeypatch):
    """The paper's config names five timm models: their names are checked against a cache of
    timm's lists (one per timm version; a broken one is rebuilt), not by importing timm."""
    from mimetic import checks

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "mimetic").mkdir()
    broken = tmp_path / "mimetic" / f"timm-{version('timm')}-names.json"
    broken.write_text("{not json")
    names = checks.timm_names()  # the first plan with a new timm reads timm itself
    assert "vit_tiny_patch16_224" in names["models"] and json.loads(broken.read_text()) == names
    code = ("import yaml; from snakemake.utils import validate; from mimetic import checks; "
            "config = yaml.safe_load(open('config/config.yaml')); "
            "validate(config, 'workflow/schemas/config.schema.yaml'); assert config['pretrained']; "
            "checks.check(config)")
    assert loaded(code) == []


def module_imports(src: Path) -> dict[str, set[str]]:
    """For each module of the package at `src`, the package's modules it imports when it is
    imported: statements at module level (under `if`/`try` too), not in functions or under
    `if TYPE_CHECKING:`, which run later or never."""
    def name(path: Path) -> str:
        parts = list(path.relative_to(src.parent).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name(p): p for p in src.rglob("*.py")}

    def statements(body):
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                yield from statements(node.orelse)
            elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield from statements(n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt))

    graph = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = set()
        for node in statements(ast.parse(path.read_text()).body):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
                continue
            base = node.module or ""
            if node.level:
                base = ".".join([package.rsplit(".", node.level - 1)[0]] + ([base] if base else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        graph[module] = found & modules.keys() - {module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                cycles.append(path[path.index(other):] + [other])
            elif other not in state:
                visit(other, path + [other])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_module_imports_itself_round_a_cycle():
    """A cycle imports half a module (`mimetic bench` once failed so); read from the code, not by
    importing each module in a process of its own."""
    assert import_cycles(module_imports(SRC)) == []


def test_a_cycle_is_found(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import x\n")
    (pkg / "sub" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.b\n"
                                      "def f():\n    import pkg.b\nx = 1\n")
    (pkg / "b.py").write_text("try:\n    from pkg.sub import a\nexcept ImportError:\n    pass\n")
    graph = module_imports(pkg)
    assert graph["pkg.b"] == {"pkg.sub.a"} and graph["pkg.sub.a"] == set() and import_cycles(graph) == []
    (pkg / "sub" / "a.py").write_text("from ..b import y\nx = 1\n")
    assert import_cycles(module_imports(pkg)) == [["pkg.b", "pkg.sub.a", "pkg.b"]]


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


def function_lengths(path: Path) -> dict[str, int]:
    return {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_the_training_loop_and_the_cli_read_at_a_glance():
    """train() reads like airbench's main (set-up, resume, the epochs, the summary), and each CLI
    function is one table or one handler."""
    assert function_lengths(SRC / "train" / "loop.py")["train"] < 60
    long = {name: n for name, n in function_lengths(SRC / "cli.py").items() if n > 50}
    assert not long, long


def test_tests_that_share_a_module_fixture_run_on_one_worker(tmp_path):
    """tests/conftest.py groups them (the trained pipeline is built once, not once per worker);
    a pytest that breaks xdist's groups (9.2) fails here instead of doubling the suite's time."""
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path)
    (tmp_path / "test_shared.py").write_text(textwrap.dedent(f"""\
        import os, pytest
        @pytest.fixture(scope="module")
        def shared():
            with open({str(tmp_path / "pids")!r}, "a") as f:
                f.write(f"{{os.getpid()}}\\n")
        @pytest.mark.parametrize("i", range(8))
        def test_uses_it(shared, i):
            pass
        @pytest.mark.parametrize("i", range(8))
        def test_does_not(i):
            pass
        """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist",
                           "loadgroup", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(set((tmp_path / "pids").read_text().split())) == 1
