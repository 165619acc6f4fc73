"""ODE samplers for flow matching with (multi-branch) classifier-free guidance.

Integrates ``dx/dsigma = v(x, sigma)`` from sigma = 1 (noise) to 0 (data) on the grid
``shift_sigma(linspace(1, 0, steps + 1))`` with
- Euler (first order, one velocity call per step), or
- Heun (second order, trapezoidal corrector; two calls per step, also on the last step since a
  flow-matching velocity is defined at sigma = 0).

Guidance is a linear combination of k stacked branches, evaluated in ONE batched call per velocity
evaluation: the caller's ``velocity_fn(x (k*B, C, H, W), sigma (k*B,)) -> (k*B, C, H, W)`` sees the
state repeated branch-major (rows ``[i*B:(i+1)*B]`` are branch i) and closes over conditions
stacked the same way. With weights ``w``: ``v = sum_i w_i v_i``.
- CFG (Ho & Salimans 2022), branches (uncond, cond): ``v = v_u + g (v_c - v_u)``.
- Dual guidance for editing (InstructPix2Pix, Brooks et al. 2023 eq. 3), branches
  (uncond, image, image+text): ``v = v_uu + s_img (v_img - v_uu) + s_txt (v_full - v_img)``.

Left out: stochastic samplers, multistep solvers (DPM-Solver), guidance intervals / rescaling.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from flow_matching.timesteps import sigma_schedule

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METHODS = ("euler", "heun")


@dataclass
class SamplerConfig:
    """Sampling options. ``image_guidance`` is used only with three branches (editing)."""

    method: str = "euler"
    steps: int = 28
    shift: float = 1.0
    guidance: float = 4.5
    image_guidance: float = 1.5

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the bad value."""
        if self.method not in METHODS:
            raise ValueError(
                f"sampler.method: unknown method {self.method!r}; choose one of 'euler', 'heun'"
            )
        if self.steps < 1:
            raise ValueError(f"sampler.steps: must be >= 1, got {self.steps}")
        if not self.shift > 0:
            raise ValueError(f"sampler.shift: must be > 0, got {self.shift}")

    def branch_weights(self, num_branches: int) -> tuple[float, ...]:
        """Weights for 1 (no guidance), 2 (CFG) or 3 (dual guidance) stacked branches."""
        if num_branches == 1:
            return (1.0,)
        if num_branches == 2:
            return cfg_weights(self.guidance)
        if num_branches == 3:
            return dual_guidance_weights(self.image_guidance, self.guidance)
        raise ValueError(f"num_branches: expected 1, 2 or 3, got {num_branches}")


def cfg_weights(guidance: float) -> tuple[float, float]:
    """Branches (uncond, cond): ``v_u + g (v_c - v_u) = (1 - g) v_u + g v_c``."""
    return (1.0 - guidance, guidance)


def dual_guidance_weights(
    image_guidance: float, text_guidance: float
) -> tuple[float, float, float]:
    """Branches (uncond, image, image+text): ``v_uu + s_img (v_img - v_uu) + s_txt (v_full - v_img)``."""
    return (1.0 - image_guidance, image_guidance - text_guidance, text_guidance)


def guidance_branches(
    cond: torch.Tensor,
    null: torch.Tensor,
    ref: torch.Tensor | None,
    guidance: float,
    image_guidance: float,
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[float, ...]]:
    """Stacked conditions (k*B, L, D), stacked references or None, and the branch weights.

    With reference latents ``ref`` (B, C, H, W): dual guidance over (null, no ref), (null, ref),
    (cond, ref); otherwise CFG over (null, cond), or ``cond`` alone at guidance 1.
    """
    if ref is not None:
        refs = torch.cat([torch.zeros_like(ref), ref, ref], 0)  # (3B, C, H, W)
        weights = dual_guidance_weights(image_guidance, guidance)
        return torch.cat([null, null, cond], 0), refs, weights  # (3B, L, D)
    if guidance != 1.0:
        return torch.cat([null, cond], 0), None, cfg_weights(guidance)  # (2B, L, D)
    return cond, None, (1.0,)


def guided_velocity(velocity_fn: VelocityFn, weights: Sequence[float]) -> VelocityFn:
    """Wrap a stacked-branch ``velocity_fn`` into a guided one on ``(B, C, H, W)``.

    Each call makes exactly one ``velocity_fn`` call on the ``k*B`` stacked batch.
    """
    k = len(weights)
    if k == 0:
        raise ValueError("guidance weights: need at least one branch")
    if tuple(weights) == (1.0,):
        return velocity_fn

    def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        v = velocity_fn(x.repeat(k, 1, 1, 1), sigma.repeat(k))  # (k*B, C, H, W)
        branches = v.chunk(k, dim=0)  # k x (B, C, H, W)
        out = weights[0] * branches[0]
        for w, vb in zip(weights[1:], branches[1:]):
            out = out + w * vb
        return out  # (B, C, H, W)

    return fn


@torch.no_grad()
def sample(
    velocity_fn: VelocityFn,
    shape: Sequence[int],
    *,
    steps: int,
    method: str = "euler",
    shift: float = 1.0,
    weights: Sequence[float] = (1.0,),
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Integrate from noise (sigma = 1) to data (sigma = 0); returns ``x0`` of ``shape`` (B, C, H, W).

    ``velocity_fn`` takes the k-branch stacked batch (k = ``len(weights)``; see module docstring).
    The start is ``noise`` if given, else ``randn(shape, generator=generator)`` on ``device``.
    """
    if method not in METHODS:
        raise ValueError(
            f"sampler.method: unknown method {method!r}; choose one of 'euler', 'heun'"
        )
    if noise is None:
        noise = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    elif tuple(noise.shape) != tuple(shape):
        raise ValueError(f"noise shape {tuple(noise.shape)} does not match shape {tuple(shape)}")
    v_fn = guided_velocity(velocity_fn, tuple(weights))
    sigmas = sigma_schedule(steps, shift, device=noise.device, dtype=noise.dtype)  # (steps + 1,)
    x = noise  # (B, C, H, W)
    b = x.shape[0]
    for i in range(steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        dt = s_next - s  # negative
        v = v_fn(x, s.expand(b))  # (B, C, H, W)
        x_euler = x + dt * v
        if method == "euler":
            x = x_euler
        else:
            v_next = v_fn(x_euler, s_next.expand(b))  # (B, C, H, W)
            x = x + dt * 0.5 * (v + v_next)
    return x
