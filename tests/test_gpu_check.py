"""benchmarks/gpu_check.sh runs to the end on the CPU (--cpu, tiny sizes) with only the packages a
bare GPU machine has, and writes one JSON in which every bench has every field."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from mimetic.bench import FIELDS, TARGETS

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


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    (tmp / "site").mkdir()
    (tmp / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "OUT": str(tmp / "out"), "PYTHONPATH": str(tmp / "site")}
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
    assert names == ["patch2_compile_off", "patch2_compile_on", "train_2_epochs", "patch4_compile_off", "patch4_pack",
                     "imagenet_input", "imagenet_device_decode", "patch4_compile_on"]
    assert sorted(doc["bench"]) == ["imagenet_device_decode", "patch2_compile_off", "patch4_compile_off", "patch4_pack"]
    assert doc["bench"]["imagenet_device_decode"]["config"]["dataset"] == "imagenet"
    assert "| ResNet-style (crop + flip) | device | 1 |" in log  # the input path's table
    assert len(doc["train"]["images_per_s"]) == 2 and doc["train"]["epochs"] == 2
    assert set(doc["targets"]) == set(TARGETS) and all(t["met"] is None for t in doc["targets"].values())
    assert "is blocked" not in log


def test_every_bench_json_has_every_field(check):
    _, out = check
    doc = json.loads((out / "gpu_check.json").read_text())
    for name, bench in doc["bench"].items():
        assert list(bench) == list(FIELDS[""]), name
        for section, fields in FIELDS.items():
            if not section:
                continue
            skipped = name == "patch4_pack" and section in ("reference", "evaluation")
            skipped |= name == "imagenet_device_decode" and section == "reference"
            skipped |= name != "patch4_pack" and section == "pack"
            if skipped:
                assert set(bench[section]) == {"skipped"}, (name, section)
            else:
                assert set(bench[section]) == set(fields), (name, section)
        assert bench["flops_per_image"] > 0 and bench["project"]["images_per_s"] > 0
        assert bench["switches"]["compile_applied"] is False  # the CPU runs eager
    pack = doc["bench"]["patch4_pack"]["pack"]
    assert pack["runs"] == 2 and len(pack["per_run"]) == 2 and pack["aggregate_images_per_s"] > 0
    assert 0 < doc["targets"]["imagenet_full_vs_model_step"]["value"] <= 1.5
    reference = doc["bench"]["patch2_compile_off"]["reference"]
    assert reference["images_augmented"] >= 4 and reference["workers"] == 1
    assert doc["bench"]["patch2_compile_off"]["ratio"] > 0
