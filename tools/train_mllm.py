"""Stage 0: supervised training of the backbone for understanding (captions, VQA) and code LM.

    python tools/train_mllm.py                                   # tiny preset, CPU, minutes
    python tools/train_mllm.py --config mllm_small_gpu           # the `small` preset on a GPU
    python tools/train_mllm.py --model.path=/models/Qwen2.5-VL-3B-Instruct --train.lr=1e-5

Full fine-tuning through accelerate (bf16 on GPU, DDP/FSDP with `accelerate launch`), atomic
resumable checkpoints, a progress bar, TensorBoard, and a held-out VQA table at the end. The
trained model is exported as a Hugging Face folder `OUT/final` that every other tool loads.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unimodal import checkpoint  # noqa: E402
from unimodal.backbone import Backbone  # noqa: E402
from unimodal.cli import run_tool  # noqa: E402
from unimodal.evals.vqa import evaluate_vqa, vqa_table  # noqa: E402
from unimodal.runtime import (  # noqa: E402
    Throughput,
    TrainConfig,
    make_accelerator,
    make_optimizer,
    print_config,
    restore_training,
    save_training,
    seed_everything,
)
from unimodal.sft import Stage0Data, collate, lm_loss  # noqa: E402
from unimodal.tiny import ModelConfig, ensure_backbone  # noqa: E402


@dataclass
class DataConfig:
    image_size: int = 64
    weights: dict[str, float] = field(
        default_factory=lambda: {"caption": 1.0, "vqa": 2.0, "code": 1.0}
    )
    code_path: str | None = None  # optional JSONL with a `code` field (e.g. CRUXEval)
    chunk_chars: int = 400


@dataclass
class EvalConfig:
    vqa_samples: int = 200
    batch_size: int = 32


@dataclass
class MLLMConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            out_dir="runs/mllm_tiny", steps=200, batch_size=16, lr=2e-3, warmup_steps=20
        )
    )
    eval: EvalConfig = field(default_factory=EvalConfig)


CONFIG = MLLMConfig


def main(cfg: MLLMConfig) -> dict:
    tc = cfg.train
    acc = make_accelerator(tc)
    seed_everything(tc.seed)
    if acc.is_main_process:
        print_config(cfg, "train_mllm")
    with acc.main_process_first():
        path = ensure_backbone(cfg.model.path, cfg.model.preset)
    backbone = Backbone.from_pretrained(path)
    backbone.model.train()
    backbone.model.requires_grad_(True)
    params = [p for p in backbone.parameters() if p.requires_grad]
    opt, sched = make_optimizer(params, tc)
    data = Stage0Data(tc.seed, cfg.data.image_size, cfg.data.weights, cfg.data.code_path)
    step, position = 0, 0
    ckpt = checkpoint.latest(tc.out_dir) if tc.resume else None
    if ckpt is not None:
        backbone.load_state_dict(checkpoint.load_weights(ckpt, "model"))
        state = restore_training(ckpt, opt, sched)
        step, position = state["step"], state["position"]
        acc.print(f"resumed from {ckpt} at step {step}")
    model, opt = acc.prepare(backbone, opt)
    acc.init_trackers("mllm")
    bar = tqdm(total=tc.steps, initial=step, disable=not acc.is_local_main_process, desc="stage0")
    speed = Throughput()
    per_rank = tc.batch_size
    while step < tc.end_step:
        for _ in range(tc.grad_accum):
            start = position + acc.process_index * per_rank
            batch = [data[start + i] for i in range(per_rank)]
            position += per_rank * acc.num_processes
            prompt, mask = collate(backbone, batch)
            prompt, mask = prompt.to(acc.device), mask.to(acc.device)
            with acc.accumulate(model), acc.autocast():
                logits = model(prompt.input_ids, prompt.attention_mask, **prompt.extra)
                loss = lm_loss(logits, prompt.input_ids, mask)
                acc.backward(loss)
                if acc.sync_gradients and tc.clip_grad > 0:
                    acc.clip_grad_norm_(params, tc.clip_grad)
                opt.step()
                opt.zero_grad(set_to_none=True)
            speed.add(len(batch) * acc.num_processes)
        sched.step()
        step += 1
        bar.update(1)
        if step % tc.log_every == 0 or step == tc.steps:
            rate = speed.rate()
            bar.set_postfix(loss=f"{loss.item():.3f}", samples_s=f"{rate:.1f}")
            acc.log({"loss": loss.item(), "lr": sched.get_last_lr()[0], "samples_s": rate}, step)
        if step % tc.save_every == 0 or step == tc.end_step:
            weights = {"model": acc.get_state_dict(model)}
            state = {"step": step, "position": position}
            save_training(acc, cfg, tc.out_dir, step, weights, opt, sched, state, tc.keep)
    bar.close()
    report: dict = {}
    if acc.is_main_process and step == tc.steps:
        backbone = acc.unwrap_model(model)
        final = Path(tc.out_dir) / "final"
        backbone.model.save_pretrained(final)
        backbone.processor.save_pretrained(final)
        print(f"saved the trained backbone to {final}", flush=True)
        backbone.model.eval()
        if cfg.eval.vqa_samples > 0:
            report = evaluate_vqa(
                backbone, cfg.eval.vqa_samples, cfg.data.image_size, cfg.eval.batch_size
            )
            (Path(tc.out_dir) / "eval_vqa.json").write_text(json.dumps(report, indent=2))
            print(vqa_table(report), flush=True)
    acc.end_training()
    return report


if __name__ == "__main__":
    run_tool(main, MLLMConfig)
