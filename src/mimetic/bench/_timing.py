"""The timing machinery that the project's step and the reference loop share."""

from __future__ import annotations

import platform
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from mimetic.bench.options import Options


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

    from mimetic.train.inputs import available_cpus
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
