"""`mimetic bench`: images/s of the project's training step, side by side with the usual loop.

The project's step is what a run executes, from the public pieces of `mimetic.train.loop` and
`mimetic.train.inputs`: the run's Inputs (device-side crop, flip, RandAugment, normalisation,
mixup/cutmix), the same model (`build_model`), optimizer (`build_optimizer`), scheduler
(`build_scheduler`, stepped per update) and `train_step` (autocast, clipping, update).

The reference (mimetic.bench.reference) is the loop a timm user writes: DataLoader workers with
PIL transforms and timm's RandAugment, torch.autocast bf16, the same model in eager mode, timm's
AdamW not fused. It also records how often Pillow 13 made timm's Posterize fail.

Both loops are timed after warm-up (compilation, worker start) over `repeats` windows of
`steps` updates; the figures are the medians. FLOPs are counted (mimetic.bench.flops), and the
fraction of peak divides the achieved TFLOP/s by a large matrix product's, measured in the same
process (bf16 on CUDA, fp32 on the CPU).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mimetic.bench._timing import environment, matmul_peak, resolve_device
from mimetic.bench.flops import training_flops
from mimetic.bench.options import COMPILE_MODES, Options
from mimetic.bench.project import _compiles, input_work, load_inputs, pack, project
from mimetic.train.models import build_model, image_size

SCHEMA = 1

# Every field of the JSON (`mimetic bench --json`), section by section; a skipped measurement's
# section is {"skipped": "<why>"}. tests/test_bench.py checks the JSON against this.
FIELDS: dict[str, tuple[str, ...]] = {
    "": ("schema", "command", "environment", "config", "switches", "flops_per_image", "input_work", "matmul",
         "project", "model_step", "reference", "ratio", "evaluation", "pack", "notes"),
    "environment": ("device", "device_type", "torch", "timm", "torchvision", "pillow", "python", "cuda", "threads",
                    "cpus"),
    "config": ("model", "dataset", "batch_size", "train_images", "test_images", "randaugment", "crop_padding",
               "warmup", "steps", "repeats"),
    "switches": ("amp", "fused", "sdpa", "compile", "compile_applied"),
    "input_work": ("copies", "kernels", "counted_on"),
    "matmul": ("tflops", "dtype", "size"),
    "project": ("images_per_s", "repeats", "tflops", "peak_fraction", "peak_memory_gib", "memory"),
    "model_step": ("images_per_s", "repeats", "tflops", "peak_fraction", "input_share"),
    "reference": ("images_per_s", "repeats", "tflops", "peak_fraction", "peak_memory_gib", "memory", "workers",
                  "optimizer", "compile", "images_augmented", "posterize_zero_bits", "posterize_errors_caught"),
    "evaluation": ("seconds", "images", "images_per_s", "epoch_train_seconds", "fraction_of_epoch"),
    "pack": ("runs", "single_images_per_s", "aggregate_images_per_s", "speedup", "per_run"),
}


def run(opts: Options, command: str = "", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every measurement `opts` asks for, as the JSON document (FIELDS)."""
    if opts.compile not in COMPILE_MODES:
        raise ValueError(f"compile={opts.compile!r}: choose one of {COMPILE_MODES}")
    if opts.fused not in ("auto", "on", "off"):
        raise ValueError(f"fused={opts.fused!r}: choose auto, on or off")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = resolve_device(opts.device)
    cfg = opts.config()
    notes: list[str] = []
    compile_applied = _compiles(opts.compile, device)
    if opts.compile != "off" and not compile_applied:
        from mimetic.train.launch import compiler_missing

        why = "the trainer compiles on CUDA only" if device.type != "cuda" else compiler_missing()
        notes.append(f"compile={opts.compile} skipped: {why}; the model runs eager")
    if opts.amp and device.type != "cuda":
        notes.append("amp: bf16 autocast is CUDA-only in the trainer; the CPU trains in fp32 (both loops)")
    env = environment(device)
    log(f"device {env['device']} ({device.type}), torch {env['torch']}, timm {env['timm']}, threads {env['threads']}; "
        f"{cfg.model} on {cfg.dataset}, batch {cfg.batch_size}, randaugment {cfg.randaugment or 'off'}")
    inputs, data = load_inputs(cfg, opts, device)
    side = image_size(cfg.model)
    flops = training_flops(build_model(cfg, num_classes=inputs.num_classes, in_chans=inputs.channels),
                           (inputs.channels, side, side))
    mm = matmul_peak(device, opts.matmul_size)
    log(f"{flops / 1e9:.2f} GFLOP per training image; matrix-product peak {mm['tflops']:.2f} TFLOP/s ({mm['dtype']})")
    doc: dict[str, Any] = {
        "schema": SCHEMA, "command": command, "environment": env,
        "config": {"model": cfg.model, "dataset": cfg.dataset, "batch_size": inputs.batch_size,
                   "train_images": inputs.steps * inputs.batch_size, "test_images": opts.test_images
                   if cfg.dataset == "synthetic" else None, "randaugment": cfg.randaugment,
                   "crop_padding": cfg.crop_padding, "warmup": opts.warmup, "steps": opts.steps,
                   "repeats": opts.repeats},
        "switches": {"amp": opts.amp and device.type == "cuda", "fused": _fused_label(opts.fused, device),
                     "sdpa": opts.sdpa, "compile": opts.compile, "compile_applied": compile_applied},
        "flops_per_image": flops, "input_work": input_work(cfg, data), "matmul": mm,
    }
    work = doc["input_work"]
    if "copies" in work:
        log(f"input step: {work['copies']} host-to-device copies, {work['kernels']} device kernels (counted on meta)")
    doc.update(project(cfg, opts, device, inputs, flops, mm["tflops"]))
    p = doc["project"]
    log(f"project   {p['images_per_s']:10.0f} images/s  {p['tflops']:.3f} TFLOP/s ({100 * p['peak_fraction']:.1f}% "
        f"of peak)  peak memory {p['peak_memory_gib']:.2f} GiB")
    s = doc["model_step"]
    log(f"model step alone (one device-resident batch) {s['images_per_s']:10.0f} images/s: inputs take "
        f"{100 * s['input_share']:.1f}% of the full step")
    if "seconds" in doc["evaluation"]:
        e = doc["evaluation"]
        log(f"evaluation: {e['seconds']:.2f} s for {e['images']} test images, {100 * e['fraction_of_epoch']:.1f}% of "
            f"an epoch of {inputs.steps * inputs.batch_size} training images plus one evaluation")
    del inputs
    if opts.reference and data is not None:
        from mimetic.bench.reference import reference

        doc["reference"] = reference(cfg, opts, device, data, flops, mm["tflops"])
        r = doc["reference"]
        doc["ratio"] = p["images_per_s"] / r["images_per_s"]
        log(f"reference {r['images_per_s']:10.0f} images/s  {r['tflops']:.3f} TFLOP/s ({100 * r['peak_fraction']:.1f}% "
            f"of peak)  peak memory {r['peak_memory_gib']:.2f} GiB  ({r['workers']} workers; posterize at 0 bits "
            f"{r['posterize_zero_bits']} times in {r['images_augmented']} images, {r['posterize_errors_caught']} "
            f"ValueErrors caught)")
        log(f"project / reference: {doc['ratio']:.2f}x")
    else:
        why = "--reference off" if not opts.reference else "streamed dataset: the reference loop is in-memory only"
        doc["reference"], doc["ratio"] = {"skipped": why}, None
    if opts.pack > 1:
        doc["pack"] = pack(opts, opts.pack, p["images_per_s"])
        k = doc["pack"]
        log(f"packing: {k['runs']} processes on one {device.type} device: {k['aggregate_images_per_s']:.0f} images/s "
            f"together, {k['speedup']:.2f}x one run")
    else:
        doc["pack"] = {"skipped": "--pack < 2"}
    doc["notes"] = notes
    for note in notes:
        log(f"note: {note}")
    return {k: doc[k] for k in FIELDS[""]}


def _fused_label(fused: str, device: torch.device) -> bool:
    return device.type == "cuda" if fused == "auto" else fused == "on"


# --- benchmarks/gpu_check.sh: its parts into one document --------------------------------------

# The targets (BENCHMARKS.md): judged in benchmarks/gpu_check.sh's JSON on a GPU, never in a test.
# name: (what, goal, how the value meets it)
TARGETS: dict[str, tuple[str, Any, str]] = {
    "patch2_images_per_s": ("project images/s, ViT-Tiny patch 2 at 32 px (best compile setting)", 25_000, ">="),
    "patch2_ratio_6_workers": ("best project images/s / the reference loop with 6 DataLoader workers, patch 2",
                               1.5, ">="),
    "patch2_full_vs_model_step": ("full step / model step alone, patch 2 (best compile setting)", 0.95, ">="),
    "imagenet_full_vs_model_step": ("full step / model step alone, ViT-Tiny/16 at 224, JPEGs decoded on the GPU",
                                    0.95, ">="),
    "pack_speedup": ("aggregate images/s of 4 packed runs / one run, patch 4", 1.5, ">="),
    "syncs_in_training_loop": ("host synchronizations in the training loop, 3 CIFAR + 3 ImageNet steps", 0, "=="),
    "decode_order_safe": ("the project's decode paths keep a freed buffer's queued reader right", True, "=="),
}
# Reported beside them, no target: the reference with all cores is expected model-bound.
REPORTED = ("patch2_ratio_all_cores", "gpu_idle_fraction_cifar", "gpu_idle_fraction_imagenet")


def _meets(value: Any, goal: Any, how: str) -> bool:
    return value >= goal if how == ">=" else value == goal


def collect(out: Path, mode: str) -> dict[str, Any]:
    """gpu_check.json from the script's folder: each step's status (steps.tsv), the preflight,
    each bench's JSON (parts/<step>.json) and probe's (parts/probe_<step>.json), the training
    run's summary and metrics, and the targets."""
    import csv

    steps = [dict(zip(("name", "status", "seconds", "command"), row))
             for row in csv.reader((out / "steps.tsv").open(), delimiter="\t")] if (out / "steps.tsv").exists() else []
    parts = {p.stem: json.loads(p.read_text()) for p in sorted((out / "parts").glob("*.json"))}
    preflight = parts.pop("preflight", {})
    probes = {k.removeprefix("probe_"): parts.pop(k) for k in list(parts) if k.startswith("probe_")}
    benches = parts
    train: dict[str, Any] = {"skipped": "no finished training run"}
    if (out / "train" / "summary.json").is_file():
        summary = json.loads((out / "train" / "summary.json").read_text())
        with (out / "train" / "metrics.csv").open() as f:
            rows = list(csv.DictReader(f))
        train = {k: summary[k] for k in ("device", "epochs", "wall_time", "final_test_acc", "parameters")}
        train.update(config={k: summary["config"][k] for k in ("dataset", "model", "batch_size", "amp", "compile")},
                     images_per_s=[float(r["images_per_s"]) for r in rows])
    p2 = [benches[k] for k in ("patch2_compile_off", "patch2_compile_on") if k in benches]
    best = max(p2, key=lambda b: b["project"]["images_per_s"], default=None)
    ref6, refall = (benches.get(k, {}).get("reference", {}) for k in ("patch2_compile_off",
                                                                     "patch2_reference_all_cores"))
    packs = [b["pack"] for b in benches.values() if "speedup" in b["pack"]]
    imagenet = benches.get("imagenet_step")
    syncs = probes.get("syncs", {})
    loop_syncs = [v["training_loop"] for v in syncs.values() if isinstance(v, dict) and "training_loop" in v]
    order = probes.get("decode_order", {})
    idle = probes.get("idle", {})

    def ratio(ref: dict[str, Any]) -> float | None:
        return best["project"]["images_per_s"] / ref["images_per_s"] if best and "images_per_s" in ref else None

    values = {
        "patch2_images_per_s": best["project"]["images_per_s"] if best else None,
        "patch2_ratio_6_workers": ratio(ref6),
        "patch2_full_vs_model_step": 1 - best["model_step"]["input_share"] if best else None,
        "imagenet_full_vs_model_step": 1 - imagenet["model_step"]["input_share"] if imagenet else None,
        "pack_speedup": max((k["speedup"] for k in packs), default=None),
        "syncs_in_training_loop": sum(loop_syncs) if loop_syncs else None,
        "decode_order_safe": (order["project_path"]["sum_correct"] and order["same_stream_after_sync"]["sum_correct"])
        if "project_path" in order else None,
        "patch2_ratio_all_cores": ratio(refall),
        "gpu_idle_fraction_cifar": idle.get("cifar", {}).get("idle_fraction_of_wall"),
        "gpu_idle_fraction_imagenet": idle.get("imagenet", {}).get("idle_fraction_of_wall"),
    }
    targets = {name: {"what": what, "target": f"{how} {goal}", "value": values[name],
                      "met": None if values[name] is None or mode != "gpu" else _meets(values[name], goal, how)}
               for name, (what, goal, how) in TARGETS.items()}
    return {"mode": mode, "preflight": preflight, "steps": steps,
            "failed": [s["name"] for s in steps if s["status"].startswith("failed")],
            "bench": benches, "probes": probes, "train": train, "targets": targets,
            "reported": {name: values[name] for name in REPORTED},
            "note": "targets are judged on a GPU only (met: null on the CPU)"}
