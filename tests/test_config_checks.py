"""Config mistakes are caught when Snakemake plans: non-zero dry run, in seconds, naming the key."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import yaml
from snakemake.utils import validate

from mimetic.checks import ConfigError, check_config, yaml12_numbers

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"

BASE = """\
seeds: [0, 1]
arms:
  default: {init: default}
  mimetic: {init: mimetic}
experiments:
  digits:
    dataset: digits
    model: vit_digits
    epochs: 3
    batch_size: 256
    warmup_epochs: 1
    lr: 0.002
    gpus: 0
"""


def dry_run(tmp_path: Path, text: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    (tmp_path / "config.yaml").write_text(text)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                           "--configfile", str(tmp_path / "config.yaml"), "-n", "--cores", "1"],
                          capture_output=True, text=True, timeout=300, env=env)
    return proc, time.monotonic() - start


def edit(key: str, value: str) -> str:
    """BASE with `key: value` set in the digits experiment (added if absent)."""
    lines = [line for line in BASE.splitlines() if not line.startswith(f"    {key}:")]
    return "\n".join(lines) + f"\n    {key}: {value}\n"


BAD = [
    # schema (more in tests/test_workflow.py::test_bad_config_fails_before_any_job)
    (edit("flip", "yes"), "flip"),  # YAML 1.1 reads an unquoted yes as true
    # duplicate key: the last value would win silently
    (BASE + "    lr: 0.5\n", "experiments.digits.lr: duplicate key 'lr' (lines 12 and 14 of"),
    # cross-field rules of one run, the trainer's own, now at planning
    (edit("min_lr", "0.01"), "experiments.digits.min_lr: min_lr=0.01: must be <= lr=0.002"),
    (edit("warmup_epochs", "3"), "experiments.digits.warmup_epochs"),
    (edit("accum_steps", "3"), "experiments.digits.batch_size"),
    (edit("randaugment", "rand-zz9"), "experiments.digits.randaugment"),
    (edit("model", "vit_tiny_patch4_32"), "experiments.digits.model: model='vit_tiny_patch4_32' takes 32px"),
    (edit("batch_size", "4096"), "experiments.digits.batch_size: batch_size=4096 is larger than"),
    (edit("data_root", "/data/digits"), "experiments.digits.data_root"),
    (BASE.replace("default: {init: default}", "default: {init: default, params: {alpha1: 0.5}}"),
     "arms.default.params: init 'default' takes no parameter ['alpha1']"),
    # what only the whole config knows
    (BASE + "structure: {seed: 7}\n", "structure.seed: 7 is not one of seeds [0, 1]"),
    (BASE + "pretrained:\n  vit: {model: vit_nonexistent_patch16_224}\n", "pretrained.vit.model"),
    (BASE + "pretrained:\n  vit: {model: vit_tiny_patch16_224.no_such_tag}\n", "pretrained.vit.model"),
    (BASE.replace("  digits:\n", "  profile_a:\n"), "experiments.profile_a"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m[:40] for _, m in BAD])
def test_a_bad_config_fails_the_planning_check_naming_the_key(tmp_path, text, message):
    """The check the workflow runs when it plans (workflow/rules/common.smk), on the file as
    Snakemake reads it; the dry runs below show that planning runs it."""
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        check_config(yaml.safe_load(text), [tmp_path / "config.yaml"], SCHEMA, validate)
    assert message in str(e.value)


@pytest.mark.parametrize("text, message", [BAD[0], BAD[1], BAD[2], BAD[-2]], ids=["schema", "duplicate", "recipe",
                                                                                    "pretrained"])
def test_a_bad_config_fails_its_dry_run_in_seconds_naming_the_key(tmp_path, text, message):
    proc, seconds = dry_run(tmp_path, text)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]
    assert seconds < 60 and not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


@pytest.mark.parametrize("text", [edit("lr", "1e-3"), edit("min_lr", "1E-6"), edit("flip", '"yes"')])
def test_valid_spellings_plan_normally(tmp_path, text):
    proc, _ = dry_run(tmp_path, text)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train_run" in proc.stdout


def test_yaml12_numbers_only_touch_number_strings():
    config = {"lr": "1e-3", "min_lr": "-2.5E+2", "flip": "yes", "root": "data/1e3x", "seeds": ["1e1", 2]}
    assert yaml12_numbers(config) == {"lr": 0.001, "min_lr": -250.0, "flip": "yes", "root": "data/1e3x",
                                      "seeds": [10.0, 2]}
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("text, line", [
    ("data:\n  imagenet:\n    root: /data/imagenet\n",
     "config: experiments: required but missing; `--configfile` replaces config/config.yaml, so a file that "
     "changes a few keys goes after the one it changes: --configfile config/config.yaml yours.yaml"),
    (BASE.replace("lr: 0.002", 'lr: "fast"'), "config: experiments.digits.lr: 'fast' is not of type 'number'"),
])
def test_a_config_that_breaks_the_schema_gets_one_line_not_the_schema(tmp_path, text, line):
    """Snakemake's own message prints the whole schema (955 lines for a partial overlay config)."""
    proc, _ = dry_run(tmp_path, text)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert line in output.splitlines() and len(output.splitlines()) < 10, output[-3000:]


WEIGHT_SELECTION = edit("pos_embed", "learned").replace("mimetic: {init: mimetic}", "ws: {init: weight-selection}")


@pytest.mark.parametrize("params, where, message", [
    ("", None, "arms.ws.params.teacher: the teacher 'vit_small_patch16_224.augreg_in21k' is not in the hub cache"),
    ("", "hub", None),  # in the hub cache: plans, and the run loads it from there
    ("{file: teacher.safetensors}", None, "arms.ws.params.file: teacher checkpoint"),
    ("{file: teacher.safetensors}", "file", None),
])
def test_weight_selection_plans_only_with_a_teacher_it_can_load(tmp_path, monkeypatch, params, where, message):
    """The teacher is a local file or in the hub's cache (or the hub is reachable: offline here)."""
    hub = tmp_path / "hub"
    if where == "hub":
        snapshot = hub / "models--timm--vit_small_patch16_224.augreg_in21k/snapshots/0123abc"
        snapshot.mkdir(parents=True)
        (snapshot / "model.safetensors").write_bytes(b"")
    if where == "file":
        (tmp_path / "teacher.safetensors").write_bytes(b"")
    text = WEIGHT_SELECTION.replace("{init: weight-selection}", "{init: weight-selection" +
                                    (f", params: {params}}}" if params else "}"))
    text = text.replace("teacher.safetensors", str(tmp_path / "teacher.safetensors"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    (tmp_path / "config.yaml").write_text(text)
    if message is None:
        check_config(yaml.safe_load(text), [tmp_path / "config.yaml"], SCHEMA, validate)
    else:
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_config(yaml.safe_load(text), [tmp_path / "config.yaml"], SCHEMA, validate)
        if where is None and not params:  # and the dry run stops on it, naming the key
            proc, _ = dry_run(tmp_path, text, {**os.environ})
            assert proc.returncode != 0 and message in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]


def test_seeds_are_bounded_by_what_the_run_wildcard_matches(tmp_path):
    """A seed that the run folders' `seed` wildcard cannot match planned as a MissingInputException
    naming its records; the schema's bound is that wildcard's, so a larger seed is named `seeds`."""
    wildcard = re.search(r'^\s+seed=r"([^"]+)",$', (REPO / "workflow/rules/common.smk").read_text(), re.M).group(1)
    largest = yaml.safe_load(SCHEMA.read_text())["properties"]["seeds"]["items"]["maximum"]
    assert re.fullmatch(wildcard, str(largest)) and not re.fullmatch(wildcard, str(largest + 1)), (
        f"the schema's seeds maximum {largest} is not the largest seed the wildcard {wildcard!r} matches")
    too_large = "seeds.1: 12345678901 is greater than the maximum"
    for seeds, message in [([0, largest], None), ([0, 12345678901], too_large)]:
        text = BASE.replace("seeds: [0, 1]", f"seeds: {seeds}")
        (tmp_path / "config.yaml").write_text(text)
        if message is None:
            check_config(yaml.safe_load(text), [tmp_path / "config.yaml"], SCHEMA, validate)
        else:
            with pytest.raises(ConfigError, match=re.escape(message)):
                check_config(yaml.safe_load(text), [tmp_path / "config.yaml"], SCHEMA, validate)
