"""The GPU-only paths of the proof, one switch each: CUDA graphs, flash and cuDNN attention, fused
AdamW. On a GPU each switch is checked once on the card (a tiny run of exactly that path against
its plain counterpart) and is "on" only if the check passes; on a CPU every switch reads
"skipped on CPU", so the `--mini` rehearsal says precisely what it did not run.

Where they act: fused AdamW is the `--fused-adamw` flag of the generation-training comparison
(and `unimodal.train.optim` fuses on CUDA); CUDA graphs are what a compiled decode step becomes on
a GPU (`unimodal.decode_state.compiled_step`, mode "reduce-overhead"); flash / cuDNN attention are
what PyTorch SDPA dispatches to on a GPU. Left out: forcing a backend in the timed runs (SDPA's
own dispatch is what a user gets).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SKIPPED = "skipped on CPU"


def _cuda_graphs(device: torch.device) -> float:
    x = torch.randn(64, 64, device=device)
    w = torch.randn(64, 64, device=device)
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):  # warm-up on a side stream, as capture requires
        y = x @ w
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = x @ w
    x.copy_(torch.randn_like(x))
    graph.replay()
    return float((y - x @ w).abs().max())


def _attention(backend_name: str) -> Callable[[torch.device], float]:
    def check(device: torch.device) -> float:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.nn.functional import scaled_dot_product_attention as sdpa

        q, k, v = (torch.randn(2, 4, 128, 64, device=device, dtype=torch.bfloat16) for _ in "qkv")
        with sdpa_kernel(getattr(SDPBackend, backend_name)):
            fast = sdpa(q, k, v, is_causal=True)
        with sdpa_kernel(SDPBackend.MATH):
            plain = sdpa(q, k, v, is_causal=True)
        return float((fast.float() - plain.float()).abs().max())

    return check


def _fused_adamw(device: torch.device) -> float:
    params = [torch.randn(32, 32, device=device, requires_grad=True) for _ in range(2)]
    twins = [p.detach().clone().requires_grad_(True) for p in params]
    for kind, ps in (({"fused": True}, params), ({"foreach": False}, twins)):
        opt = torch.optim.AdamW(ps, lr=1e-2, **kind)
        sum((p * p).sum() for p in ps).backward()
        opt.step()
    return max(float((a - b).abs().max()) for a, b in zip(params, twins))


CHECKS: dict[str, tuple[Callable[[torch.device], float], float]] = {
    # switch -> (check returning its max abs difference from the plain path, tolerance)
    "cuda_graphs": (_cuda_graphs, 1e-3),
    "flash_attention": (_attention("FLASH_ATTENTION"), 2e-2),
    "cudnn_attention": (_attention("CUDNN_ATTENTION"), 2e-2),
    "fused_adamw": (_fused_adamw, 1e-5),
}


def check_all(device: torch.device) -> dict[str, str]:
    """Each switch: "on", "skipped on CPU", or "off: why" (the check failed on this card)."""
    out = {}
    for name, (check, tol) in CHECKS.items():
        if device.type != "cuda":
            out[name] = SKIPPED
            continue
        try:
            err = check(device)
            out[name] = "on" if err <= tol else f"off: differs by {err:.3g} (> {tol:g})"
        except Exception as e:  # an unsupported path on this card is a result, not a crash
            out[name] = f"off: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return out


def on(switches: dict[str, str], name: str) -> bool:
    return switches.get(name) == "on"
