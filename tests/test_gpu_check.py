"""benchmarks/gpu_check.sh runs to the end on the CPU (--cpu, tiny sizes) with only the packages a
bare GPU machine has and no C compiler on PATH, and writes one JSON in which every bench has every
field."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from mimetic.bench.measure import FIELDS, TARGETS

ROOT = Path(__file__).resolve().parents[1]
# What the GPU machine lacks: importing any of these fails, as if it were not installed. (PyYAML
# stays: timm needs it, through huggingface_hub; scikit-learn stays: the --cpu training run uses
# its bundled digits, where the GPU run uses synthetic images.)
ABSENT = ("snakemake", "matplotlib", "seaborn", "jsonschema")
BLOCKER = f"""
import importlib.abc, sys
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT!r}:
            raise ImportError(f"{{name}} is blocked: gpu_check.sh must not need it")
sys.meta_path.insert(0, _Absent())
"""


COMPILERS = {"cc", "gcc", "clang", "c++", "g++", "clang++", "x86_64-linux-gnu-gcc"}


def without_compilers(folder: Path) -> str:
    """A PATH with every program on this PATH but the C compilers (each a wrapper that runs it by
    its own path, so the venv's python is still the venv's)."""
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        for program in Path(directory).glob("*") if Path(directory).is_dir() else ():
            name = program.name
            if name in COMPILERS or name.startswith(("gcc-", "clang-", "cc-")) or (folder / name).exists():
                continue
            if os.access(program, os.X_OK) and program.is_file():
                (folder / name).write_text(f'#!/bin/sh\nexec "{program}" "$@"\n')
                (folder / name).chmod(0o755)
    return str(folder)


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    (tmp / "site").mkdir()
    (tmp / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "OUT": str(tmp / "out"), "SCRATCH": str(tmp / "scratch"), "PYTHONPATH": str(tmp / "site"),
           "PATH": without_compilers(tmp / "bin")}
    env.pop("CC", None)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu"], env=env, capture_output=True,
                          text=True, timeout=900)
    return proc, tmp / "out"


def test_the_script_runs_to_the_end_and_records_every_step(check):
    proc, out = check
    log = (out / "gpu_check.log").read_text() if (out / "gpu_check.log").exists() else ""
    assert proc.returncode == 0, proc.stdout + proc.stderr + log
    doc = json.loads((out / "gpu_check.json").read_text())
    assert doc["mode"] == "cpu" and doc["failed"] == []
    names = [s["name"] for s in doc["steps"]]
    assert names == ["syncs", "decode_order", "patch2_compile_off", "patch2_compile_on", "imagenet_step", "idle",
                     "patch4_pack", "train_2_epochs", "imagenet_input", "patch2_reference_all_cores",
                     "patch4_compile_on"]
    assert sorted(doc["bench"]) == ["imagenet_step", "patch2_compile_off", "patch4_pack"]
    assert doc["bench"]["imagenet_step"]["config"]["dataset"] == "imagenet"
    # No compiler on PATH: the preflight says so, and the compile steps are skipped for it.
    assert doc["preflight"]["compiler_missing"].startswith("no C compiler on PATH")
    for s in doc["steps"]:
        if s["name"].endswith("compile_on"):
            assert s["status"].startswith("skipped: no C compiler on PATH"), s
        elif s["name"] == "patch2_reference_all_cores":
            assert s["status"] == "skipped: on one core the reference loop is patch2_compile_off's", s
        else:
            assert s["status"] == "ok", s
    assert doc["preflight"]["open_files"] >= 1024
    assert set(doc["probes"]) == {"syncs", "decode_order", "idle"}
    assert doc["probes"]["syncs"]["cifar"] == {"skipped": "set_sync_debug_mode is CUDA's"}
    assert set(doc["probes"]["syncs"]) >= {"cifar", "imagenet"}
    assert "| ResNet-style (crop + flip) | device | 1 |" in log  # the input path's table
    assert len(doc["train"]["images_per_s"]) == 2 and doc["train"]["epochs"] == 2
    assert set(doc["targets"]) == set(TARGETS) and all(t["met"] is None for t in doc["targets"].values())
    assert "is blocked" not in log
    # The JPEGs stay out of $OUT, which travels back from a GPU machine.
    assert not list(out.rglob("*.JPEG")) and list((out.parent / "scratch-cpu").rglob("*.JPEG"))


def test_every_bench_json_has_every_field(check):
    _, out = check
    doc = json.loads((out / "gpu_check.json").read_text())
    for name, bench in doc["bench"].items():
        assert list(bench) == list(FIELDS[""]), name
        for section, fields in FIELDS.items():
            if not section:
                continue
            skipped = name != "patch2_compile_off" and section == "evaluation"
            skipped |= name in ("patch4_pack", "imagenet_step") and section == "reference"
            skipped |= name != "patch4_pack" and section == "pack"
            skipped |= name == "imagenet_step" and section == "input_work"
            if skipped:
                assert set(bench[section]) == {"skipped"}, (name, section)
            else:
                assert set(bench[section]) == set(fields), (name, section)
        assert bench["flops_per_image"] > 0 and bench["project"]["images_per_s"] > 0
        assert bench["switches"]["compile_applied"] is False  # the CPU runs eager
    pack = doc["bench"]["patch4_pack"]["pack"]
    assert pack["runs"] == 2 and len(pack["per_run"]) == 2 and pack["aggregate_images_per_s"] > 0
    assert 0 < doc["targets"]["imagenet_full_vs_model_step"]["value"] <= 1.5
    assert doc["bench"]["patch2_compile_off"]["input_work"]["copies"] <= 2
    reference = doc["bench"]["patch2_compile_off"]["reference"]
    assert reference["images_augmented"] >= 4 and reference["workers"] == 1
    assert doc["bench"]["patch2_compile_off"]["ratio"] > 0
