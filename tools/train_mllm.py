"""Stage 0: supervised training of the backbone for understanding (captions, VQA) and code LM.

    python tools/train_mllm.py                                   # configs/mllm_tiny.toml, CPU
    python tools/train_mllm.py --config mllm_small_gpu           # the `small` preset on a GPU
    python tools/train_mllm.py --model.path=/models/Qwen2.5-VL-3B-Instruct --train.lr=1e-5

Full fine-tuning through accelerate (bf16 on GPU, DDP/FSDP with `accelerate launch`), atomic
resumable checkpoints, a progress bar, TensorBoard, OUT/metrics.jsonl and OUT/curves.png, and a
held-out VQA table and copy score (`evals/recall.py`) at the end. The trained model is exported
as a Hugging Face folder `OUT/final` that every other tool loads.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from evals.code_lm import evaluate_code_loss
from evals.recall import evaluate_copy
from evals.vqa import evaluate_vqa, vqa_table
from unimodal import checkpoint
from unimodal.cli import run_tool
from unimodal.data.recall import COPY_TEXTS
from unimodal.stage0 import Stage0Data
from unimodal.stage0_batch import step_losses
from unimodal.train import loop
from unimodal.train.mllm_config import MLLMConfig
from unimodal.vision_probe import TokenProbe

CONFIG = MLLMConfig


def make_data(cfg: MLLMConfig, tokenizer: Any = None) -> Stage0Data:
    """The stage-0 mixture of `data.*` (seeded by `train.seed`), its first phase included;
    `words` draws from the pool of `tokenizer` (the backbone's)."""
    d, tc = cfg.data, cfg.train
    first = d.first_steps * tc.batch_size * tc.grad_accum  # samples: `loop.take` counts them
    return Stage0Data(
        tc.seed,
        d.image_size,
        d.weights,
        d.code_path,
        d.chunk_chars,
        d.qa_per_image,
        d.first_weights,
        first,
        tokenizer,
    )


def main(cfg: MLLMConfig) -> dict:
    tc = cfg.train
    run = loop.start(cfg, tc, "stage0")
    backbone = loop.load_backbone(run, cfg.model)
    backbone.model.train()
    backbone.model.requires_grad_(True)
    probe = TokenProbe(backbone.hidden_size) if tc.probe_weight > 0 else None
    params = [p for p in backbone.parameters() if p.requires_grad]
    params += list(probe.parameters()) if probe is not None else []
    loop.optimizer(run, params)
    loop.resume(run, partial(load_weights, backbone, probe))
    model = loop.prepare(run, backbone)
    if probe is not None:
        probe = run.acc.prepare_model(probe)
    data = make_data(cfg, backbone.tokenizer)
    losses = partial(
        step_losses,
        model,
        backbone,
        device=run.acc.device,
        targets_only=tc.targets_only,
        probe=probe,
        probe_weight=tc.probe_weight,
    )
    for _ in loop.steps(run):
        for _ in range(tc.grad_accum):
            batch = loop.take(run, data)
            row = loop.update(run, model, params, partial(losses, batch))
        if cfg.eval.every and loop.due(run, cfg.eval.every):
            row |= vqa_progress(backbone, cfg)
        loop.log(run, row, show=("loss", "loss_probe", "items_s"))
        loop.save(run, partial(weights, run, model, probe))
    report = finish_stage0(run, run.acc.unwrap_model(model), cfg) if run.complete else {}
    loop.finish(run, curves=("loss*", "vqa/*", "copy/*", "items_s"))
    return report


def weights(run: loop.Run, model, probe) -> dict[str, dict]:
    """The checkpoint's weight groups: the backbone, and the vision probe when there is one."""
    out = {"model": run.acc.get_state_dict(model)}
    if probe is not None:
        out["probe"] = run.acc.get_state_dict(probe)
    return out


def load_weights(backbone, probe, ckpt: Path) -> None:
    backbone.load_state_dict(checkpoint.load_weights(ckpt, "model"))
    if probe is not None:
        probe.load_state_dict(checkpoint.load_weights(ckpt, "probe"))


def vqa_progress(backbone, cfg: MLLMConfig) -> dict[str, float]:
    """Small held-out VQA and copy scores for the curves (`eval.every_samples` items each)."""
    e = cfg.eval
    backbone.model.eval()
    report = evaluate_vqa(backbone, e.every_samples, cfg.data.image_size, e.batch_size)
    copy = evaluate_copy(backbone, e.every_samples, e.batch_size)
    backbone.model.train()
    per_type = {f"vqa/{q}": r["accuracy"] for q, r in report["per_type"].items()}
    copied = {f"copy/{k}": copy[k]["exact"] for k in COPY_TEXTS}
    return {"vqa/overall": report["overall"], **per_type, **copied}


def finish_stage0(run: loop.Run, backbone, cfg: MLLMConfig) -> dict:
    """Export OUT/final as a Hugging Face folder and score held-out VQA (main process)."""
    if not run.main:
        return {}
    final = run.out / "final"
    backbone.model.save_pretrained(final)
    backbone.processor.save_pretrained(final)
    print(f"saved the trained backbone to {final}", flush=True)
    backbone.model.eval()
    if cfg.eval.vqa_samples <= 0:
        return {}
    e = cfg.eval
    report = evaluate_vqa(backbone, e.vqa_samples, cfg.data.image_size, e.batch_size)
    if cfg.data.weights.get("code", 0) > 0:
        report["code_lm"] = evaluate_code_loss(backbone, cfg.data.chunk_chars)
    report["copy"] = evaluate_copy(backbone, e.vqa_samples, e.batch_size)
    (Path(run.out) / "eval_vqa.json").write_text(json.dumps(report, indent=2))
    print(vqa_table(report), flush=True)
    if "code_lm" in report:
        c = report["code_lm"]
        print(f"held-out code LM: loss {c['loss']:.3f} per token ({c['tokens']} tokens)")
    for kind in COPY_TEXTS:
        r = report["copy"][kind]
        print(f"held-out copy, {kind}: {r['exact']:.3f} +- {r['se']:.3f} of {r['spans']} exact")
    return report


if __name__ == "__main__":
    run_tool(main, MLLMConfig)
