"""`mimetic <command>` (or `python -m mimetic <command>`): the entry points the workflow's rules call.

Each command is a row of COMMANDS: its help, its arguments (a small table), its handler (a call
of the library function that does the work and writes its own outputs) and the errors it turns
into one line. Only the command that runs is built, so `mimetic aggregate` never imports torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mimetic.data.core import DatasetError

Args = list[tuple[tuple[str, ...], dict[str, Any]]]


def _onoff(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected on or off")
    return text == "on"


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `low` (a count), else argparse's one-line error naming the flag."""
    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value}: must be >= {low}")
        return value
    return count


def _json_text(text: str) -> str:
    """An argparse type: JSON text, checked here so that a typo is refused naming its flag."""
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e})") from None
    return text


def _device(text: str) -> str:
    """An argparse type: auto, cpu, or a CUDA device this machine has (torch's error comes late, in many lines)."""
    found = re.fullmatch(r"auto|cpu|cuda(?::(\d+))?", text)
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r}: expected auto, cpu, cuda or cuda:N")
    if text.startswith("cuda"):
        import torch

        count = torch.cuda.device_count()
        if int(found.group(1) or 0) >= count:
            raise argparse.ArgumentTypeError(f"{text!r}: this machine shows {count} CUDA device(s); use --device cpu "
                                             "or auto")
    return text


RECORDS: Args = [(("--summaries",), dict(nargs="+", required=True, help="summary.json of each run")),
                 (("--metrics",), dict(nargs="+", required=True, help="metrics.csv of each run, in the same order")),
                 (("--inits",), dict(nargs="*", default=[], help="init.json of each run, in the same order"))]
RESULTS: Args = [
    (("--runs-csv",), dict(required=True, help="runs.csv from `aggregate`")),
    (("--epochs-csv",), dict(required=True, help="epochs.csv from `aggregate`")),
    (("--claims",), dict(required=True, help="claims.yaml (config/claims.yaml)")),
    (("--claims-schema",), dict(required=True, help="its schema (workflow/schemas/claims.schema.yaml)")),
    (("--references",), dict(help="references.yaml (config/references.yaml)")),
    (("--references-schema",), dict(help="its schema (workflow/schemas/references.schema.yaml)")),
    (("--baseline",), dict(default="default", help="the arm gains are measured against")),
    (("--out",), dict(nargs="+", required=True, help="output files, one per name and format (every one the command "
                                                     "writes must be given)")),
]
STRUCTURE_OUT: Args = [(("--products",), dict(nargs="+", required=True, help="output: the products (safetensors)")),
                       (("--metrics",), dict(nargs="+", required=True,
                                             help="output: the structure metrics per layer and head (CSV)"))]


# --- handlers: one library call each -------------------------------------------------------------

def _train(a: argparse.Namespace) -> None:
    from mimetic.train import launch
    from mimetic.train.recipe import TrainConfig

    overrides = {name: getattr(a, name) for name in TrainConfig.EXECUTION}
    cfg = launch.recipe_from_json(a.recipe, seed=a.seed, **overrides)
    launch.run(cfg, a.out, experiment=a.experiment, arm=a.arm, checkpoint=a.checkpoint, gpus=a.gpus,
               runs_per_gpu=a.runs_per_gpu, processes=a.processes, threads=a.threads, argv=a.argv)


def _bench(a: argparse.Namespace) -> None:
    from mimetic import io
    from mimetic.bench import measure
    from mimetic.bench.options import Options, cli_fields

    recipe = json.loads(a.recipe)
    if not isinstance(recipe, dict):
        raise ValueError(f"--recipe must be a JSON object of recipe keys, not {type(recipe).__name__}")
    opts = Options(**{f.name: getattr(a, f.name) for f in cli_fields() if f.name != "recipe"}, recipe=recipe)
    doc = measure.run(opts, command=" ".join(["mimetic", *a.argv]), log=lambda s: print(s, flush=True))
    if a.json == "-":
        print(json.dumps(doc, indent=2))
    elif a.json:
        io.write_json(a.json, doc)


def _prepare(a: argparse.Namespace) -> None:
    from mimetic.data.text import TEXT_DATASETS

    text = a.dataset in TEXT_DATASETS
    other = ({"--train": a.train, "--test": a.test, "--classes": a.classes, "--train-per-class": a.train_per_class,
              "--val-per-class": a.val_per_class} if text else
             {"--tokenizer": a.tokenizer, "--tokenizer-root": a.tokenizer_root, "--tokens": a.tokens})
    stray = [flag for flag, given in other.items() if given is not None]
    if stray:  # said, not ignored: a flag that does nothing is a mistake in the command
        raise DatasetError(f"{a.dataset}: {', '.join(stray)} {'are' if len(stray) > 1 else 'is'} not for "
                           f"{'a text corpus' if text else 'an image dataset'}; leave it out")
    if text:
        _prepare_text(a)
        return
    from mimetic.data.stage import prepare_any

    meta = prepare_any(a.dataset, a.root, {"train": a.train, "test": a.test, "meta": a.meta}, classes=a.classes,
                       train_per_class=a.train_per_class, val_per_class=a.val_per_class, workers=a.workers)
    print(f"{a.dataset}: {meta['train']} training and {meta.get('test', meta.get('val'))} test images, "
          f"{len(meta['classes'])} classes", flush=True)


def _prepare_text(a: argparse.Namespace) -> None:
    from mimetic.data.text import TOKENIZERS, prepare_text, text_stage_files

    if a.tokenizer is None:
        raise DatasetError(f"{a.dataset}: give --tokenizer ({', '.join(TOKENIZERS)})")
    files = text_stage_files(a.dataset, a.tokenizer)
    meta = prepare_text(a.dataset, a.root, a.tokenizer, {"tokens": a.tokens or files["tokens"],
                                                         "meta": a.meta or files["meta"]}, a.tokenizer_root)
    counts = meta["counts"]
    print(f"{a.dataset} ({a.tokenizer}): {counts['train']:,} training and {counts['val']:,} validation tokens, "
          f"vocabulary of {meta['vocab_size']:,}", flush=True)


def _inits(a: argparse.Namespace) -> None:
    from mimetic.attention.init import INITS, init_params

    for name, init in INITS.items():
        params = ", ".join(f"{k}={v}" for k, v in init_params(name).items()) or "no parameters"
        touches = ", ".join(init.touches) or "nothing"
        print(f"{name:12s} {params}\n{'':12s} touches {touches}\n{'':12s} {init.description}"
              + (f"\n{'':12s} source: {init.source}" if init.source else ""))


def _schema(a: argparse.Namespace) -> None:
    from mimetic import generated

    stale = generated.stale()
    if a.write:
        generated.write()
        print("rewritten: " + (", ".join(map(str, stale)) or "nothing (all up to date)"))
    elif stale:
        raise ValueError(f"stale: {', '.join(map(str, stale))}; run `{generated.COMMAND}`")


def _records(a: argparse.Namespace) -> list[tuple[str, ...]]:
    inits = a.inits
    if len(a.summaries) != len(a.metrics) or inits and len(inits) != len(a.summaries):
        raise ValueError("--summaries, --metrics (and --inits) must name the same runs, in one order")
    return list(zip(a.summaries, a.metrics, inits)) if inits else list(zip(a.summaries, a.metrics))


def _check_records(a: argparse.Namespace) -> None:
    from mimetic.checks import check_finished_run
    from mimetic.report.records import load_runs
    from mimetic.train.recipe import recipe_class

    runs, _ = load_runs(_records(a))
    if a.recipes is not None:
        expected = json.loads(a.recipes)
        if len(expected) != len(a.summaries):
            raise ValueError("--recipes must hold one recipe per --summaries file, in one order")
        for path, values in zip(a.summaries, expected):
            check_finished_run(path, recipe_class(values["dataset"])(**values).validate())
    print(f"{len(runs)} run records are complete, readable{' and of the config' * (a.recipes is not None)}",
          flush=True)


def _aggregate(a: argparse.Namespace) -> None:
    from mimetic.report.records import write_tables

    write_tables(_records(a), a.runs_csv, a.epochs_csv)


def _results(a: argparse.Namespace) -> tuple:
    import pandas as pd

    from mimetic.report.claims import load_claims, load_references

    references = load_references(a.references, a.references_schema) if a.references else []
    return (pd.read_csv(a.runs_csv), pd.read_csv(a.epochs_csv), a.baseline, load_claims(a.claims, a.claims_schema),
            references)


def _by_name(files: list[str]) -> dict[str, str]:
    from pathlib import Path

    return {Path(f).name: f for f in files}


def _tables(a: argparse.Namespace) -> None:
    from mimetic.report import tables

    tables.write_all(*_results(a), _by_name(a.out))


def _figures(a: argparse.Namespace) -> None:
    from mimetic.report import figures

    runs, epochs, baseline, claims, _ = _results(a)
    figures.paper_figures(runs, epochs, baseline, claims, _by_name(a.out))


def _provenance(a: argparse.Namespace) -> None:
    from mimetic import provenance

    provenance.write_page(a.out, a.summaries, json.loads(a.config))


def _extract(a: argparse.Namespace) -> None:
    from mimetic.attention import structure
    from mimetic.attention.pretrained import load_pretrained

    mapping = json.loads(a.mapping) if a.mapping is not None else None
    source = load_pretrained(a.model, a.file, a.num_heads, label=a.label, mapping=mapping)
    # The layout names the model in the figures' legends (ViT, GPT-2 and BERT side by side).
    meta = {"model": a.model or "", "file": str(a.file or ""), "num_heads": str(source.weights[0].num_heads),
            "layout": source.layout}
    structure.write(structure.products_from_weights(source.weights), a.products[0], a.metrics[0], meta)


def _extract_runs(a: argparse.Namespace) -> None:
    from pathlib import Path

    from mimetic.attention import structure
    from mimetic.train.models import run_model

    sources = [(s, w, stage) for s, w in zip(a.summaries, a.weights) for stage in a.stages]
    if not len(a.summaries) == len(a.weights) or not len(sources) == len(a.products) == len(a.metrics):
        raise ValueError("give --weights for each of --summaries, and --products and --metrics for each run and stage "
                         "(runs outer, stages inner)")
    for (summary, weights, stage), products, metrics in zip(sources, a.products, a.metrics):
        model = run_model(json.loads(Path(summary).read_text()), weights, stage)
        structure.write(structure.attention_products(model), products, metrics, {"summary": summary, "stage": stage})


def _plot_structure(a: argparse.Namespace) -> None:
    from mimetic.report import structure_figures

    if len(a.products) != len(a.labels) or a.metrics and len(a.metrics) != len(a.labels):
        raise ValueError(f"--products and --metrics: one file per --labels ({len(a.labels)}), in its order")
    per = len(a.heatmaps) // max(len(a.heatmaps_of), 1)
    if len(a.heatmaps) != per * len(a.heatmaps_of) or (a.heatmaps_of and not per):
        raise ValueError("--heatmaps: the same number of files (one per format) for each of --heatmaps-of")
    if a.arms and len(a.arms) != len(a.labels) or a.stages and len(a.stages) != len(a.labels):
        raise ValueError(f"--arms and --stages: one per --labels ({len(a.labels)}), in its order ('-': none)")
    heatmaps = {label: a.heatmaps[i * per:(i + 1) * per] for i, label in enumerate(a.heatmaps_of)}
    arms = {label: arm for label, arm in zip(a.labels, a.arms) if arm != "-"}
    initialized = [label for label, stage in zip(a.labels, a.stages) if stage == "init"]
    structure_figures.write_all(dict(zip(a.labels, a.products)), dict(zip(a.labels, a.metrics)), heatmaps=heatmaps,
                                compare=a.compare, profile=a.profile, title=a.title, crop=a.crop,
                                compare_crop=a.compare_crop, arms=arms, initialized=initialized,
                                baseline=a.baseline)


# --- the commands ---------------------------------------------------------------------------------

def _train_args() -> Args:
    """train's own options, then one per TrainConfig.EXECUTION field (type and help from the field)."""
    from mimetic.train.recipe import TrainConfig

    args: Args = [
        (("--recipe",), dict(required=True, help="what the run computes: a JSON object of recipe keys "
                                                 "(config/README.md; `dataset` and `model` required; a text corpus as "
                                                 "`dataset` makes it a language-model run), with `init` and "
                                                 "`init_params`")),
        (("--seed",), dict(type=int, default=None, help="seed of model init, attention init, data order, augmentation "
                                                        "(default: the recipe's `seed`, else 0)")),
        (("--experiment",), dict(help="the run's experiment label, recorded in summary.json (default: the dataset)")),
        (("--arm",), dict(help="the run's arm label, recorded in summary.json (default: the init)")),
        (("--out",), dict(required=True, help="the run's folder")),
        (("--checkpoint",), dict(help="checkpoint file: resumed from if present, deleted when the run is done")),
    ]
    for f in dataclasses.fields(TrainConfig):
        if f.name in TrainConfig.EXECUTION:
            flag = "--" + f.name.replace("_", "-")
            if str(f.type) == "bool":
                args.append(((flag,), dict(action=argparse.BooleanOptionalAction, default=None,
                                           help=f.metadata["help"])))
            else:
                kind = {"int": int, "int | None": int, "float": float}.get(str(f.type), str)
                args.append(((flag,), dict(type=kind, default=None, help=f.metadata["help"])))
    return args + [
        (("--gpus",), dict(type=int, default=None, help="GPUs this run takes (0: the CPU); default: 1 if a GPU is "
                                                        "visible, else 0. Each is locked for the run (train.gpu)")),
        (("--runs-per-gpu",), dict(type=_at_least(1), default=1, help="runs that may share one GPU")),
        (("--processes",), dict(type=int, default=None, help="data-parallel processes (torchrun): one per GPU; "
                                                             "--gpus 0 --processes 2 runs DDP on the CPU (gloo)")),
        (("--threads",), dict(type=_at_least(0), default=0, help="CPU threads for torch (0: torch's default)")),
    ]


# The least each of bench's counts may be: below it torch fails deep in the run (a division by
# zero, a negative tensor size), so argparse refuses it first.
def _bench_args() -> Args:
    """One flag per mimetic.bench.options.Options field, with its type, default, choices and help."""
    from mimetic.bench.options import cli_fields

    args: Args = []
    for f in cli_fields():
        m, flag = f.metadata, "--" + f.name.replace("_", "-")
        if m["onoff"]:
            spec = dict(type=_onoff, default=f.default, metavar="on|off")
        elif f.name == "recipe":
            spec = dict(type=_json_text, default="{}")
        elif f.name == "device":
            spec = dict(type=_device, default=f.default)
        elif m["at_least"] is not None:
            spec = dict(type=_at_least(m["at_least"]), default=f.default)
        else:
            spec = dict(type={"int": int, "int | None": int}.get(str(f.type), str), default=f.default)
            if m["choices"]:
                spec["choices"] = m["choices"]
        args.append(((flag,), dict(spec, help=m["help"])))
    return args + [(("--json",), dict(default=None, help="write the results as JSON to this file ('-': stdout)"))]


def _prepare_args() -> Args:
    from mimetic.data import PREPARED_NAMES
    from mimetic.data.text import TEXT_DATASETS, TOKENIZERS

    return [
        (("dataset",), dict(choices=[*PREPARED_NAMES, "imagenet", *TEXT_DATASETS])),
        (("--root",), dict(help="folder with the upstream files or their extracted folder, only read (default "
                                "resources/data/<name>, the only one downloaded into); for imagenet, its ImageFolder "
                                "copy; for text, your UTF-8 text file")),
        (("--tokenizer",), dict(choices=TOKENIZERS, help="text corpora: how the text becomes tokens (required)")),
        (("--tokenizer-root",), dict(help="gpt2: a folder with GPT-2's tokenizer files (vocab.json and merges.txt, "
                                          "or tokenizer.json); default: the hub's openai-community/gpt2, or its "
                                          "cache")),
        (("--tokens",), dict(help="output: a text corpus' tokens (.npz; default resources/data/<name>/"
                                  "tokens-<tokenizer>.npz)")),
        (("--train",), dict(help="output: the training split (imagenet: its index CSV)")),
        (("--test",), dict(help="output: the test split (imagenet: the validation index)")),
        (("--meta",), dict(help="output: meta.json (a text corpus: tokens-<tokenizer>.json), written last")),
        (("--classes",), dict(nargs="+", help="imagenet: the first N classes (one number) or a list of wnids")),
        (("--workers",), dict(type=int, default=8, help="imagenet: processes that check the images can be read")),
        (("--train-per-class",), dict(type=int, help="imagenet: keep the first N training images per class")),
        (("--val-per-class",), dict(type=int, help="imagenet: keep the first N validation images per class")),
    ]


def _usual_errors() -> tuple[type[BaseException], ...]:
    # RecordError and SpecError are ValueErrors; an OSError names its path (a folder given for a file)
    return (ValueError, DatasetError, OSError)


def _train_errors() -> tuple[type[BaseException], ...]:
    from mimetic.train.launch import LaunchError
    from mimetic.train.preempt import Preempted

    return (ValueError, DatasetError, LaunchError, Preempted)


def _bench_errors() -> tuple[type[BaseException], ...]:
    return (ValueError, TypeError, DatasetError, OSError)  # TypeError: an unknown recipe key


def _structure_errors() -> tuple[type[BaseException], ...]:
    from safetensors import SafetensorError

    from mimetic.attention.pretrained import PretrainedUnavailable

    # SafetensorError: a run's weights or products file that is no safetensors (pretrained files say it themselves)
    return (PretrainedUnavailable, OSError, ValueError, KeyError, SafetensorError)


@dataclass(frozen=True)
class Command:
    help: str
    handler: Callable[[argparse.Namespace], None]
    args: Callable[[], Args]
    errors: Callable[[], tuple[type[BaseException], ...]] = _usual_errors  # ended in one line
    description: str = ""


COMMANDS: dict[str, Command] = {
    "train": Command("train one run (experiment, arm, seed) into a folder", _train, _train_args, _train_errors,
                     description="Train one run into --out: metrics.csv, final.safetensors, summary.json. Execution "
                                 "options say how the run executes, not what it computes: given here, they override "
                                 "the recipe's, and changing them never invalidates a finished run."),
    "bench": Command("training images/s of the project's step vs the usual DataLoader loop", _bench, _bench_args,
                     _bench_errors, description="Time the project's training step after warm-up, and in the same "
                                                "process the loop a timm user writes (BENCHMARKS.md)."),
    "prepare": Command("the data stage: download, verify and convert one dataset", _prepare, _prepare_args,
                       lambda: (DatasetError,)),
    "inits": Command("list the attention initializations and their parameters", _inits, lambda: []),
    "schema": Command("check (or --write) the schema and docs parts generated from the code", _schema,
                      lambda: [(("--write",), dict(action="store_true", help="rewrite them"))]),
    "check-records": Command("check that every run record is complete and readable (and of its recipe)",
                             _check_records, lambda: [*RECORDS, (("--recipes",), dict(
                                 help="a JSON list of each run's recipe (its `mimetic train --recipe` with its seed), "
                                      "in --summaries' order: a run of another recipe stops the check"))]),
    "aggregate": Command("run records -> runs.csv and epochs.csv", _aggregate, lambda: [
        *RECORDS, (("--runs-csv",), dict(required=True, help="output: one row per run")),
        (("--epochs-csv",), dict(required=True, help="output: one row per run and epoch"))]),
    "tables": Command("runs -> the result tables (mimetic.report.outputs.TABLES; CSV, Markdown, LaTeX, HTML)",
                      _tables, lambda: RESULTS),
    "figures": Command("runs -> the result figures (mimetic.report.outputs.FIGURES; PNG and PDF)", _figures,
                       lambda: RESULTS),
    "provenance": Command("run records + config -> the report's provenance page (HTML)", _provenance, lambda: [
        (("--summaries",), dict(nargs="+", required=True, help="summary.json of each run")),
        (("--config",), dict(required=True, type=_json_text, help="the resolved workflow config, as JSON")),
        (("--out",), dict(required=True, help="output: the HTML page"))]),
    "extract": Command("pretrained model -> attention products and structure metrics", _extract, lambda: [
        (("--model",), dict(help="timm model name with its tag, or gpt2[-medium|-large|-xl]; leave it out for a "
                                 "--file read by its layout (timm ViT, GPT-2, BERT, or --mapping)")),
        (("--file",), dict(help="local checkpoint (safetensors or PyTorch state dict) or Hugging Face model folder "
                                "(config.json and its weights) instead of the hub")),
        (("--num-heads",), dict(type=int, help="heads per layer: GPT-2 sizes and files without --model, where "
                                               "config.json does not give them")),
        (("--mapping",), dict(type=_json_text, help="a --file of another layout: JSON {q, k, v, o (or qkv, o): "
                                                    "parameter name with {layer}, conv1d: true|false} "
                                                    "(docs/pretrained.md)")),
        (("--label",), dict(default="<label>", help="the model's key in the config's `pretrained` section")),
        *STRUCTURE_OUT], _structure_errors),
    "extract-runs": Command("training runs -> attention products of their initial and final models", _extract_runs,
                            lambda: [
        (("--summaries",), dict(nargs="+", required=True, help="each run's summary.json")),
        (("--weights",), dict(nargs="+", required=True, help="each run's final.safetensors, in the same order")),
        (("--stages",), dict(nargs="+", choices=("init", "final"), required=True, help="init: the rebuilt initial "
                                                                                        "model; final: its weights")),
        *STRUCTURE_OUT], _structure_errors),
    "plot-structure": Command("products -> heatmaps, sources side by side, the diagonal profile", _plot_structure,
                              lambda: [
        (("--labels",), dict(nargs="+", required=True, help="each source's label, in column order")),
        (("--products",), dict(nargs="+", required=True, help="each source's products (safetensors), in that order")),
        (("--metrics",), dict(nargs="*", default=[], help="each source's structure.csv, for the profile")),
        (("--heatmaps-of",), dict(nargs="*", default=[], metavar="LABEL",
                                  help="the sources whose heatmap grid (the paper's Figure 1) is drawn")),
        (("--heatmaps",), dict(nargs="*", default=[], help="their files, as many for each (one per format)")),
        (("--compare",), dict(nargs="*", default=[], help="the sources side by side, to these files")),
        (("--profile",), dict(nargs="*", default=[], help="the diagonal profile over depth, to these files")),
        (("--arms",), dict(nargs="*", default=[], help="each source's arm, in --labels order ('-': none, e.g. "
                                                      "a pretrained model): the profile draws it in the arm's colour")),
        (("--stages",), dict(nargs="*", default=[], choices=("init", "final", "-"),
                             help="each source's stage, in --labels order: init sources are drawn dashed")),
        (("--baseline",), dict(default="default", help="the baseline arm (it keeps its colour)")),
        (("--title",), dict(default="", help="figure title")),
        (("--crop",), dict(type=int, default=64, help="heatmaps: the top-left CROP x CROP block; 0 shows all")),
        (("--compare-crop",), dict(type=int, default=32, help="side by side: the same"))], _structure_errors),
}


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI; `command`: the one about to run (only its arguments are built), or None for all."""
    p = argparse.ArgumentParser(prog="mimetic", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, c in COMMANDS.items():
        s = sub.add_parser(name, help=c.help, description=c.description or c.help,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if command in (None, name):
            for flags, spec in c.args():
                s.add_argument(*flags, **spec)
        s.set_defaults(handler=c.handler)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(argv[0] if argv and argv[0] in COMMANDS else None).parse_args(argv)
    args.argv = argv
    try:
        args.handler(args)
    except COMMANDS[args.command].errors() as e:
        if hasattr(e, "exit_code"):  # a pre-empted run: its own status, which says "retry"
            print(f"mimetic {args.command}: {e}", file=sys.stderr, flush=True)
            raise SystemExit(e.exit_code) from None
        raise SystemExit(f"mimetic {args.command}: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
