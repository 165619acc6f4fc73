"""What every benchmark mode measures with: interleaved timing, paired ratios, FLOP counting, MFU
peaks, peak memory (whole runs and single steps), machine facts and LM-head logit biases. How the
results are shown (sweeps, plots, tables) is in `benchmarks/report.py`.

Timing: each round runs every variant once, in an order rotated from round to round. Rates
come from each variant's best round (load on a shared machine only ever adds time); a ratio is
reported both as the ratio of best rounds and as the median of per-round ratios (paired, which
cancels slow drifts in load). Left out on purpose: CUDA-event timing (wall clock with a device
synchronise is enough for whole steps).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Dense bf16 tensor-core peaks (FLOP/s) by device-name fragment; the first match wins.
PEAK_BF16 = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("A10G", 70e12),
)


def add_run_args(p: argparse.ArgumentParser) -> None:
    """The flags every timed mode shares: rounds, warm-up, device, threads, precision."""
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="0: 1 on CPU, default on GPU")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast for `--precision` bf16, or auto on a GPU."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in FLOP/s, or None when unknown (CPUs, unlisted GPUs)."""
    if device.type != "cuda":
        return None
    name = device_name(device)
    return next((peak for frag, peak in PEAK_BF16 if frag in name), None)


def machine(device: torch.device) -> dict[str, Any]:
    return {
        "device": device_name(device),
        "device_type": device.type,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "load_average_1m": os.getloadavg()[0],
        "peak_bf16_flops": peak_flops(device),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak allocated device memory since the last reset (GPU), None on CPU (see peak_rss_mb)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class StepMeter:
    """Wall time and memory of single steps, for loops a benchmark does not own (callbacks).

    Memory: on GPU the peak of `torch.cuda.max_memory_allocated` during the step; on CPU the
    process's peak resident set (VmHWM, reset before each step through /proc/self/clear_refs).
    `growth_mb` is that peak minus the amount held when the step began.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS"
        self._start = self._held = 0.0
        self._peak_ok = True

    def _now_mb(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) / 2**20
        return _status_mb("VmRSS")

    def start(self) -> None:
        sync(self.device)
        reset_peak_memory(self.device)
        self._peak_ok = self.device.type == "cuda" or _reset_peak_rss()
        self._held = self._now_mb() or 0.0
        self._start = time.perf_counter()

    def stop(self) -> dict[str, float | None]:
        """{"s": seconds, "peak_mb": peak during the step, "growth_mb": peak - held at start}."""
        sync(self.device)
        seconds = time.perf_counter() - self._start
        peak = peak_memory_mb(self.device) if self.device.type == "cuda" else _status_mb("VmHWM")
        if not self._peak_ok:
            peak = None  # the peak could not be reset: it would include earlier steps
        growth = None if peak is None else peak - self._held
        return {"s": seconds, "peak_mb": peak, "growth_mb": growth}


def add_logit_bias(model: nn.Module) -> nn.Linear:
    """Give a HF model's LM head a bias (zero, so the logits are unchanged) and return the head."""
    head = model.get_output_embeddings()
    lin = nn.Linear(head.in_features, head.out_features, bias=True)
    lin = lin.to(head.weight.device, head.weight.dtype)
    with torch.no_grad():
        lin.weight.copy_(head.weight)
        lin.bias.zero_()
    lin.requires_grad_(head.weight.requires_grad)
    model.lm_head = lin
    return lin


def interleave(
    units: dict[str, Callable[[], None]],
    rounds: int,
    warmup: int,
    device: torch.device,
    peaks: dict[str, float | None] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each unit, `rounds` times, order rotated each round; after `warmup`
    untimed calls each. `peaks` (if given) receives each unit's peak device memory (MiB)."""
    names = list(units)
    for name in names:
        for _ in range(warmup):
            units[name]()
    sync(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            reset_peak_memory(device)
            sync(device)
            start = time.perf_counter()
            units[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
            if peaks is not None:
                mem = peak_memory_mb(device)
                old = peaks.get(name)
                peaks[name] = mem if old is None or mem is None else max(old, mem)
    return times


def paired_ratio(base: Sequence[float], other: Sequence[float]) -> dict[str, float]:
    """Speed-up of `other` over `base` (time ratio base/other): `best` is the ratio of the best
    times (load only ever adds time), `median` / `min` / `max` are over per-round ratios."""
    ratios = [b / o for b, o in zip(base, other)]
    return {
        "best": min(base) / min(other),
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
    }


def set_threads(n: int, device: torch.device) -> int:
    """Intra-op threads: `n`, or for 0 one thread on CPU (spinning thread pools on a shared
    machine make times erratic) and torch's default on GPU."""
    if n > 0 or device.type == "cpu":
        torch.set_num_threads(max(n, 1))
    return torch.get_num_threads()


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *a, **k) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                         transposed, _out_padding, _groups, output_mask, *a, **k) -> int:  # fmt: skip
    """Grouped-convolution aware: each requested gradient costs one forward convolution (torch's
    own formula overcounts depthwise convolutions by about the number of groups)."""
    from torch.utils.flop_counter import conv_flop_count

    fwd = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return fwd * (int(output_mask[0]) + int(output_mask[1]))


def count_flops(fn: Callable[[], Any]) -> dict[str, Any]:
    """FLOPs of one call of `fn` (matmuls, convolutions, attention), total and per top module."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping: dict[Any, Callable[..., int]] = {aten.convolution_backward: _conv_backward_flops}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):  # not counted by default
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = (
            _cpu_sdpa_backward_flops
        )
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    by_module: dict[str, int] = {}  # per child of the root: its outermost called module
    for name, ops in counter.get_flop_counts().items():
        if "." in name:
            child = name.split(".")[1]
            by_module[child] = max(by_module.get(child, 0), sum(ops.values()))
    return {"total": counter.get_total_flops(), "by_module": by_module}
