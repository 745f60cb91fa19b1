"""`python -m mimetic <command>`: the entry points the workflow's rules call."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from mimetic.init import ARMS, arm_params
from mimetic.train import TrainConfig


def _pair(text: str, form: str = "LABEL=PATH") -> tuple[str, str]:
    left, sep, right = text.partition("=")
    if not sep or not left or not right:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {form}")
    return left, right


def _key_value(text: str) -> tuple[str, Any]:
    key, value = _pair(text, "KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare string, e.g. dist=uniform


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, with its type, default and help."""
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata["help"]
        if f.name == "init_params":
            p.add_argument("--init-param", dest="init_params", type=_key_value, action="append", default=[],
                           metavar="KEY=VALUE", help=help_)
        elif f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_)
        elif f.metadata.get("required"):
            p.add_argument(flag, required=True, help=help_)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            p.add_argument(flag, type=kind, default=f.default, help=help_)


def _train(args: argparse.Namespace) -> None:
    from mimetic import gpu
    from mimetic.train import train

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    values["init_params"] = dict(values["init_params"])
    cfg = TrainConfig(**values)
    try:
        cfg.validate()
        if args.gpus is not None and args.gpus < 0 or args.processes is not None and args.processes < 1:
            raise ValueError(f"--gpus={args.gpus} must be >= 0 and --processes={args.processes} >= 1")
    except ValueError as e:
        raise SystemExit(f"mimetic train: bad option: {e}")
    if args.threads:
        torch.set_num_threads(args.threads)
    worker = "WORLD_SIZE" in os.environ  # under torchrun: the launcher below chose the devices
    gpus = (1 if torch.cuda.device_count() > 0 else 0) if args.gpus is None else args.gpus
    nproc = args.processes or max(gpus, 1)
    # Held until this process exits; the kernel frees it even on SIGKILL.
    lease = gpu.claim(gpus, slots=args.runs_per_gpu) if gpus and not worker else None
    if lease:
        print(f"GPU(s) {','.join(lease.devices)} (CUDA_VISIBLE_DEVICES)", flush=True)
    if worker or nproc == 1:
        train(cfg, args.out, checkpoint=args.checkpoint, device="cuda" if gpus else "cpu", log=_print)
    else:
        _torchrun(nproc, [*args.argv, f"--gpus={gpus}"])


def _print(line: str) -> None:
    print(line, flush=True)


def _torchrun(nproc: int, argv: list[str]) -> None:
    """Re-run `python -m mimetic <argv>` under torchrun with `nproc` processes (one per GPU)."""
    # --standalone: a local rendezvous on a free port, so concurrent runs never collide.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "mimetic", *argv]
    # torchrun must not outlive us: if this launcher is killed, its workers get SIGTERM.
    status = subprocess.run(cmd, preexec_fn=_die_with_parent).returncode
    if status:
        raise SystemExit(f"mimetic train: torchrun exited with status {status}")


def _die_with_parent() -> None:
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _prepare(args: argparse.Namespace) -> None:
    from mimetic.data import DatasetError, prepare
    from mimetic.data.imagenet import index

    try:
        if args.dataset == "imagenet":
            meta = index(args.root, args.out or "resources/data/imagenet", image_size=args.image_size,
                         train_per_class=args.train_per_class, val_per_class=args.val_per_class)
        else:
            meta = prepare(args.dataset, args.root, args.out)
    except DatasetError as e:
        raise SystemExit(f"mimetic prepare: {e}")
    print(f"{args.dataset}: {meta['train']} training and {meta.get('test', meta.get('val'))} test images, "
          f"{len(meta['classes'])} classes", flush=True)


def _arms(args: argparse.Namespace) -> None:
    for name in ARMS:
        params = ", ".join(f"{k}={v}" for k, v in arm_params(name).items()) or "no parameters"
        print(f"{name:12s} {params}\n{'':12s} {(ARMS[name].__doc__ or '').strip()}")


def _aggregate(args: argparse.Namespace) -> None:
    from mimetic import aggregate, io

    runs, epochs = aggregate.load_runs(args.runs)
    summary = aggregate.summarize(runs, epochs, baseline=args.baseline)
    out = Path(args.out_dir)
    io.write_csv(out / "runs.csv", runs)
    io.write_csv(out / "epochs.csv", epochs)
    io.write_csv(out / "summary.csv", summary)
    io.write_text(out / "summary.md", aggregate.markdown(summary, args.baseline))


def _plot_curves(args: argparse.Namespace) -> None:
    import pandas as pd

    from mimetic import plots

    plots.learning_curves(pd.read_csv(args.epochs), args.out)


def _write_structure(products: dict[str, torch.Tensor], out_dir: str, metadata: dict[str, str]) -> None:
    from mimetic import io
    from mimetic.structure import structure_metrics

    out = Path(out_dir)
    io.write_safetensors(out / "products.safetensors", products, metadata=metadata)
    io.write_csv(out / "structure.csv", structure_metrics(products))


def _extract(args: argparse.Namespace) -> None:
    from mimetic.pretrained import PretrainedUnavailable, pretrained_weights
    from mimetic.structure import products_from_weights

    try:
        weights = pretrained_weights(args.model, args.file, args.num_heads, label=args.label)
    except (PretrainedUnavailable, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"mimetic extract: {e}")
    meta = {"model": args.model, "file": str(args.file or ""), "num_heads": str(weights[0].num_heads)}
    _write_structure(products_from_weights(weights), args.out_dir, meta)


def _extract_run(args: argparse.Namespace) -> None:
    from mimetic.pretrained import run_model
    from mimetic.structure import attention_products

    try:
        model = run_model(args.run, args.stage)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"mimetic extract-run: {e}")
    _write_structure(attention_products(model), args.out_dir, {"run": str(args.run), "stage": args.stage})


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


def _add_structure_commands(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    e = sub.add_parser("extract", formatter_class=fmt,
                       help="pretrained model -> attention products and structure metrics",
                       description="Load a pretrained timm model (hub name with tag, or --file) or GPT-2 "
                                   "(gpt2, gpt2-medium, ...) and write products.safetensors (qk: L x H x d x d, "
                                   "vo: L x d x d) and structure.csv into --out-dir.")
    e.add_argument("--model", required=True, help="timm model name (e.g. vit_tiny_patch16_224.augreg_in21k_ft_in1k) "
                                                  "or gpt2, gpt2-medium, gpt2-large, gpt2-xl")
    e.add_argument("--file", help="local checkpoint (safetensors or PyTorch state dict) instead of the hub")
    e.add_argument("--num-heads", type=int, help="heads per layer (GPT-2 layout only; known sizes need none)")
    e.add_argument("--label", default="<label>", help="the model's key in the config's `pretrained` section, "
                                                      "named in error messages")
    e.add_argument("--out-dir", required=True, help="folder for products.safetensors and structure.csv")
    e.set_defaults(func=_extract)

    r = sub.add_parser("extract-run", formatter_class=fmt,
                       help="training run -> attention products of its initial or final model",
                       description="Rebuild a finished run's initial model (same seed and arm) or load its final "
                                   "weights, and write products.safetensors and structure.csv into --out-dir.")
    r.add_argument("--run", required=True, help="run folder with summary.json and final.safetensors")
    r.add_argument("--stage", choices=("init", "final"), required=True, help="initial or final weights")
    r.add_argument("--out-dir", required=True, help="folder for products.safetensors and structure.csv")
    r.set_defaults(func=_extract_run)

    h = sub.add_parser("plot-heatmaps", formatter_class=fmt,
                       help="the paper's Figure 1: Q/K per head and V/Proj per layer as heatmaps",
                       description="Grid of heatmaps, layers across, heads down, plus a row of W_v W_proj.")
    h.add_argument("--products", required=True, help="products.safetensors from `extract` or `extract-run`")
    h.add_argument("--out", required=True, help="PNG path; a PDF is written beside it")
    h.add_argument("--title", default="", help="figure title, e.g. the model's name")
    h.add_argument("--crop", type=int, default=64, help="show the top-left CROP x CROP block; 0 shows all")
    h.set_defaults(func=_plot_heatmaps)

    f = sub.add_parser("plot-profile", formatter_class=fmt,
                       help="diagonal mean and identity cosine vs depth, one line per model",
                       description="Q/K and V/Proj panels of the structure metrics against layer depth.")
    f.add_argument("--metrics", nargs="+", type=_pair, required=True, metavar="LABEL=CSV",
                   help="structure.csv of each model, with the label its line gets")
    f.add_argument("--out", required=True, help="PNG path; a PDF is written beside it")
    f.set_defaults(func=_plot_profile)

    c = sub.add_parser("plot-compare", formatter_class=fmt,
                       help="side by side: pretrained vs initialized vs trained, a few layers each",
                       description="One column per source: W_q W_k^T (head 1) and W_v W_proj at each "
                                   "source's first, middle and last layer.")
    c.add_argument("--products", nargs="+", type=_pair, required=True, metavar="LABEL=SAFETENSORS",
                   help="products.safetensors of each source, in column order")
    c.add_argument("--out", required=True, help="PNG path; a PDF is written beside it")
    c.add_argument("--title", default="", help="figure title")
    c.add_argument("--crop", type=int, default=32, help="show the top-left CROP x CROP block; 0 shows all")
    c.set_defaults(func=_plot_compare)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mimetic", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train one run (dataset, model, arm, seed) into a folder",
                       description="Train one run into --out: metrics.csv, final.safetensors, summary.json.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_config_options(t)
    t.add_argument("--out", required=True, help="the run's folder")
    t.add_argument("--checkpoint", help="checkpoint file: resumed from if present, deleted when the run is done")
    t.add_argument("--gpus", type=int, default=None,
                   help="GPUs this run takes (0: the CPU); default: 1 if a GPU is visible, else 0. Each is "
                        "locked for the run (not under SLURM, whose CUDA_VISIBLE_DEVICES is used as given)")
    t.add_argument("--runs-per-gpu", type=int, default=1, help="runs that may share one GPU")
    t.add_argument("--processes", type=int, default=None,
                   help="data-parallel processes (torchrun); default: one per GPU. --gpus 0 --processes 2 runs DDP "
                        "on the CPU (gloo). batch_size is the global batch, split evenly over processes")
    t.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    t.set_defaults(func=_train)

    from mimetic.data import PREPARED

    d = sub.add_parser("prepare", help="the data stage: download, verify and convert one dataset",
                       description="Put a dataset under resources/data/<name>/: uint8 train.npz/test.npz "
                                   "(ImageNet: an index of its folder). See docs/datasets.md.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("dataset", choices=[*PREPARED, "imagenet"])
    d.add_argument("--root", help="folder with the upstream files (downloaded into it when absent; "
                                  "default resources/data/<name>); for imagenet, its ImageFolder copy")
    d.add_argument("--out", help="output folder (default resources/data/<name>)")
    d.add_argument("--image-size", type=int, default=224, help="imagenet: the loaders' crop size")
    d.add_argument("--train-per-class", type=int, help="imagenet: keep the first N training images per class")
    d.add_argument("--val-per-class", type=int, help="imagenet: keep the first N validation images per class")
    d.set_defaults(func=_prepare)

    a = sub.add_parser("arms", help="list the attention initializations and their parameters")
    a.set_defaults(func=_arms)

    g = sub.add_parser("aggregate", help="runs -> runs.csv, epochs.csv, summary.csv, summary.md",
                       description="Collect finished runs (<experiment>/<arm>/seed<k>/) into tables.")
    g.add_argument("--runs", nargs="+", required=True, help="run folders")
    g.add_argument("--baseline", default="default", help="the arm gains are measured against")
    g.add_argument("--out-dir", required=True, help="folder for the tables")
    g.set_defaults(func=_aggregate)

    c = sub.add_parser("plot-curves", help="test accuracy vs epoch per arm (mean ± std over seeds)")
    c.add_argument("--epochs", required=True, help="epochs.csv from `aggregate`")
    c.add_argument("--out", required=True, help="PNG path; a PDF is written beside it")
    c.set_defaults(func=_plot_curves)

    _add_structure_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.argv = argv
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
