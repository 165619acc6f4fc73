"""RM-R1 reward reasoning: stage 1 distillation SFT, stage 2 RLVR with GRPO, of a judge LoRA head.

    python tools/train_rm.py --config rm_tiny --stage sft         # CPU smoke, minutes
    python tools/train_rm.py --config rm_tiny --stage rl
    python tools/train_rm.py --config rm_small_gpu --stage=sft    # `small` backbone after stage 0
    python tools/train_rm.py --config rm_small_gpu --stage=rl     # starts from the SFT head

Stage 1 imitates judge traces (loss on the trace tokens only): a traces JSONL, or templated
traces of procedural verifiable pairs. Stage 2 samples `group_size` traces per pair with the head
on, rewards +1 / -1 by the parsed verdict, and takes one clipped GRPO step with a k3 KL to the
head-off backbone (`reasoning.pg.policy_step`). Both stages: accelerate (bf16 on GPU), atomic
resumable checkpoints, progress bar, TensorBoard and OUT/metrics.jsonl; at the end the head is
saved to OUT/final and judged on held-out pairs in both A/B orders (OUT/eval_pairs.json); the RL
stage also plots reward over steps (OUT/reward.png).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm


from reasoning.pg import policy_step
from reasoning.rm_r1.data import PairStream
from reasoning.rm_r1.distill import trace_batch
from reasoning.rm_r1.grpo import GRPOConfig, judge_rollouts, rollout_stats
from reasoning.rm_r1.judge import HeadSpec, load_head, save_head
from reasoning.rm_r1.sources import DataConfig, SFTSource, held_out_pairs, rl_pairs
from unimodal import checkpoint
from unimodal.backbone import Backbone
from unimodal.cli import run_tool
from evals.rm_suites import evaluate_pair_list, rm_table
from unimodal.train import (
    Throughput,
    TrainConfig,
    make_accelerator,
    make_optimizer,
    print_config,
    restore_training,
    save_training,
    seed_everything,
)
from unimodal.stage0 import lm_loss
from unimodal.presets import ModelConfig, ensure_backbone

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class RMModelConfig(ModelConfig):
    dtype: str = "auto"  # base weights: auto (bf16 under bf16 mixed precision) | float32 | bfloat16
    gradient_checkpointing: bool = False  # for the training forward passes only

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dtype not in ("auto", *DTYPES):
            raise ValueError(f"model.dtype: unknown '{self.dtype}' (auto | float32 | bfloat16)")


@dataclass
class SFTConfig:
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(out_dir="runs/rm/sft", steps=200, lr=1e-4)
    )


@dataclass
class RLConfig(GRPOConfig):
    train: TrainConfig = field(  # batch_size = prompts per step (each sampled group_size times)
        default_factory=lambda: TrainConfig(out_dir="runs/rm/rl", steps=200, lr=1e-5)
    )
    init: str = ""  # a judge head folder to start from (the SFT stage's OUT/final); "" = fresh


@dataclass
class EvalConfig:
    pairs: str = ""  # held-out preference file; "" = held-out procedural pairs
    n: int = 64  # pairs, each judged in both orders (greedy)
    batch_size: int = 16
    max_new_tokens: int = 256


@dataclass
class RMConfig:
    stage: str = "sft"  # sft | rl
    model: RMModelConfig = field(default_factory=RMModelConfig)
    judge: HeadSpec = field(default_factory=HeadSpec)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if self.stage not in ("sft", "rl"):
            raise ValueError(f"stage: unknown '{self.stage}' (sft | rl)")


CONFIG = RMConfig


def plot_rewards(metrics: Path, out: Path) -> None:
    """Reward (and accuracy) over RL steps, from metrics.jsonl, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {}
    for line in metrics.read_text().splitlines():
        r = json.loads(line)
        if r.get("stage") == "rl":
            rows[r["step"]] = r  # a resumed run's repeats keep the newest row
    steps = sorted(rows)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("reward", "accuracy", "format_fail"):
        ax.plot(steps, [rows[s][key] for s in steps], label=key)
    ax.set_xlabel("RL step")
    ax.set_title("RM-R1 judge: verdict reward (+1 / -1) over GRPO steps")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(cfg: RMConfig, backbone: Backbone | None = None) -> dict:
    """Run `cfg.stage`; `backbone` (already loaded, e.g. in a notebook) replaces `model.*`."""
    rl = cfg.stage == "rl"
    tc = cfg.rl.train if rl else cfg.sft.train
    acc = make_accelerator(tc)
    seed_everything(tc.seed)
    if acc.is_main_process:
        print_config(cfg, f"train_rm --stage {cfg.stage}")
    j, m = cfg.judge, cfg.model
    if backbone is None:
        with acc.main_process_first():
            path = ensure_backbone(m.path, m.preset)
        dtype = m.dtype if m.dtype != "auto" else "float32"
        if m.dtype == "auto" and acc.mixed_precision == "bf16":
            dtype = "bfloat16"
        backbone = Backbone.from_pretrained(path, dtype=DTYPES[dtype])
    backbone.freeze().model.to(acc.device)
    spec = j
    if rl and cfg.rl.init:  # the saved head's LoRA shape wins over judge.r / alpha / targets
        spec = replace(load_head(backbone, cfg.rl.init, j.name), name=j.name, style=j.style)
        acc.print(f"judge head initialised from {cfg.rl.init}")
    else:
        backbone.add_lora(j.name, j.r, j.alpha, 0.0, j.target_modules)
    for p in backbone.lora_parameters(j.name):
        p.data = p.data.float()  # fp32 head weights even on a bf16 base
    backbone.set_lora(j.name)
    if m.gradient_checkpointing:
        kw = {"use_reentrant": False}
        backbone.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
    params = backbone.lora_parameters(j.name)
    opt, sched = make_optimizer(params, tc)
    step, position = 0, 0
    ckpt = checkpoint.latest(tc.out_dir) if tc.resume else None
    if ckpt is not None:
        backbone.load_lora_state_dict(j.name, checkpoint.load_weights(ckpt, "lora"))
        state = restore_training(ckpt, opt, sched)
        step, position = state["step"], state["position"]
        acc.print(f"resumed from {ckpt} at step {step}")
    model, opt = acc.prepare(backbone, opt)
    backbone = acc.unwrap_model(model)
    acc.init_trackers(f"rm_{cfg.stage}")
    out = Path(tc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    if rl:
        pairs = rl_pairs(cfg.data, backbone, j.style, tc.seed)
        stream = PairStream(pairs, tc.seed)
        pg = cfg.rl.pg(tc.clip_grad)
        seen = {str(p.prompt) for p in pairs}
    else:
        source = SFTSource(cfg.data, backbone, j.style, tc.seed)
        seen = source.prompts
    bar = tqdm(
        total=tc.steps, initial=step, disable=not acc.is_local_main_process, desc=f"rm-{cfg.stage}"
    )
    speed = Throughput()
    per_rank = tc.batch_size
    while step < tc.steps:
        row: dict = {}
        if rl:
            start = position + acc.process_index * per_rank
            items = [stream[start + i] for i in range(per_rank)]
            position += per_rank * acc.num_processes
            gen = torch.Generator(backbone.device).manual_seed(
                tc.seed * 1_000_003 + step * 997 + acc.process_index
            )
            backbone.model.eval()  # KV-cache decoding; checkpointing is for the update only
            with acc.autocast():
                rollouts = judge_rollouts(backbone, items, j.name, j.style, cfg.rl, gen, str(step))
            backbone.model.train(m.gradient_checkpointing)
            row.update(policy_step(model, backbone, j.name, rollouts, opt, pg, acc))
            local = rollout_stats(rollouts, cfg.rl.group_size)
            row.update(
                {
                    k: acc.reduce(torch.tensor(v, device=acc.device), "mean").item()
                    for k, v in local.items()
                }
            )
            speed.add(len(rollouts) * acc.num_processes)
        else:
            backbone.model.train(m.gradient_checkpointing)
            for _ in range(tc.grad_accum):
                start = position + acc.process_index * per_rank
                batch = [source[start + i] for i in range(per_rank)]
                position += per_rank * acc.num_processes
                prompt, mask = trace_batch(backbone, batch, j.style)
                prompt, mask = prompt.to(acc.device), mask.to(acc.device)
                with acc.accumulate(model), acc.autocast():
                    logits = model(prompt.input_ids, prompt.attention_mask)
                    loss = lm_loss(logits, prompt.input_ids, mask)
                    acc.backward(loss)
                    if acc.sync_gradients and tc.clip_grad > 0:
                        acc.clip_grad_norm_(params, tc.clip_grad)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                speed.add(len(batch) * acc.num_processes)
            row["loss"] = loss.item()
        sched.step()
        step += 1
        bar.update(1)
        if step % tc.log_every == 0 or step == tc.steps:
            row.update(lr=sched.get_last_lr()[0], samples_s=speed.rate())
            shown = {k: row[k] for k in ("loss", "reward", "format_fail", "kl") if k in row}
            bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()})
            acc.log(row, step)
            if acc.is_main_process:
                with metrics.open("a") as f:
                    f.write(json.dumps({"stage": cfg.stage, "step": step, **row}) + "\n")
        if step % tc.save_every == 0 or step == tc.steps:
            weights = {"lora": backbone.lora_state_dict(j.name)}
            state = {"step": step, "position": position}
            save_training(acc, cfg, tc.out_dir, step, weights, opt, sched, state, tc.keep)
    bar.close()
    backbone.model.eval()
    report: dict = {}
    if acc.is_main_process:
        save_head(backbone, spec, out / "final")
        print(f"saved the judge head to {out / 'final'}", flush=True)
        if rl and metrics.is_file():
            plot_rewards(metrics, out / "reward.png")
        if cfg.eval.n > 0:
            pairs = held_out_pairs(cfg.data, cfg.eval.n, seen, cfg.eval.pairs)
            with acc.autocast():
                report = evaluate_pair_list(
                    backbone,
                    pairs,
                    j.name,
                    j.style,
                    cfg.eval.max_new_tokens,
                    cfg.eval.batch_size,
                )
            (out / "eval_pairs.json").write_text(json.dumps(report, indent=2))
            print(rm_table(report), flush=True)
    acc.end_training()
    return report


if __name__ == "__main__":
    run_tool(main, RMConfig)
