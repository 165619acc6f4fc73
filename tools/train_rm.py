"""RM-R1 reward reasoning: stage 1 distillation SFT, stage 2 RLVR with GRPO, of a judge LoRA head.

    python tools/train_rm.py --stage sft                          # configs/rm_tiny.toml, CPU
    python tools/train_rm.py --stage rl
    python tools/train_rm.py --config rm_small_gpu --stage=sft    # `small` backbone after stage 0
    python tools/train_rm.py --config rm_small_gpu --stage=rl     # starts from the SFT head

Stage 1 imitates judge traces (loss on the trace tokens only): a traces JSONL, or templated
traces of procedural verifiable pairs. Stage 2 samples `group_size` traces per pair with the head
on, rewards +1 / -1 by the parsed verdict, and takes one clipped GRPO step with a k3 KL to the
head-off backbone (`reasoning.pg.policy_step`); with `--rl.engine=http --rl.engine_url=URL`
the traces come from an OpenAI-compatible engine serving the hot-loaded head (vLLM,
`tools/serve.py`) and the update corrects its log-probs (`[rl.correction]`). Both stages run
on the shared skeleton (`unimodal.train.loop`: resumable checkpoints, `stop_at`, progress bar,
TensorBoard, OUT/metrics.jsonl, OUT/curves.png); at the end the head is saved to OUT/final and judged on
held-out pairs in both A/B orders (OUT/eval_pairs.json).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from evals.rm_suites import evaluate_pair_list, heldout_record, rm_table
from reasoning.pg import policy_step
from reasoning.pg.engine import make_engine, publish
from reasoning.rm_r1.data import PairStream
from reasoning.rm_r1.distill import trace_batch
from reasoning.rm_r1.grpo import judge_rollouts, rollout_stats
from reasoning.rm_r1.judge import HeadSpec, load_head, save_head
from reasoning.rm_r1.sources import SFTSource, held_out_pairs, rl_pairs
from reasoning.rm_r1.train_config import RMConfig
from unimodal import checkpoint
from unimodal.backbone import Backbone
from unimodal.cli import run_tool
from unimodal.stage0 import lm_loss
from unimodal.train import loop

CONFIG = RMConfig
SHOW = ("loss", "reward", "format_fail", "kl")


def main(cfg: RMConfig, backbone: Backbone | None = None) -> dict:
    """Run `cfg.stage`; `backbone` (already loaded, e.g. in a notebook) replaces `model.*`."""
    run = loop.start(cfg, cfg.train, f"rm_{cfg.stage}")
    backbone = backbone or loop.load_backbone(run, cfg.model, auto_bf16=True)
    backbone.freeze().model.to(run.acc.device)
    spec, params = attach_judge(run, backbone, cfg)
    loop.optimizer(run, params)
    name = spec.name
    loop.resume(
        run, lambda c: backbone.load_lora_state_dict(name, checkpoint.load_weights(c, "lora"))
    )
    model = loop.prepare(run, backbone)
    backbone = run.acc.unwrap_model(model)
    make = rl_stepper if cfg.stage == "rl" else sft_stepper
    one_step, seen = make(run, model, backbone, cfg, params)
    for _ in loop.steps(run):
        loop.log(run, one_step(), show=SHOW)
        loop.save(run, lambda: {"lora": backbone.lora_state_dict(name)})
    backbone.model.eval()
    report = finish_rm(run, backbone, spec, cfg, seen) if run.main and run.complete else {}
    loop.finish(run, curves=SHOW + ("accuracy",))
    return report


def attach_judge(run: loop.Run, backbone: Backbone, cfg: RMConfig):
    """The judge head: fresh, or the RL stage's `rl.init` (its saved LoRA shape wins)."""
    j = cfg.judge
    if cfg.stage == "rl" and cfg.rl.init:
        spec = replace(load_head(backbone, cfg.rl.init, j.name), name=j.name, style=j.style)
        run.acc.print(f"judge head initialised from {cfg.rl.init}")
        params = backbone.lora_parameters(j.name)
        for p in params:
            p.data = p.data.float()  # fp32 head weights even on a bf16 base
        backbone.set_lora(j.name)
    else:
        spec, params = j, backbone.add_head(j)  # fp32 weights, switched on
    return spec, params


def sft_stepper(run: loop.Run, model, backbone: Backbone, cfg: RMConfig, params) -> tuple:
    """Stage 1: one optimizer step of trace imitation (grad_accum micro-batches)."""
    source = SFTSource(cfg.data, backbone, cfg.judge.style, run.tc.seed)
    dev, grad_ckpt = run.acc.device, cfg.model.gradient_checkpointing

    def loss(prompt, mask):
        return lm_loss(model(prompt.input_ids, prompt.attention_mask), prompt.input_ids, mask)

    def one_step() -> dict:
        backbone.model.train(grad_ckpt)
        for _ in range(run.tc.grad_accum):
            prompt, mask = trace_batch(backbone, loop.take(run, source), cfg.judge.style)
            prompt, mask = prompt.to(dev), mask.to(dev)
            row = loop.update(run, model, params, lambda p=prompt, m=mask: loss(p, m))
        return row

    return one_step, source.prompts


def rl_stepper(run: loop.Run, model, backbone: Backbone, cfg: RMConfig, params) -> tuple:
    """Stage 2: sample `group_size` traces per pair, verdict rewards, one clipped GRPO step."""
    pairs = rl_pairs(cfg.data, backbone, cfg.judge.style, run.tc.seed)
    stream, pg, acc = PairStream(pairs, run.tc.seed), cfg.rl.pg(run.tc.clip_grad), run.acc
    engine = make_engine(cfg.rl, run.out, backbone)  # None: traces from `backbone` itself
    publish(engine, backbone, cfg.judge.name, run.step, acc)

    def one_step() -> dict:
        items = loop.take(run, stream)
        seed = run.tc.seed * 1_000_003 + run.step * 997 + acc.process_index
        gen = torch.Generator(backbone.device).manual_seed(seed)
        backbone.model.eval()  # KV-cache decoding; checkpointing is for the update only
        with acc.autocast():
            j = cfg.judge
            rollouts = judge_rollouts(
                backbone, items, j.name, j.style, cfg.rl, gen, str(run.step), engine
            )
        backbone.model.train(cfg.model.gradient_checkpointing)
        row = policy_step(model, backbone, j.name, rollouts, run.opt, pg, acc, cfg.rl.correction)
        publish(engine, backbone, j.name, run.step + 1, acc)  # the engine samples the new head
        local = rollout_stats(rollouts, cfg.rl.group_size)
        return row | {k: _mean(acc, v) for k, v in local.items()}

    return one_step, {str(p.prompt) for p in pairs}


def _mean(acc, value: float) -> float:
    return acc.reduce(torch.tensor(value, device=acc.device), "mean").item()


def finish_rm(run: loop.Run, backbone: Backbone, spec: HeadSpec, cfg: RMConfig, seen) -> dict:
    """Save OUT/final and judge held-out pairs (never seen in training) in both orders."""
    save_head(backbone, spec, run.out / "final")
    print(f"saved the judge head to {run.out / 'final'}", flush=True)
    if cfg.eval.n <= 0:
        return {}
    e, j = cfg.eval, cfg.judge
    pairs, truth = held_out_pairs(cfg.data, e.n, seen, e.pairs)
    with run.acc.autocast():
        report = evaluate_pair_list(
            backbone, pairs, j.name, j.style, e.max_new_tokens, e.batch_size, truth=truth
        )
    (run.out / "eval_pairs.json").write_text(json.dumps(report, indent=2))
    sft = (
        Path(cfg.rl.init).parent / "eval_heldout.json"
        if cfg.stage == "rl" and cfg.rl.init
        else None
    )
    record = heldout_record(report, cfg.stage, sft)  # {"n", "sft": {ab, ba, consistency}, "rl"}
    (run.out / "eval_heldout.json").write_text(json.dumps(record, indent=2))
    print(rm_table(report), flush=True)
    return report


if __name__ == "__main__":
    run_tool(main, RMConfig)
