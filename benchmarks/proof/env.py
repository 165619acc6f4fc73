"""The proof's `env` section: the card, its driver, the software, and the roofline.

The roofline for MFU is measured, not looked up: the best bf16 matmul TFLOP/s of this device on
square matrices (8192 on a GPU, 512 on a CPU), next to the datasheet peak where one is known
(`benchmarks.common.PEAK_BF16`). Also recorded: which optional packages import, whether
bubblewrap (the executor's sandbox) is present, and the GPU-only switches
(`benchmarks.proof.switches`).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import time
from typing import Any

import torch

from benchmarks import common
from benchmarks.proof import switches

PACKAGES = (
    "torch", "transformers", "accelerate", "diffusers", "peft", "trl", "datasets", "safetensors",
    "tensorboard", "matplotlib", "pyseccomp", "timm", "open_clip_torch",
)  # fmt: skip


def matmul_tflops(device: torch.device, n: int, seconds: float = 2.0) -> dict[str, float]:
    """Best bf16 (n x n) @ (n x n) throughput over repeated timed bursts of about `seconds`."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b  # warm-up (kernel selection, clocks)
    common.sync(device)
    best, reps, spent, began = 0.0, 1, 0.0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        common.sync(device)
        spent = time.perf_counter() - start
        best = max(best, 2 * n**3 * reps / spent)
        if spent < 0.05:
            reps *= 2
    return {"matmul_bf16_tflops": best / 1e12, "matmul_size": n}


def driver_version() -> str | None:
    """The NVIDIA driver (nvidia-smi), else the CUDA driver API version torch reports."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    if torch.cuda.is_available():
        v = torch._C._cuda_getDriverVersion()
        return f"CUDA driver API {v // 1000}.{v % 1000 // 10}"
    return None


def packages() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def card(device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {"card": common.device_name(device), "memory_gib": None, "capability": None}
    props = torch.cuda.get_device_properties(device)
    return {
        "card": props.name,
        "memory_gib": props.total_memory / 2**30,
        "capability": f"{props.major}.{props.minor}",
        "cards": torch.cuda.device_count(),
    }


def run(mini: bool) -> dict[str, Any]:
    device = common.pick_device()
    common.set_threads(0, device)
    peak = common.peak_flops(device)
    report: dict[str, Any] = {
        "device": device.type,
        **card(device),
        "driver": driver_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": packages(),
        "bubblewrap": shutil.which("bwrap") is not None,
        "datasheet_bf16_tflops": peak / 1e12 if peak else None,
    }
    report |= matmul_tflops(device, 8192 if device.type == "cuda" else 512, 1.0 if mini else 3.0)
    report["switches"] = switches.check_all(device)
    return report
