"""`mimetic <command>` (or `python -m mimetic <command>`): the entry points the workflow's rules call.

Parsers and one-line handlers only; the work is in the modules they call.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from typing import TYPE_CHECKING

from mimetic.data import DatasetError

if TYPE_CHECKING:
    import torch


def _pair(text: str, form: str = "LABEL=PATH") -> tuple[str, str]:
    left, sep, right = text.partition("=")
    if not sep or not left or not right:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {form}")
    return left, right


def _train(args: argparse.Namespace) -> None:
    from mimetic import launch
    from mimetic.recipe import TrainConfig

    overrides = {name: getattr(args, name) for name in TrainConfig.EXECUTION}
    try:
        cfg = launch.recipe_from_json(args.recipe, seed=args.seed, **overrides)
        launch.run(cfg, args.out, experiment=args.experiment, arm=args.arm, checkpoint=args.checkpoint,
                   gpus=args.gpus, runs_per_gpu=args.runs_per_gpu, processes=args.processes, threads=args.threads,
                   argv=args.argv)
    except (ValueError, launch.LaunchError, DatasetError) as e:
        raise SystemExit(f"mimetic train: {e}")


def _onoff(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected on or off")
    return text == "on"


def _bench(args: argparse.Namespace) -> None:
    from mimetic import bench, io

    try:
        recipe = json.loads(args.recipe)
        if not isinstance(recipe, dict):
            raise ValueError(f"--recipe must be a JSON object of recipe keys, not {type(recipe).__name__}")
        opts = bench.Options(**{k: v for k, v in vars(args).items() if k in bench.Options.__dataclass_fields__
                                and k != "recipe"}, recipe=recipe)
        doc = bench.run(opts, command=" ".join(["mimetic", *args.argv]), log=lambda s: print(s, flush=True))
    except (ValueError, TypeError, DatasetError) as e:  # TypeError: an unknown recipe key
        raise SystemExit(f"mimetic bench: {e}")
    if args.json == "-":
        print(json.dumps(doc, indent=2))
    elif args.json:
        io.write_json(args.json, doc)


def _prepare(args: argparse.Namespace) -> None:
    from mimetic.data.prepare import prepare
    from mimetic.data.imagenet import index

    outputs = {"train": args.train, "test": args.test, "meta": args.meta}
    try:
        if args.dataset == "imagenet":
            classes = args.classes
            if classes and len(classes) == 1 and classes[0].isdigit():
                classes = int(classes[0])
            meta = index(args.root, outputs, classes=classes, train_per_class=args.train_per_class,
                         val_per_class=args.val_per_class, workers=args.workers)
        else:
            meta = prepare(args.dataset, args.root, outputs)
    except DatasetError as e:
        raise SystemExit(f"mimetic prepare: {e}")
    print(f"{args.dataset}: {meta['train']} training and {meta.get('test', meta.get('val'))} test images, "
          f"{len(meta['classes'])} classes", flush=True)


def _inits(args: argparse.Namespace) -> None:
    from mimetic.init import INITS, init_params

    for name in INITS:
        params = ", ".join(f"{k}={v}" for k, v in init_params(name).items()) or "no parameters"
        print(f"{name:12s} {params}\n{'':12s} {(INITS[name].__doc__ or '').strip()}")


def _load_records(args: argparse.Namespace) -> tuple:
    from mimetic import aggregate

    if len(args.summaries) != len(args.metrics):
        raise SystemExit(f"mimetic {args.command}: --summaries and --metrics must name the same runs, in one order")
    try:
        return aggregate.load_runs(zip(args.summaries, args.metrics))
    except aggregate.RecordError as e:
        raise SystemExit(f"mimetic {args.command}: {e}")


def _check_records(args: argparse.Namespace) -> None:
    runs, _ = _load_records(args)
    print(f"{len(runs)} run records are complete and readable", flush=True)


def _aggregate(args: argparse.Namespace) -> None:
    from mimetic import aggregate, io

    runs, epochs = _load_records(args)
    summary = aggregate.summarize(runs, epochs, baseline=args.baseline)
    io.write_csv(args.runs_csv, runs)
    io.write_csv(args.epochs_csv, epochs)
    io.write_csv(args.summary_csv, summary)
    io.write_text(args.summary_md, aggregate.markdown(summary, args.baseline))


def _results(args: argparse.Namespace) -> tuple:
    """(runs, epochs, claims, references) for the result tables and figures."""
    import pandas as pd

    from mimetic.claims import SpecError, load_claims, load_references

    try:
        claims = load_claims(args.claims, args.claims_schema)
        references = load_references(args.references, args.references_schema) if args.references else []
    except SpecError as e:
        raise SystemExit(f"mimetic {args.command}: {e}")
    return pd.read_csv(args.runs_csv), pd.read_csv(args.epochs_csv), claims, references


def _tables(args: argparse.Namespace) -> None:
    from mimetic import tables

    runs, epochs, claims, references = _results(args)
    tables.write_all(runs, epochs, args.baseline, claims, references, {Path(f).name: f for f in args.out})


def _figures(args: argparse.Namespace) -> None:
    from mimetic import plots

    runs, epochs, claims, _ = _results(args)
    plots.paper_figures(runs, epochs, args.baseline, claims, {Path(f).name: f for f in args.out})


def _provenance(args: argparse.Namespace) -> None:
    from mimetic import io, provenance

    summaries = [json.loads(Path(p).read_text()) for p in args.summaries]
    io.write_text(args.out, provenance.page(summaries, json.loads(args.config)))


def _plot_curves(args: argparse.Namespace) -> None:
    import pandas as pd

    from mimetic import plots

    plots.learning_curves(pd.read_csv(args.epochs), args.out)


def _write_structure(products: dict[str, torch.Tensor], args: argparse.Namespace, metadata: dict[str, str]) -> None:
    from mimetic import io
    from mimetic.structure import structure_metrics

    io.write_safetensors(args.products, products, metadata=metadata)
    io.write_csv(args.metrics, structure_metrics(products))


def _extract(args: argparse.Namespace) -> None:
    from mimetic.pretrained import PretrainedUnavailable, pretrained_weights
    from mimetic.structure import products_from_weights

    try:
        weights = pretrained_weights(args.model, args.file, args.num_heads, label=args.label)
    except (PretrainedUnavailable, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"mimetic extract: {e}")
    meta = {"model": args.model, "file": str(args.file or ""), "num_heads": str(weights[0].num_heads)}
    _write_structure(products_from_weights(weights), args, meta)


def _extract_run(args: argparse.Namespace) -> None:
    from mimetic.recipe import run_model
    from mimetic.structure import attention_products

    try:
        model = run_model(json.loads(Path(args.summary).read_text()), args.weights, args.stage)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise SystemExit(f"mimetic extract-run: {args.summary}: {e}")
    _write_structure(attention_products(model), args, {"summary": str(args.summary), "stage": args.stage})


def _load_products(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


def _plot_heatmaps(args: argparse.Namespace) -> None:
    from mimetic import plots

    plots.attention_heatmaps(_load_products(args.products), args.out, title=args.title, crop=args.crop)


def _plot_profile(args: argparse.Namespace) -> None:
    import pandas as pd

    from mimetic import plots

    metrics = pd.concat([pd.read_csv(path).assign(model=label) for label, path in args.metrics])
    plots.diagonal_profile(metrics, args.out)


def _plot_compare(args: argparse.Namespace) -> None:
    from mimetic import plots

    sources = {label: _load_products(path) for label, path in args.products}
    plots.structure_comparison(sources, args.out, title=args.title, crop=args.crop)


OUT_HELP = "figure file(s), each written in its suffix's format (e.g. fig.png fig.pdf)"


def _add_records(p: argparse.ArgumentParser) -> None:
    p.add_argument("--summaries", nargs="+", required=True, help="summary.json of each run")
    p.add_argument("--metrics", nargs="+", required=True, help="metrics.csv of each run, in the same order")


def _add_structure_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--products", required=True, help="output: the products (safetensors)")
    p.add_argument("--metrics", required=True, help="output: the structure metrics per layer and head (CSV)")


def _add_structure_commands(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    e = sub.add_parser("extract", formatter_class=fmt,
                       help="pretrained model -> attention products and structure metrics",
                       description="Load a pretrained timm model (hub name with tag, or --file) or GPT-2 "
                                   "(gpt2, gpt2-medium, ...) and write products.safetensors (qk: L x H x d x d, "
                                   "vo: L x d x d) and its structure metrics (CSV).")
    e.add_argument("--model", required=True, help="timm model name (e.g. vit_tiny_patch16_224.augreg_in21k_ft_in1k) "
                                                  "or gpt2, gpt2-medium, gpt2-large, gpt2-xl")
    e.add_argument("--file", help="local checkpoint (safetensors or PyTorch state dict) instead of the hub")
    e.add_argument("--num-heads", type=int, help="heads per layer (GPT-2 layout only; known sizes need none)")
    e.add_argument("--label", default="<label>", help="the model's key in the config's `pretrained` section, "
                                                      "named in error messages")
    _add_structure_outputs(e)
    e.set_defaults(func=_extract)

    r = sub.add_parser("extract-run", formatter_class=fmt,
                       help="training run -> attention products of its initial or final model",
                       description="Rebuild a finished run's initial model (same seed and init) or load its final "
                                   "weights, and write its attention products and their structure metrics.")
    r.add_argument("--summary", required=True, help="the run's summary.json")
    r.add_argument("--weights", required=True, help="the run's final.safetensors")
    r.add_argument("--stage", choices=("init", "final"), required=True, help="initial or final weights")
    _add_structure_outputs(r)
    r.set_defaults(func=_extract_run)

    h = sub.add_parser("plot-heatmaps", formatter_class=fmt,
                       help="the paper's Figure 1: Q/K per head and V/Proj per layer as heatmaps",
                       description="Grid of heatmaps, layers across, heads down, plus a row of W_v W_proj.")
    h.add_argument("--products", required=True, help="products.safetensors from `extract` or `extract-run`")
    h.add_argument("--out", nargs="+", required=True, help=OUT_HELP)
    h.add_argument("--title", default="", help="figure title, e.g. the model's name")
    h.add_argument("--crop", type=int, default=64, help="show the top-left CROP x CROP block; 0 shows all")
    h.set_defaults(func=_plot_heatmaps)

    f = sub.add_parser("plot-profile", formatter_class=fmt,
                       help="diagonal mean and identity cosine vs depth, one line per model",
                       description="Q/K and V/Proj panels of the structure metrics against layer depth.")
    f.add_argument("--metrics", nargs="+", type=_pair, required=True, metavar="LABEL=CSV",
                   help="structure.csv of each model, with the label its line gets")
    f.add_argument("--out", nargs="+", required=True, help=OUT_HELP)
    f.set_defaults(func=_plot_profile)

    c = sub.add_parser("plot-compare", formatter_class=fmt,
                       help="side by side: pretrained vs initialized vs trained, a few layers each",
                       description="One column per source: W_q W_k^T (head 1) and W_v W_proj at each "
                                   "source's first, middle and last layer.")
    c.add_argument("--products", nargs="+", type=_pair, required=True, metavar="LABEL=SAFETENSORS",
                   help="products.safetensors of each source, in column order")
    c.add_argument("--out", nargs="+", required=True, help=OUT_HELP)
    c.add_argument("--title", default="", help="figure title")
    c.add_argument("--crop", type=int, default=32, help="show the top-left CROP x CROP block; 0 shows all")
    c.set_defaults(func=_plot_compare)


def _execution_options(group: argparse._ArgumentGroup) -> None:
    """One option per TrainConfig.EXECUTION field, with its type and help."""
    from mimetic.recipe import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        if f.name in TrainConfig.EXECUTION:
            flag = "--" + f.name.replace("_", "-")
            if f.type in ("bool", bool):
                group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f.metadata["help"])
            else:
                kind = {"int": int, "int | None": int, "float": float}.get(str(f.type), str)
                group.add_argument(flag, type=kind, default=None, help=f.metadata["help"])


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI. `command`: the subcommand about to run, if known; another than `train` leaves out
    train's execution options, which come from the trainer's config and with it torch (seconds
    of import that the analysis jobs need not pay)."""
    p = argparse.ArgumentParser(prog="mimetic", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train one run (experiment, arm, seed) into a folder",
                       description="Train one run into --out: metrics.csv, final.safetensors, summary.json. "
                                   "Example: mimetic train --recipe '{\"dataset\": \"digits\", \"model\": "
                                   "\"vit_digits\", \"init\": \"mimetic\"}' --out runs/digits-mimetic")
    t.add_argument("--recipe", required=True,
                   help="what the run computes: a JSON object of recipe keys (config/README.md; `dataset` and "
                        "`model` required, the rest default), with `init` and `init_params`")
    t.add_argument("--seed", type=int, default=0, help="seed of model init, attention init, data order, augmentation")
    t.add_argument("--experiment", help="the run's experiment label, recorded in summary.json (default: the dataset)")
    t.add_argument("--arm", help="the run's arm label, recorded in summary.json (default: the init)")
    t.add_argument("--out", required=True, help="the run's folder")
    t.add_argument("--checkpoint", help="checkpoint file: resumed from if present, deleted when the run is done")
    x = t.add_argument_group("execution", "how the run executes, not what it computes: given here, they override "
                                          "the recipe's, and changing them never invalidates a finished run")
    if command in (None, "train"):
        _execution_options(x)
    x.add_argument("--gpus", type=int, default=None,
                   help="GPUs this run takes (0: the CPU); default: 1 if a GPU is visible, else 0. Each is "
                        "locked for the run (mimetic.gpu), so concurrent runs get distinct devices")
    x.add_argument("--runs-per-gpu", type=int, default=1, help="runs that may share one GPU")
    x.add_argument("--processes", type=int, default=None,
                   help="data-parallel processes (torchrun); default: one per GPU. --gpus 0 --processes 2 runs DDP "
                        "on the CPU (gloo). batch_size is the global batch, split evenly over processes")
    x.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    t.set_defaults(func=_train)

    b = sub.add_parser("bench", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       help="training images/s of the project's step vs the usual DataLoader loop",
                       description="Time the project's training step (the run's inputs, model, optimizer, scheduler "
                                   "and train_step) after warm-up, and in the same process the loop a timm user "
                                   "writes (DataLoader workers, PIL transforms with the same RandAugment, autocast "
                                   "bf16, non-fused AdamW). Prints images/s, their ratio, TFLOP/s and the fraction "
                                   "of a matrix-product peak measured here, and peak memory. See BENCHMARKS.md.")
    b.add_argument("--model", default="vit_tiny_patch2_32", help="model name (mimetic.models.MODELS)")
    b.add_argument("--dataset", default="synthetic", help="the run's dataset; synthetic: CIFAR-shaped, built in")
    b.add_argument("--data-root", default=None, help="the dataset's folder (imagenet: its index folder)")
    b.add_argument("--recipe", default="{}", help="further recipe keys as a JSON object (e.g. crop_padding, mixup)")
    b.add_argument("--batch-size", type=int, default=512, help="training batch size")
    b.add_argument("--randaugment", default="rand-m9-mstd0.5-inc1", help="RandAugment spec; '' disables it")
    b.add_argument("--images", type=int, default=50_000, help="synthetic dataset: training images")
    b.add_argument("--test-images", type=int, default=10_000, help="synthetic dataset: test images")
    b.add_argument("--device", default="auto", help="cuda, cuda:N or cpu; auto: cuda if visible")
    b.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    b.add_argument("--amp", type=_onoff, default=True, metavar="on|off", help="bf16 autocast (CUDA only)")
    b.add_argument("--fused", choices=("auto", "on", "off"), default="auto",
                   help="fused AdamW for the project's step; auto: as a run (fused on CUDA)")
    b.add_argument("--sdpa", type=_onoff, default=True, metavar="on|off",
                   help="attention through F.scaled_dot_product_attention (flash/efficient kernels) or explicit "
                        "products, in the project's step")
    b.add_argument("--compile", choices=("off", "default", "max-autotune", "reduce-overhead"), default="off",
                   help="torch.compile mode of the project's model (reduce-overhead: CUDA graphs); CUDA only")
    b.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation, workers)")
    b.add_argument("--steps", type=int, default=20, help="steps per timed window")
    b.add_argument("--repeats", type=int, default=5, help="timed windows; figures are their medians")
    b.add_argument("--reference", type=_onoff, default=True, metavar="on|off", help="also time the reference loop")
    b.add_argument("--workers", type=int, default=None,
                   help="the reference loop's DataLoader workers (default: this process's CPUs less one)")
    b.add_argument("--eval", type=_onoff, default=True, metavar="on|off", help="also time one evaluation pass")
    b.add_argument("--pack", type=int, default=0,
                   help="also time K processes training at once on the device, against one run (0: skip)")
    b.add_argument("--matmul-size", type=int, default=None,
                   help="side of the matrix product that measures the peak (default 8192 on CUDA, 1024 on the CPU)")
    b.add_argument("--json", default=None, help="write the results as JSON to this file ('-': stdout)")
    b.set_defaults(func=_bench)

    from mimetic.data import PREPARED_NAMES

    d = sub.add_parser("prepare", help="the data stage: download, verify and convert one dataset",
                       description="Put a dataset under resources/data/<name>/: uint8 train.npz/test.npz "
                                   "(ImageNet: an index of its folder). See docs/datasets.md.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("dataset", choices=[*PREPARED_NAMES, "imagenet"])
    d.add_argument("--root", help="folder with the upstream files or their extracted folder, only read (default "
                                  "resources/data/<name>, the only one downloaded into); for imagenet, its "
                                  "ImageFolder copy")
    d.add_argument("--train", default=None, help="output: the training split (imagenet: its index CSV); "
                                                 "default resources/data/<name>/train.npz (.csv)")
    d.add_argument("--test", default=None, help="output: the test split (imagenet: the validation index)")
    d.add_argument("--meta", default=None, help="output: meta.json, written last")
    d.add_argument("--classes", nargs="+", help="imagenet: the first N classes (one number) or a list of wnids")
    d.add_argument("--workers", type=int, default=8, help="imagenet: processes that check the images can be read")
    d.add_argument("--train-per-class", type=int, help="imagenet: keep the first N training images per class")
    d.add_argument("--val-per-class", type=int, help="imagenet: keep the first N validation images per class")
    d.set_defaults(func=_prepare)

    a = sub.add_parser("inits", help="list the attention initializations and their parameters")
    a.set_defaults(func=_inits)

    k = sub.add_parser("check-records", help="check that every run record is complete and readable",
                       description="Read every summary.json and metrics.csv as `aggregate` does; a missing or "
                                   "malformed record stops it with the file named and what is wrong.")
    _add_records(k)
    k.set_defaults(func=_check_records)

    g = sub.add_parser("aggregate", help="run records -> runs, epochs and summary tables",
                       description="Collect finished runs (summary.json + metrics.csv each) into tables; a missing "
                                   "or malformed record stops it with the file named, and nothing is written.")
    _add_records(g)
    g.add_argument("--baseline", default="default", help="the arm gains are measured against")
    g.add_argument("--runs-csv", required=True, help="output: one row per run")
    g.add_argument("--epochs-csv", required=True, help="output: one row per run and epoch")
    g.add_argument("--summary-csv", required=True, help="output: per experiment and arm, accuracy and paired gain")
    g.add_argument("--summary-md", required=True, help="output: the same as a Markdown table")
    g.set_defaults(func=_aggregate)

    for name, func, what in (("tables", _tables, "the result tables (CSV, Markdown, LaTeX, HTML) of "
                                                  "mimetic.tables.TABLES, and `grid` for an (alpha, beta) grid"),
                             ("figures", _figures, "the result figures (PNG and PDF) of mimetic.plots.FIGURES, "
                                                   "and `grid_heatmap` for an (alpha, beta) grid")):
        r = sub.add_parser(name, help=f"runs -> {what}", description=f"Write {what} to the --out files, from the "
                           "tables of `aggregate`, the claims and the published numbers (docs/analysis.md).")
        r.add_argument("--runs-csv", required=True, help="runs.csv from `aggregate`")
        r.add_argument("--epochs-csv", required=True, help="epochs.csv from `aggregate`")
        r.add_argument("--claims", required=True, help="claims.yaml (config/claims.yaml)")
        r.add_argument("--claims-schema", required=True, help="its schema (workflow/schemas/claims.schema.yaml)")
        r.add_argument("--references", help="references.yaml (config/references.yaml)")
        r.add_argument("--references-schema", help="its schema (workflow/schemas/references.schema.yaml)")
        r.add_argument("--baseline", default="default", help="the arm gains are measured against")
        r.add_argument("--out", nargs="+", required=True,
                       help="output files, one per name and format (e.g. results/tables/main.csv ...); every one "
                            "the command writes must be given")
        r.set_defaults(func=func)

    v = sub.add_parser("provenance", help="run records + config -> the report's provenance page (HTML)",
                       description="Code version (commit, dirty tree, source hash), package versions, devices, "
                                   "GPU-hours and wall time of the runs, and the resolved config.")
    v.add_argument("--summaries", nargs="+", required=True, help="summary.json of each run")
    v.add_argument("--config", required=True, help="the resolved workflow config, as JSON")
    v.add_argument("--out", required=True, help="output: the HTML page")
    v.set_defaults(func=_provenance)

    c = sub.add_parser("plot-curves", help="test accuracy vs epoch per arm (mean ± std over seeds)")
    c.add_argument("--epochs", required=True, help="epochs.csv from `aggregate`")
    c.add_argument("--out", nargs="+", required=True, help=OUT_HELP)
    c.set_defaults(func=_plot_curves)

    _add_structure_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from mimetic.provenance import check_workflow_source

    argv = sys.argv[1:] if argv is None else argv
    args = parser(argv[0] if argv and not argv[0].startswith("-") else None).parse_args(argv)
    try:
        check_workflow_source()
    except RuntimeError as e:
        raise SystemExit(f"mimetic {args.command}: {e}")
    args.argv = argv
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
