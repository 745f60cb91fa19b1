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


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
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
    if "WORLD_SIZE" in os.environ:  # a torchrun worker: the launcher below chose the devices
        train(cfg, args.out, checkpoint=args.checkpoint, device="cuda" if args.gpus else "cpu", log=_print)
        return
    gpus = (1 if torch.cuda.device_count() > 0 else 0) if args.gpus is None else args.gpus
    nproc = args.processes or max(gpus, 1)
    # Held until this process exits; the kernel frees it even on SIGKILL.
    lease = gpu.claim(gpus, slots=args.runs_per_gpu) if gpus else None
    if lease:
        print(f"GPU(s) {','.join(lease.devices)} (CUDA_VISIBLE_DEVICES)", flush=True)
    if nproc == 1:
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
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.argv = argv
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
