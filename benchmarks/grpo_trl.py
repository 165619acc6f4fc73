"""`bench.py grpo-vs-trl`: one GRPO step of ours against TRL's `GRPOTrainer` on the same work.

Same work on both sides: the backbone folder loaded twice, the same LoRA head (`lora_config`),
prompts, group size and completion length, the same deterministic reward, AdamW (no weight
decay) at the same learning rate, gradient-norm clip 1, PPO clip 0.2, no KL (beta 0, so no
reference model), token-mean loss (TRL's `dapo`), one update per generation (no old-log-prob
pass), no gradient checkpointing, no vLLM; bf16 autocast on GPU, fp32 on CPU. Both LM heads get
a -1e4 bias on every EOS id, so every completion runs to `--max-new-tokens` on both sides (the
token counts are reported).

A step is generate -> reward -> group advantages -> log-probs -> loss -> backward -> optimizer
step. TRL's `train()` owns its loop, so a `TrainerCallback` times each of its steps
(on_step_begin .. on_step_end) and then runs and times one of ours, so the rounds alternate.
Memory per step: `common.StepMeter` (GPU allocated peak, or CPU peak RSS reset every step).

TRL is a dev-only dependency (`pip install -e '.[dev]'`); without it the mode says so and exits
cleanly. Left out on purpose: vLLM generation, a reference model (beta > 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from benchmarks import common
from benchmarks.report import format_table, speedup

if TYPE_CHECKING:
    from unimodal.backbone import Backbone

TARGET = 1.5  # our step at least this much faster than TRL's
HEAD = "grpo"


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", help="a local HF folder (default: the preset)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--group", type=int, default=4, help="samples per prompt")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--prompt-len", type=int, default=16, help="approximate prompt words")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--lora-r", type=int, default=16)
    common.add_run_args(p)


class VowelReward:
    """Deterministic reward: the share of vowels in a completion's text. Records the completion
    tokens of each call (TRL passes `completion_ids`), to show both sides did the same work."""

    __name__ = "vowel_share"

    def __init__(self) -> None:
        self.tokens: list[int] = []

    def __call__(self, completions: list[str], completion_ids: list[list[int]], **_) -> list[float]:
        self.tokens.append(sum(len(c) for c in completion_ids))
        return [sum(ch in "aeiou" for ch in t) / max(len(t), 1) for t in completions]


def ban_eos(model: torch.nn.Module, eos_ids: list[int]) -> list[int]:
    """Bias the LM head of HF `model` by -1e4 on every EOS id (the tokenizer's and the generation
    config's); returns the banned ids."""
    gen = model.generation_config.eos_token_id
    ids = sorted(set(eos_ids) | set(gen if isinstance(gen, list) else [] if gen is None else [gen]))
    with torch.no_grad():
        common.add_logit_bias(model).bias[ids] = -1e4
    return ids


def our_step(
    args: argparse.Namespace,
    bb: Backbone,
    texts: list[str],
    opt: torch.optim.Optimizer,
    reward: VowelReward,
    gen: torch.Generator,
    bf16: bool,
) -> None:
    """One GRPO step of ours: rollouts, rewards, group advantages, `policy_step`."""
    from reasoning.pg import PGConfig, generate, policy_step
    from unimodal.pg import grpo_advantages

    cfg = PGConfig(micro_batch=len(texts))  # one forward/backward, like TRL's batch
    autocast = torch.autocast(bb.device.type, dtype=torch.bfloat16, enabled=bf16)
    bb.model.eval()
    with autocast:
        rolls = generate(
            bb, texts, HEAD, args.max_new_tokens, cfg.temperature, 1.0, len(texts), gen
        )
    rewards = reward([r.text for r in rolls], [r.completion_ids.tolist() for r in rolls])
    groups = [i // args.group for i in range(len(rolls))]
    for r, a in zip(rolls, grpo_advantages(torch.tensor(rewards), groups).tolist()):
        r.advantage = a
    bb.model.train()
    with autocast:
        policy_step(bb, bb, HEAD, rolls, opt, cfg)
    bb.model.eval()


def trl_trainer(
    args: argparse.Namespace,
    path: Path,
    prompts: list[str],
    reward: VowelReward,
    out_dir: str,
    device: torch.device,
    bf16: bool,
    callback: Any,
) -> Any:
    """TRL's GRPOTrainer on the same model folder, LoRA head, data and settings."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from unimodal.backbone import Backbone
    from unimodal.lora_heads import lora_config

    bb = Backbone.from_pretrained(path)
    ban_eos(bb.model, bb.eos_token_ids)
    new_name = "activation_checkpointing"  # transformers' new name for gradient_checkpointing
    has_new = new_name in {f.name for f in dataclasses.fields(GRPOConfig)}
    ckpt = new_name if has_new else "gradient_checkpointing"
    config = GRPOConfig(
        output_dir=out_dir, report_to="none", logging_strategy="no", save_strategy="no",
        disable_tqdm=True, use_cpu=device.type == "cpu", bf16=bf16, seed=0,
        dataloader_pin_memory=device.type == "cuda", shuffle_dataset=False,
        per_device_train_batch_size=len(prompts) * args.group, gradient_accumulation_steps=1,
        num_generations=args.group, max_completion_length=args.max_new_tokens,
        max_steps=args.warmup + args.rounds, learning_rate=args.lr, lr_scheduler_type="constant",
        optim="adamw_torch", weight_decay=0.0, max_grad_norm=1.0, beta=0.0, epsilon=0.2,
        loss_type="dapo", scale_rewards="group", num_iterations=1, temperature=1.0, top_p=1.0,
        top_k=0, use_vllm=False, log_completions=False, **{ckpt: False},
    )  # fmt: skip
    return GRPOTrainer(
        model=bb.model,
        reward_funcs=reward,
        args=config,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=bb.tokenizer,
        peft_config=lora_config(args.lora_r, 2 * args.lora_r),
        callbacks=[callback],
    )


def alternating_timer(
    meter: common.StepMeter, ours: Callable[[], None], warmup: int, rows: dict[str, list[dict]]
) -> Any:
    """A TrainerCallback timing each TRL step, then running and timing one of ours after it;
    steps past `warmup` are appended to rows["trl"] / rows["ours"]."""
    from transformers import TrainerCallback

    class AlternatingTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            meter.start()

        def on_step_end(self, args, state, control, **kwargs):
            trl_row = meter.stop()
            meter.start()
            ours()
            ours_row = meter.stop()
            if state.global_step > warmup:
                rows["trl"].append(trl_row)
                rows["ours"].append(ours_row)

    return AlternatingTimer()


def _summary(steps: list[dict], tokens: list[int]) -> dict[str, Any]:
    secs = [s["s"] for s in steps]
    peaks = [s["peak_mb"] for s in steps if s["peak_mb"] is not None]
    growth = [s["growth_mb"] for s in steps if s["growth_mb"] is not None]
    return {
        "step_s": min(secs),
        "step_s_median": statistics.median(secs),
        "round_s": secs,
        "completion_tokens": tokens,  # per timed step
        "tokens_per_s": tokens[0] / min(secs) if tokens else None,
        "peak_memory_mb": max(peaks) if peaks else None,
        "step_memory_growth_mb": max(growth) if growth else None,
    }


def _import_trl() -> tuple[Any, str]:
    """TRL's module and "", or None and why it cannot be used here."""
    if importlib.util.find_spec("trl") is None:
        return None, (
            "trl is not installed (a dev-only dependency: pip install -e '.[dev]'); install it "
            "next to a torch it accepts (torch<=2.14.1 here) to compare our GRPO step with TRL's "
            "GRPOTrainer"
        )
    try:
        import trl
    except Exception as err:  # installed but broken against this torch / transformers
        return None, f"trl is installed but does not import: {err!r}"
    return trl, ""


def _work(
    args: argparse.Namespace, completions: int, banned: list[int], bf16: bool, reward: str
) -> dict[str, Any]:
    """The work both sides do, as recorded in the report."""
    return {
        "model": args.model or f"preset {args.preset}",
        "prompts": args.prompts, "group": args.group, "completions": completions,
        "max_new_tokens": args.max_new_tokens, "eos_banned": banned, "lora_r": args.lora_r,
        "lr": args.lr, "precision": "bf16" if bf16 else "fp32", "beta": 0.0, "clip": 0.2,
        "loss": "token-mean (TRL dapo)", "reward": reward,
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"mode": "grpo-vs-trl"}
    trl, why = _import_trl()
    if trl is None:
        report["skipped"] = why
        return report
    from benchmarks.rollout import prompts as make_prompts
    from unimodal.backbone import Backbone
    from unimodal.presets import ensure_backbone

    device = common.pick_device(args.device)
    common.set_threads(args.threads, device)
    bf16 = common.use_bf16(args.precision, device)
    path = ensure_backbone(args.model, args.preset)
    prompts = make_prompts(args.prompts, args.prompt_len)
    texts = [p for p in prompts for _ in range(args.group)]  # TRL repeats each prompt likewise

    torch.manual_seed(0)
    bb = Backbone.from_pretrained(path).freeze()
    banned = ban_eos(bb.model, bb.eos_token_ids)
    bb.add_lora(HEAD, args.lora_r, 2 * args.lora_r)
    bb.set_lora(HEAD)
    bb.to(device)
    opt = torch.optim.AdamW(bb.lora_parameters(HEAD), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator(device=device).manual_seed(0)
    ours_reward, trl_reward = VowelReward(), VowelReward()
    rows: dict[str, list[dict]] = {"ours": [], "trl": []}
    meter = common.StepMeter(device)

    def ours() -> None:
        our_step(args, bb, texts, opt, ours_reward, gen, bf16)

    cb = alternating_timer(meter, ours, args.warmup, rows)
    with tempfile.TemporaryDirectory(prefix="grpo_trl_") as out_dir:
        trainer = trl_trainer(args, path, prompts, trl_reward, out_dir, device, bf16, cb)
        trainer.train()
    n = len(rows["ours"])
    report.update(trl=trl.__version__, machine=common.machine(device))
    report["work"] = _work(args, len(texts), banned, bf16, ours_reward.__name__)
    report["memory"] = meter.kind
    report["variants"] = {
        "ours": _summary(rows["ours"], ours_reward.tokens[-n:]),
        "trl": _summary(rows["trl"], trl_reward.tokens[-n:]),
    }
    trl_s, ours_s = [r["s"] for r in rows["trl"]], [r["s"] for r in rows["ours"]]
    report["ratio_trl_over_ours"] = common.paired_ratio(trl_s, ours_s)
    report["target"] = TARGET
    report["target_met"] = report["ratio_trl_over_ours"]["best"] >= TARGET
    return report


def table(report: dict[str, Any]) -> str:
    if "skipped" in report:
        return f"grpo-vs-trl: skipped ({report['skipped']})"
    head = ("GRPO step", "s/step", "median s/step", "tokens/step", "peak MiB", "step growth MiB")
    rows = [
        (name, v["step_s"], v["step_s_median"], v["completion_tokens"][0],
         v["peak_memory_mb"], v["step_memory_growth_mb"])
        for name, v in report["variants"].items()
    ]  # fmt: skip
    met = "met" if report["target_met"] else "not met"
    return (
        format_table(head, rows)
        + f"\nours is faster by {speedup(report['ratio_trl_over_ours'])}; "
        + f"target {report['target']}x {met}; memory: {report['memory']}"
    )
