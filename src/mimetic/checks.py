"""A workflow config checked whole, when Snakemake plans: in seconds, before any job, each
mistake named by its config path (e.g. `experiments.digits.warmup_epochs`) with what to do.

Every rule of a single run is the trainer's own (`TrainConfig.validate`, one implementation);
this module adds what only the whole config knows: the arms, the seeds the structure analysis
reads, pretrained model names, labels that would collide in output names, and how the YAML
files themselves were written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mimetic import yamlfile
from mimetic.attention.init import INITS, check_params
from mimetic.data import data_fingerprint
from mimetic.train.recipe import LMConfig, Recipe, TrainConfig, differences, recipe_class


class ConfigError(ValueError):
    """A config mistake; the message starts with the config path of the bad key."""


# YAML 1.2 reads 1e-3 as a number; PyYAML (YAML 1.1, which Snakemake uses) wants a dot in the
# mantissa (1.0e-3) and leaves 1e-3 a string. config/README.md itself writes 1e-3.
_YAML12_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$")


def yaml12_numbers(node: Any) -> Any:
    """`node` with every string that YAML 1.2 reads as a number (1e-3, 5E4) made a float, in place."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        if isinstance(value, str) and _YAML12_FLOAT.match(value):
            node[key] = float(value)
        else:
            yaml12_numbers(value)
    return node


def check_files(paths: Iterable[str | Path]) -> None:
    """Raise ConfigError if a config file gives a key twice in one mapping."""
    for path in paths:
        try:
            yamlfile.load(path)
        except yamlfile.DuplicateKey as e:
            raise ConfigError(str(e)) from None


def _recipe_key(message: str, recipe: dict[str, Any]) -> str | None:
    """The recipe key a TrainConfig.validate message is about (its messages start `key=value`)."""
    m = re.match(r"(\w+)=", message)
    return m.group(1) if m and m.group(1) in recipe else None


def check(config: dict[str, Any]) -> None:
    """Raise ConfigError for the first mistake in a schema-valid, defaults-filled config."""
    arms, experiments = config["arms"], config["experiments"]
    if config["baseline"] not in arms:
        raise ConfigError(f"baseline: {config['baseline']!r} is not one of arms {sorted(arms)}; set it to the arm "
                          "gains are measured against")
    for label, arm in arms.items():
        try:
            params = check_params(arm["init"], arm["params"])
        except ValueError as e:
            raise ConfigError(f"arms.{label}.params: {e}") from None
        preflight = INITS[arm["init"]].preflight  # what the init needs outside the config (a teacher's weights)
        problem = preflight(params) if preflight else None
        if problem:
            raise ConfigError(f"arms.{label}.params.{problem[0]}: {problem[1]}")
    for label, recipe in experiments.items():
        values = {k: v for k, v in recipe.items() if k != "gpus"}
        cls = recipe_class(recipe["dataset"])
        try:
            cls(**values).validate()
        except ValueError as e:
            key = _recipe_key(str(e), values)
            raise ConfigError(f"experiments.{label}{'.' + key if key else ''}: {e}") from None
        if cls is LMConfig:
            _check_lm(config, label, LMConfig(**values))
            continue
        run = TrainConfig(**values)
        for arm_label, arm in arms.items():  # what an arm's init needs of the recipe every arm shares
            unmet = INITS[arm["init"]].unmet_need(run)
            if unmet:
                key, want, have = unmet
                raise ConfigError(f"experiments.{label}.{key}: arm {arm_label!r} (init {arm['init']!r}) needs "
                                  f"{key}: {want}, this experiment has {have!r}; set it for the experiment, so "
                                  "that every arm trains with it")
        no_root = config["data"]["imagenet"]["root"] is None and not recipe.get("data_root")
        if recipe["dataset"] == "imagenet" and no_root:
            raise ConfigError(f"data.imagenet.root: experiments.{label} trains on ImageNet, which is never downloaded; "
                              "set data.imagenet.root to your copy (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG)")
        if label.startswith("profile_"):
            # results/figures/structure_profile_<x> would be both figures of <x> and <profile_x>.
            raise ConfigError(f"experiments.{label}: labels may not start with 'profile_' (its structure figure "
                              "would share a name with another experiment's); rename it")
    seed = config["structure"]["seed"]
    if seed is not None and seed not in config["seeds"]:
        raise ConfigError(f"structure.seed: {seed} is not one of seeds {config['seeds']}; its runs would be trained "
                          "only for the structure figures and missing from every table. Pick one of seeds")
    for exp, label in config["structure"]["reference"].items():
        if exp not in experiments:
            raise ConfigError(f"structure.reference.{exp}: not an experiment ({sorted(experiments)})")
        if label not in config["pretrained"]:
            raise ConfigError(f"structure.reference.{exp}: {label!r} is not a `pretrained` label "
                              f"({sorted(config['pretrained'])})")
    for label, entry in config["pretrained"].items():
        _check_pretrained(label, entry)


def _check_lm(config: dict[str, Any], label: str, run: LMConfig) -> None:
    """What a language-model experiment needs of the arms and of its corpus, before any job."""
    from mimetic.data.text import text_problem

    for arm_label, arm in config["arms"].items():
        if "lm" not in INITS[arm["init"]].kinds:
            raise ConfigError(f"arms.{arm_label}.init: {arm['init']!r} works on ViTs only, and experiment {label!r} "
                              "trains a GPT; give the language-model experiments a config of their own "
                              "(config/lm.yaml)")
    if run.data_root is not None:
        return  # the run reads prepared tokens from there, not the corpus
    data = config["data"]
    problem = text_problem(run.dataset, data[run.dataset]["root"], run.tokenizer, run.context,
                           data["gpt2_tokenizer"]["root"])
    if problem:
        key, message = problem
        where = key if key.startswith("data.") else f"experiments.{label}.{key}"
        raise ConfigError(f"{where}: {message}")


class RunMismatch(ValueError):
    """A finished run that is not of the config's recipe or data; the message names it and what to do."""


def check_finished_run(summary_path: str | Path, expected: Recipe) -> None:
    """A finished run (its summary.json exists) must be of the `expected` recipe and of the data it
    reads now (the data stage's fingerprint): a run of another recipe (another config's in the same
    results folder, a copied folder, a run Snakemake was told not to redo) would otherwise be
    trained over, or enter the tables under this config's name. Planning and `mimetic
    check-records` call it; a summary that is missing or unreadable is the records check's to name."""
    path = Path(summary_path)
    try:
        s = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    recorded_recipe = s.get("config") if isinstance(s, dict) else None
    if not isinstance(recorded_recipe, dict):
        return
    recorded, now = s.get("data_fingerprint"), data_fingerprint(expected.data_meta())
    if recorded and now and recorded != now:  # either unknown (a built-in set, an older record): nothing to hold
        raise RunMismatch(f"{path.parent} was trained on other data than this config's: its data fingerprint is "
                          f"{recorded[:12]}..., {expected.data_meta()} now holds {now[:12]}...; it is kept as it is: "
                          "to train on these data move that folder away (or delete it), or point the config back at "
                          "the data it was trained on")
    diff = differences(recorded_recipe, expected)
    if diff:
        shown = "; ".join(f"{k}: {recorded_recipe.get(k, '(unset)')!r} there, {getattr(expected, k, '(unset)')!r} "
                          "in this config" for k in diff[:3])
        more = "; ..." if len(diff) > 3 else ""
        raise RunMismatch(f"{path.parent} is a finished run of another recipe ({shown}{more}); it is kept as it is: "
                          "to train this recipe move that folder away (or delete it), or give this config's "
                          "experiment another label")


def schema_message(error: Exception) -> str:
    """One line for a config that fails the workflow's schema: the config path of the bad key and
    what is wrong. `error` is Snakemake's, raised while handling jsonschema's (whose text prints
    the whole schema, hundreds of lines); anything else is returned as it reads."""
    import jsonschema

    cause = error.__cause__ or error.__context__
    if not isinstance(cause, jsonschema.ValidationError):
        return str(error)
    bad = jsonschema.exceptions.best_match([cause])
    path = ".".join(map(str, bad.absolute_path))
    if bad.validator == "required":
        missing = re.match(r"'([^']+)' is a required property", bad.message)
        key = ".".join(filter(None, [path, missing.group(1) if missing else None]))
        hint = ("; `--configfile` replaces config/config.yaml, so a file that changes a few keys goes "
                "after the one it changes: --configfile config/config.yaml yours.yaml") if not path else ""
        return f"{key}: required but missing{hint}"
    if bad.validator == "additionalProperties" and isinstance(bad.instance, dict):
        # jsonschema's text names the key, but not which kind of section refused it (an image key
        # on a language-model experiment, or the reverse)
        allowed = bad.schema.get("properties", {})
        extra = sorted(k for k in bad.instance if k not in allowed)
        what = bad.schema.get("description", "this section")
        return (f"{'.'.join(filter(None, [path, str(extra[0])]))}: not a key of {what}; its keys are "
                f"{sorted(allowed)}")
    return f"{path or 'the config'}: {bad.message}"


def _check_pretrained(label: str, entry: dict[str, Any]) -> None:
    """One `pretrained:` entry: its timm name, and for a checkpoint read by its layout the layout, heads and
    widths, from the file's header without torch, so that an unknown layout stops here, naming what it found."""
    from mimetic.attention.pretrained import check_entry, is_gpt2

    model = entry["model"]
    if model is not None and not is_gpt2(model):
        _check_pretrained_name(label, model, has_file=bool(entry["file"]))
    try:
        check_entry(label, model, entry["file"], entry["num_heads"], entry["mapping"])
    except (ValueError, OSError) as e:  # ours start with the entry's key; the system's (a permission) name the file
        message = str(e)
        raise ConfigError(message if message.startswith(f"pretrained.{label}") else
                          f"pretrained.{label}.file: {message}") from None


def _check_pretrained_name(label: str, model: str, *, has_file: bool) -> None:
    """A timm name (with its pretrained tag unless a local file gives the weights) or a GPT-2 size."""
    from fnmatch import fnmatch

    from mimetic.attention.pretrained import GPT2_HEADS, is_gpt2

    if is_gpt2(model):
        return
    arch = model.split(".")[0]
    names = timm_names()
    if arch not in names["models"]:
        raise ConfigError(f"pretrained.{label}.model: {model!r} is not a timm model (nor a GPT-2 size "
                          f"{sorted(GPT2_HEADS)}); `python -c \"import timm; print(timm.list_models('vit_*'))\"` "
                          "lists the ViTs; for a local checkpoint of another model, leave `model` out")
    if "." in model and not has_file and model not in names["pretrained"]:
        tags = [n for n in names["pretrained"] if fnmatch(n, arch + ".*")]
        raise ConfigError(f"pretrained.{label}.model: timm has no pretrained weights tagged {model!r}; its tags "
                          f"for {arch}: {tags or 'none'}")


def timm_names() -> dict[str, list[str]]:
    """timm's model names and pretrained tags ("models", "pretrained"), read from timm once per timm
    version and cached (default ~/.cache/mimetic): importing timm imports torch, seconds that
    planning would pay at every dry run."""
    from importlib.metadata import version

    from mimetic import io

    path = io.cache_dir() / f"timm-{version('timm')}-names.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    import timm

    names = {"models": timm.list_models(), "pretrained": timm.list_pretrained()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        io.write_json(path, names)
    except OSError:
        pass  # a read-only home: checked all the same, from timm itself
    return names


def check_config(config: dict[str, Any], files: Iterable[str | Path], schema: str | Path,
                 validate: Callable[..., None]) -> None:
    """The workflow's whole check at planning, in its order: the YAML files (duplicate keys),
    YAML 1.2 numbers, the schema (which fills in its defaults, in place), then `check`. Raises
    ConfigError naming the first mistake. `validate` is Snakemake's (snakemake.utils.validate):
    the workflow passes it, so that the jobs' environments need no Snakemake."""
    check_files(files)
    yaml12_numbers(config)
    try:
        validate(config, schema=str(schema))
    except Exception as e:  # Snakemake's WorkflowError, around jsonschema's ValidationError
        raise ConfigError(schema_message(e)) from None
    check(config)
