"""Flow-GRPO for the image generator: RL with the shapes checker as the verifiable reward.

    python tools/train_gen_rl.py                         # configs/gen_rl_tiny.toml, CPU
    python tools/train_gen_rl.py --init=runs/gen_tiny/final --train.time_budget_s=900
    python tools/train_gen_rl.py --config gen_rl_gpu     # after gen_shapes_gpu

Starts from a supervised generator folder (`tools/train_gen.py`'s OUT/final). Each step samples
`rl.group_size` images per training prompt with the marginal-preserving SDE
(`flow_matching.sde`) on `rl.steps` denoising steps with CFG, scores them with the checker,
takes group-relative advantages and the clipped surrogate from the shared PG maths
(`unimodal.pg`) with a Gaussian KL to the supervised reference, and updates LoRA adapters (or the
whole decoder, and optionally the queries / connector). Training and evaluation prompts are
disjoint (`unimodal/data/split.py`). Runs on the shared skeleton (`unimodal.train.loop`):
resumable checkpoints, `stop_at`, `time_budget_s`, OUT/metrics.jsonl, OUT/curves.png. At the
end: OUT/rl_eval.json (before / after, default and strict checker, held-out prompts),
OUT/rl_audit.json, OUT/before_after.png, OUT/reward_per_category.png, OUT/kl.png,
OUT/clip_frac.png and OUT/final (loadable by `unimodal.pipeline.Pipeline`).
"""

from __future__ import annotations

import torch

from unimodal import checkpoint
from unimodal.cli import run_tool
from unimodal.config import ConfigError
from unimodal.gen_rl.config import GenRLConfig
from unimodal.gen_rl.evaluate import before_after, eval_table
from unimodal.gen_rl.policy import Conditions, Policy, Reference, export_policy, load_policy
from unimodal.gen_rl.prompts import TrainPrompts
from unimodal.gen_rl.rollout import collect, guidance_of, rollout_stats
from unimodal.gen_rl.update import flow_grpo_update
from unimodal.train import loop, trainable
from unimodal.train.plots import plot_metrics

CONFIG = GenRLConfig
SHOW = ("reward", "pass", "kl", "clip_frac")
PLOTS = {"reward_per_category": ("reward", "reward_*"), "kl": ("kl",), "clip_frac": ("clip_frac",)}


def main(cfg: GenRLConfig) -> dict:
    tc = cfg.train
    if tc.grad_accum != 1:
        raise ConfigError(f"train.grad_accum: must be 1 (rl.minibatches splits a step), got {tc.grad_accum}")  # fmt: skip
    run = loop.start(cfg, tc, "gen_rl")
    policy = load_policy(cfg.init, cfg.policy, run.acc.device)
    gen = policy.gen
    named = trainable(gen)
    params = list(named.values())
    reference = Reference(named)  # before any resume: the supervised weights
    loop.optimizer(run, params)
    loop.resume(run, lambda c: gen.load_trainable_state_dict(checkpoint.load_weights(c, "trainable")))  # fmt: skip
    loop.prepare(run, gen)  # device, optimizer, trackers; updates call `gen`'s parts directly
    n_params = sum(p.numel() for p in params) / 1e6
    run.acc.print(f"RL-trainable parameters: {n_params:.3f}M ({cfg.policy.train_mode})")
    source = TrainPrompts(tc.seed)
    noise = torch.Generator(device=run.acc.device)
    order = torch.Generator()
    for _ in loop.steps(run):
        seed = tc.seed * 1_000_003 + run.step * 997 + run.acc.process_index
        noise.manual_seed(seed)
        order.manual_seed(seed)
        prompts = loop.take(run, source)
        with run.acc.autocast():
            ro = collect(gen, prompts, cfg.rl, noise)
        texts, guidance = [p.text for p in prompts], guidance_of(gen, cfg.rl)

        def conditions(texts=texts, guidance=guidance) -> Conditions:
            with torch.set_grad_enabled(cfg.policy.train_conditions):
                return Conditions.of(gen, texts, guidance)

        row = flow_grpo_update(
            ro, conditions, reference, params, run.opt, cfg.rl, run.acc, tc.clip_grad, order
        )
        loop.log(run, row | rollout_stats(ro), show=SHOW)
        loop.save(run, lambda: {"trainable": gen.trainable_state_dict()})
    report = finish_rl(run, policy, reference, cfg) if run.main and run.complete else {}
    loop.finish(run, curves=("reward", "reward_*", "pass", "strict_pass", "stray", "kl", "clip_frac"))  # fmt: skip
    return report


def finish_rl(run: loop.Run, policy: Policy, reference: Reference, cfg: GenRLConfig) -> dict:
    """Before / after evaluation on held-out prompts, the pictures, and OUT/final."""
    report: dict = {}
    if cfg.eval.n_per_category > 0:
        report = before_after(policy.gen, reference, cfg, run.out)
        print(
            "GenEval-shapes, held-out prompts (checker-scored)\n" + eval_table(report), flush=True
        )
    metrics = run.out / loop.METRICS
    if metrics.is_file():
        for name, keys in PLOTS.items():
            plot_metrics(metrics, run.out / f"{name}.png", keys, f"gen_rl: {name}")
    final = export_policy(policy, cfg.init, run.out / "final")
    print(f"saved the generator to {final}", flush=True)
    return report


if __name__ == "__main__":
    run_tool(main, GenRLConfig)
