"""`mimetic bench`: images/s of the project's training step, side by side with the usual loop.

The project's step is what a run executes, from the public pieces of `mimetic.train` and
`mimetic.inputs`: the run's Inputs (device-side crop, flip, RandAugment, normalisation,
mixup/cutmix), the same model (`build_model`), optimizer (`build_optimizer`), scheduler
(`build_scheduler`, stepped per update) and `train_step` (autocast, clipping, update).

The reference (mimetic.reference_loop) is the loop a timm user writes: DataLoader workers with
PIL transforms and timm's RandAugment, torch.autocast bf16, the same model in eager mode, timm's
AdamW not fused. It also records how often Pillow 13 made timm's Posterize fail.

Both loops are timed after warm-up (compilation, worker start) over `repeats` windows of
`steps` updates; the figures are the medians. FLOPs are counted (mimetic.flops), and the
fraction of peak divides the achieved TFLOP/s by a large matrix product's, measured in the same
process (bf16 on CUDA, fp32 on the CPU).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mimetic.data.core import STREAMED
from mimetic.flops import set_fused_attention, training_flops
from mimetic.recipe import TrainConfig, build_model

COMPILE_MODES = ("off", "default", "max-autotune", "reduce-overhead")
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


@dataclass
class Options:
    """What `mimetic bench` measures; the CLI's flags, one to one."""

    model: str = "vit_tiny_patch2_32"
    dataset: str = "synthetic"
    data_root: str | None = None
    recipe: dict = dataclasses.field(default_factory=dict)  # further recipe keys (TrainConfig)
    batch_size: int = 512
    randaugment: str = "rand-m9-mstd0.5-inc1"
    images: int = 50_000  # synthetic dataset: training images (CIFAR's count by default)
    test_images: int = 10_000  # synthetic dataset: test images
    device: str = "auto"
    threads: int = 0
    amp: bool = True
    fused: str = "auto"  # auto: as a run (fused on CUDA); on; off
    sdpa: bool = True
    compile: str = "off"
    warmup: int = 10
    steps: int = 20
    repeats: int = 5
    reference: bool = True
    workers: int | None = None
    eval: bool = True
    pack: int = 0
    matmul_size: int | None = None
    # packing workers only: wait here until `barrier_count` workers are warm, then time
    barrier: str | None = None
    barrier_count: int = 0

    def config(self) -> TrainConfig:
        keys = {**self.recipe, "dataset": self.dataset, "model": self.model, "batch_size": self.batch_size,
                "randaugment": self.randaugment, "data_root": self.data_root, "amp": self.amp,
                "compile": self.compile != "off"}
        return TrainConfig(**keys).validate()


# --- device helpers ----------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[float, str]:
    """(GiB, what it is): allocated tensors on CUDA; on the CPU, the process's resident-set high-water
    mark so far (everything the process ever held, data and Python included)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "torch.cuda.max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process max RSS so far (ru_maxrss)"


def environment(device: torch.device) -> dict[str, Any]:
    import PIL
    import timm
    import torchvision

    from mimetic.inputs import available_cpus
    from mimetic.provenance import device_name

    return {"device": device_name(device), "device_type": device.type, "torch": torch.__version__,
            "timm": timm.__version__, "torchvision": torchvision.__version__, "pillow": PIL.__version__,
            "python": platform.python_version(), "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
            "cpus": available_cpus()}


def matmul_peak(device: torch.device, size: int | None = None, repeats: int = 5) -> dict[str, Any]:
    """TFLOP/s of a square matrix product, the practical ceiling of the model's matrix work:
    bf16 on CUDA (what autocast runs), fp32 on the CPU (where training runs in fp32)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = size or (8192 if device.type == "cuda" else 1024)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    inner = 20 if device.type == "cuda" else 2
    for _ in range(3):
        a @ b
    rates = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            a @ b
        sync(device)
        rates.append(2 * n**3 * inner / (time.perf_counter() - t0) / 1e12)
    return {"tflops": statistics.median(rates), "dtype": str(dtype).removeprefix("torch."), "size": n}


def timed(step: Callable[[], int], device: torch.device, opts: Options, ready: Callable[[], None] = lambda: None
           ) -> list[float]:
    """images/s of each of opts.repeats windows of opts.steps calls of `step` (which returns its
    images), after opts.warmup calls; the device is drained at each window's ends."""
    for _ in range(opts.warmup):
        step()
    sync(device)
    ready()
    rates = []
    for _ in range(opts.repeats):
        t0, images = time.perf_counter(), 0
        for _ in range(opts.steps):
            images += step()
        sync(device)
        rates.append(images / (time.perf_counter() - t0))
    return rates


def summarize(rates: list[float], flops: int, peak: float) -> dict[str, Any]:
    rate = statistics.median(rates)
    tflops = rate * flops / 1e12
    return {"images_per_s": rate, "repeats": rates, "tflops": tflops, "peak_fraction": tflops / peak}


# --- the project's step ------------------------------------------------------------------------

def _optimizer(cfg: TrainConfig, net: nn.Module, device: torch.device, fused: str) -> torch.optim.Optimizer:
    from mimetic.train import build_optimizer

    # `auto` is exactly what a run gets (fused on CUDA)
    return build_optimizer(cfg, net, device, fused=None if fused == "auto" else fused == "on")


def _compile(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    if not _compiles(mode, device):
        return model
    return torch.compile(model, **({} if mode == "default" else {"mode": mode}))


def _compiles(mode: str, device: torch.device) -> bool:
    from mimetic.launch import compiler_missing

    return mode != "off" and device.type == "cuda" and compiler_missing() is None


def input_work(cfg: TrainConfig, data: Any) -> dict[str, Any]:
    """Copies from the host and device kernels of one in-memory input step (the second: the
    first makes the per-device constants), with the device faked as `meta` (mimetic.flops), on
    images shaped as `data`'s (None: streamed, not counted)."""
    from mimetic.data import ImageData
    from mimetic.flops import DeviceWork
    from mimetic.inputs import MemoryInputs

    if data is None:
        return {"skipped": "streamed dataset: its decoding cannot run on the meta device"}
    n, gen = 2 * cfg.batch_size, torch.Generator().manual_seed(0)
    x = torch.randint(256, (n, *data.train_x.shape[1:]), dtype=torch.uint8, generator=gen)
    fake = ImageData(data.name, x, torch.randint(data.num_classes, (n,), generator=gen), x[:8],
                     torch.zeros(8, dtype=torch.long), data.num_classes, data.flip)
    steps = MemoryInputs(cfg, torch.device("meta"), data=fake, prefetch=0).epoch(0)
    next(steps)
    with DeviceWork() as work:
        next(steps)
    return {"copies": work.copies, "kernels": work.kernels, "counted_on": "meta"}


def _forever(inputs: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    epoch = 0
    while True:
        yield from inputs.epoch(epoch)
        epoch += 1


def load_inputs(cfg: TrainConfig, opts: Options, device: torch.device) -> tuple[Any, Any]:
    """(the run's Inputs, the in-memory ImageData behind them, or None when streamed)."""
    from mimetic.data import load_dataset
    from mimetic.data.builtin import load_synthetic
    from mimetic.inputs import MemoryInputs, make_inputs

    if cfg.dataset in STREAMED:
        return make_inputs(cfg, device), None
    data = (load_synthetic(n_train=opts.images, n_test=opts.test_images) if cfg.dataset == "synthetic"
            else load_dataset(cfg.dataset, cfg.data_root))
    return MemoryInputs(cfg, device, data=data), data


def project(cfg: TrainConfig, opts: Options, device: torch.device, inputs: Any, flops: int, peak: float,
            ready: Callable[[], None] | None = None) -> dict[str, Any]:
    """The project's full step (inputs + train_step + scheduler), then train_step alone on one
    device-resident batch, then one evaluation pass. A packing worker (`ready`: its barrier,
    called when warm) times the full step only."""
    from mimetic.train import build_scheduler, evaluate, train_step

    net = build_model(cfg, num_classes=inputs.num_classes, in_chans=inputs.channels).to(device)
    set_fused_attention(net, opts.sdpa)
    model = _compile(net, opts.compile, device)
    optimizer = _optimizer(cfg, net, device, opts.fused)
    scheduler = build_scheduler(cfg, optimizer, inputs.steps)
    graphs = opts.compile == "reduce-overhead" and device.type == "cuda"
    batches, updates = _forever(inputs), 0

    def update(x: torch.Tensor, y: torch.Tensor) -> int:
        nonlocal updates
        if graphs:  # one training iteration per CUDA-graph step (torch.compiler docs)
            torch.compiler.cudagraph_mark_step_begin()
        train_step(model, optimizer, x, y, cfg)
        updates += 1
        scheduler.step_update(num_updates=updates)
        return len(x)

    model.train()
    reset_memory(device)
    full = summarize(timed(lambda: update(*next(batches)), device, opts, ready or (lambda: None)), flops, peak)
    memory, kind = peak_memory(device)
    full.update(peak_memory_gib=memory, memory=kind)
    result: dict[str, Any] = {"project": full}
    if ready is not None:
        return result
    x, y = next(batches)
    alone = summarize(timed(lambda: update(x, y), device, opts), flops, peak)
    alone["input_share"] = 1 - full["images_per_s"] / alone["images_per_s"]
    result["model_step"] = alone
    if opts.eval:
        test_images = 0

        def counted() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            nonlocal test_images
            for xb, yb in inputs.test():
                test_images += len(yb)
                yield xb, yb

        evaluate(net, counted(), cfg.amp)  # warm-up (kernel choice, allocator)
        test_images = 0
        sync(device)
        t0 = time.perf_counter()
        evaluate(net, counted(), cfg.amp)
        seconds = time.perf_counter() - t0
        epoch_train = inputs.steps * inputs.batch_size / full["images_per_s"]
        result["evaluation"] = {"seconds": seconds, "images": test_images, "images_per_s": test_images / seconds,
                                "epoch_train_seconds": epoch_train,
                                "fraction_of_epoch": seconds / (seconds + epoch_train)}
    else:
        result["evaluation"] = {"skipped": "--eval off"}
    return result


# --- packing -----------------------------------------------------------------------------------

def pack(opts: Options, runs: int, single: float) -> dict[str, Any]:
    """Aggregate images/s of `runs` processes each training the project's step on this device at
    once. Each worker warms up, waits for the others, then times; the aggregate is all timed
    images over the span from the first window's start to the last one's end (an overlap that is
    not perfect lowers it, never raises it)."""
    with tempfile.TemporaryDirectory(prefix="mimetic-pack-") as tmp:
        from mimetic.inputs import available_cpus

        # The workers share this process's cores: torch's default would give each all of them.
        threads = opts.threads or max(1, available_cpus() // runs)
        worker = dataclasses.replace(opts, reference=False, eval=False, pack=0, barrier=tmp, barrier_count=runs,
                                     threads=threads)
        argv = [sys.executable, "-m", "mimetic.bench", "worker", json.dumps(dataclasses.asdict(worker))]
        procs = [subprocess.Popen([*argv, str(Path(tmp) / f"{i}.json")], preexec_fn=_die_with_parent)
                 for i in range(runs)]
        # One failed worker would leave the others waiting at the barrier: stop them all.
        while any(p.poll() is None for p in procs):
            if any(p.poll() for p in procs):
                for p in procs:
                    if p.poll() is None:
                        p.terminate()
            time.sleep(0.1)
        codes = [p.wait() for p in procs]
        if any(codes):
            raise RuntimeError(f"packing workers exited with {codes} (their errors are above)")
        results = [json.loads((Path(tmp) / f"{i}.json").read_text()) for i in range(runs)]
    start, end = min(r["window"][0] for r in results), max(r["window"][1] for r in results)
    aggregate = sum(r["images"] for r in results) / (end - start)
    return {"runs": runs, "single_images_per_s": single, "aggregate_images_per_s": aggregate,
            "speedup": aggregate / single, "per_run": [r["images_per_s"] for r in results]}


def _die_with_parent() -> None:
    # A packing worker must not outlive the bench (killed by a timeout, say) and keep the GPU.
    if sys.platform == "linux":
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _pack_worker(opts: Options, out: Path) -> None:
    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = resolve_device(opts.device)
    cfg = opts.config()
    inputs, _ = load_inputs(cfg, opts, device)
    me = Path(opts.barrier) / f"ready-{os.getpid()}"

    def ready() -> None:
        me.touch()
        deadline = time.monotonic() + 600
        while len(list(Path(opts.barrier).glob("ready-*"))) < opts.barrier_count:
            if time.monotonic() > deadline:
                raise TimeoutError("packing workers did not all warm up within 10 minutes")
            time.sleep(0.01)
        window.append(time.time())

    window: list[float] = []
    result = project(cfg, opts, device, inputs, 1, 1.0, ready)["project"]
    window.append(time.time())
    images = opts.repeats * opts.steps * inputs.batch_size
    out.write_text(json.dumps({"images_per_s": result["images_per_s"], "images": images, "window": window}))


# --- the whole benchmark -----------------------------------------------------------------------

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
        from mimetic.launch import compiler_missing

        why = "the trainer compiles on CUDA only" if device.type != "cuda" else compiler_missing()
        notes.append(f"compile={opts.compile} skipped: {why}; the model runs eager")
    if opts.amp and device.type != "cuda":
        notes.append("amp: bf16 autocast is CUDA-only in the trainer; the CPU trains in fp32 (both loops)")
    env = environment(device)
    log(f"device {env['device']} ({device.type}), torch {env['torch']}, timm {env['timm']}, threads {env['threads']}; "
        f"{cfg.model} on {cfg.dataset}, batch {cfg.batch_size}, randaugment {cfg.randaugment or 'off'}")
    inputs, data = load_inputs(cfg, opts, device)
    side = _img_size(cfg)
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
        from mimetic.reference_loop import reference

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


def _img_size(cfg: TrainConfig) -> int:
    from mimetic.models import MODELS

    return MODELS[cfg.model]["img_size"]


def _fused_label(fused: str, device: torch.device) -> bool:
    return device.type == "cuda" if fused == "auto" else fused == "on"


# --- benchmarks/gpu_check.sh: its parts into one document ----------------------------------------

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


if __name__ == "__main__":
    # python -m mimetic.bench worker <options JSON> <result file>: one packing worker
    # python -m mimetic.bench collect <folder> <gpu|cpu>: benchmarks/gpu_check.sh's JSON
    if sys.argv[1] == "worker":
        _pack_worker(Options(**json.loads(sys.argv[2])), Path(sys.argv[3]))
    elif sys.argv[1] == "collect":
        doc = collect(Path(sys.argv[2]), sys.argv[3])
        (Path(sys.argv[2]) / "gpu_check.json").write_text(json.dumps(doc, indent=2) + "\n")
    else:
        raise SystemExit(f"python -m mimetic.bench: unknown mode {sys.argv[1]!r} (worker, collect)")
