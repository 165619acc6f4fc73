"""Train text-to-image generation on the frozen backbone (Ming-Lite-Uni style).

    python tools/train_gen.py                          # embedded default: tiny, CPU, ~12 min
    python tools/train_gen.py --config gen_shapes_gpu  # a GPU run
    python tools/train_gen.py --data.kind=folder --data.root=emoji_dir --gen.resolutions=[16,32,64]
    accelerate launch --config_file configs/accelerate/fsdp.yaml tools/train_gen.py --config ...

Trains the multi-scale queries, connector, null conditions, alignment projectors and the decoder
(full / LoRA / frozen) with flow matching + representation alignment. EMA of the trainable
weights, sample grids in OUT/samples/, atomic resumable checkpoints in OUT/checkpoints/, the final
model in OUT/final/ (loadable by `unimodal.pipeline.Pipeline`), and a GenEval-shapes table.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flow_matching import DecoderConfig, FlowMatchingConfig, SamplerConfig  # noqa: E402
from unimodal import checkpoint  # noqa: E402
from unimodal.backbone import Backbone  # noqa: E402
from unimodal.cli import run_tool  # noqa: E402
from unimodal.config import to_toml  # noqa: E402
from unimodal.connector import ConnectorConfig  # noqa: E402
from unimodal.evals.edit import edit_table, evaluate_edit  # noqa: E402
from unimodal.evals.geneval_shapes import evaluate_geneval_shapes, geneval_table  # noqa: E402
from unimodal.gendata import GenData, GenDataConfig, batch_inputs  # noqa: E402
from unimodal.generator import Generator, GenModelConfig  # noqa: E402
from unimodal.grid import save_grid, to_pil  # noqa: E402
from unimodal.queries import QueryConfig  # noqa: E402
from unimodal.runtime import (  # noqa: E402
    EMA,
    Throughput,
    TrainConfig,
    make_accelerator,
    make_optimizer,
    print_config,
    restore_training,
    save_training,
    seed_everything,
    trainable,
)
from unimodal.tiny import ModelConfig, ensure_backbone  # noqa: E402


@dataclass
class SampleConfig:
    every: int = 200  # steps between sample grids (0: only at the end)
    prompts: tuple[str, ...] = (
        "a red circle",
        "a blue square",
        "a green triangle",
        "a yellow circle",
        "a magenta square",
        "a cyan triangle",
        "a circle and a square",
        "two triangles",
    )


@dataclass
class GenEvalConfig:
    n_per_category: int = 32  # GenEval-shapes prompts per category (0: skip); 32 gives an
    # overall score with a standard error of about 0.03
    batch_size: int = 48
    edit_n: int = 100  # editing runs: held-out edit pairs to score (0: skip)


@dataclass
class SpeedConfig:
    compile: bool = False  # torch.compile the decoder and connector (GPU; slow to build on CPU)


def tiny_cpu_model() -> GenModelConfig:
    """The embedded default: trains on 2 CPU cores in about thirteen minutes.

    Measured on this budget (notes of issue 4): the decoder predicts the clean image
    (`flow.prediction = 'sample'`) with sigmas shifted towards noise (shift 3), which removes the
    grain a velocity-predicting tiny decoder leaves; queries read the prompt undiluted
    (`queries.attention = 'prompt'`); SANA also gets the pooled condition. The random backbone
    (`tiny_gen`) is near-linear and its query states are taken relative to the empty prompt at
    unit RMS (`relative_queries`), which gave the best prompt following of the backbones tried.
    """
    return GenModelConfig(
        queries=QueryConfig(attention="prompt"),
        relative_queries=True,
        connector=ConnectorConfig(depth=1, width=64, heads=4),
        decoder=DecoderConfig(
            type="sana",
            in_channels=3,
            sample_size=32,
            patch_size=4,
            num_layers=3,
            num_attention_heads=3,
            attention_head_dim=32,
            cond_dim=96,
            align_block=1,
            pooled_cond=True,
        ),
        flow=FlowMatchingConfig(prediction="sample", shift=3.0),
        sampler=SamplerConfig(steps=20, guidance=3.0, shift=3.0),
    )


@dataclass
class GenTrainConfig:
    model: ModelConfig = field(default_factory=lambda: ModelConfig(preset="tiny_gen"))
    gen: GenModelConfig = field(default_factory=tiny_cpu_model)
    data: GenDataConfig = field(default_factory=GenDataConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            out_dir="runs/gen_tiny",
            steps=1400,
            batch_size=32,
            lr=6e-3,
            warmup_steps=50,
            ema_decay=0.99,
            save_every=200,
            log_every=20,
        )
    )
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: GenEvalConfig = field(default_factory=GenEvalConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)  # gen.prefix_cache is the other


CONFIG = GenTrainConfig


def export_final(gen: Generator, cfg: GenTrainConfig, backbone_path: Path, out: Path) -> Path:
    """Write OUT/final: trained weights + resolved config + the backbone folder it needs."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in gen.trainable_state_dict().items()},
        out / "generator.safetensors",
    )
    (out / "config.toml").write_text(to_toml(cfg))
    (out / "backbone.json").write_text(json.dumps({"path": str(backbone_path.resolve())}))
    return out


def main(cfg: GenTrainConfig) -> dict:
    tc = cfg.train
    acc = make_accelerator(tc)
    seed_everything(tc.seed)
    if acc.is_main_process:
        print_config(cfg, "train_gen")
    with acc.main_process_first():
        path = ensure_backbone(cfg.model.path, cfg.model.preset)
    gen = Generator(cfg.gen, Backbone.from_pretrained(path))
    if cfg.speed.compile:  # one static graph per resolution (three scales)
        gen.decoder.compile(dynamic=False)
        gen.connector.compile(dynamic=False)
    named = trainable(gen)
    params = list(named.values())
    opt, sched = make_optimizer(params, tc)
    ema = EMA(named, tc.ema_decay) if tc.ema_decay > 0 else None
    data = GenData(cfg.data, max(cfg.gen.resolutions), tc.seed)
    step, position = 0, 0
    ckpt = checkpoint.latest(tc.out_dir) if tc.resume else None
    if ckpt is not None:
        gen.load_trainable_state_dict(checkpoint.load_weights(ckpt, "trainable"))
        if ema is not None:
            ema.load_state_dict(checkpoint.load_weights(ckpt, "ema"))
        state = restore_training(ckpt, opt, sched)
        step, position = state["step"], state["position"]
        acc.print(f"resumed from {ckpt} at step {step}")
    model, opt = acc.prepare(gen, opt)
    acc.init_trackers("gen")
    n_params = sum(p.numel() for p in params)
    acc.print(
        f"trainable parameters: {n_params / 1e6:.2f}M; query tokens: {gen.queries.num_tokens}"
    )
    bar = tqdm(total=tc.steps, initial=step, disable=not acc.is_local_main_process, desc="gen")
    speed = Throughput()
    out_dir = Path(tc.out_dir)
    torch_gen = torch.Generator(device=acc.device)
    while step < tc.end_step:
        for _ in range(tc.grad_accum):
            start = position + acc.process_index * tc.batch_size
            samples = [data[start + i] for i in range(tc.batch_size)]
            position += tc.batch_size * acc.num_processes
            torch_gen.manual_seed(tc.seed * 1_000_003 + start)
            prompt, pixels, ref = batch_inputs(gen, samples)
            prompt, pixels = prompt.to(acc.device), pixels.to(acc.device)
            ref = ref.to(acc.device) if ref is not None else None
            with acc.accumulate(model), acc.autocast():
                losses = model(prompt, pixels, torch_gen, ref)
                acc.backward(losses["loss"])
                if acc.sync_gradients and tc.clip_grad > 0:
                    acc.clip_grad_norm_(params, tc.clip_grad)
                opt.step()
                opt.zero_grad(set_to_none=True)
            speed.add(tc.batch_size * acc.num_processes)
        sched.step()
        if ema is not None:
            ema.update(named)
        step += 1
        bar.update(1)
        if step % tc.log_every == 0 or step == tc.steps:
            logs = {k: float(v.detach()) for k, v in losses.items()}
            logs.update(lr=sched.get_last_lr()[0], images_s=speed.rate())
            bar.set_postfix(loss=f"{logs['loss']:.3f}", img_s=f"{logs['images_s']:.1f}")
            acc.log(logs, step)
        is_last = step == tc.steps
        if acc.is_main_process and (is_last or (cfg.sample.every and step % cfg.sample.every == 0)):
            write_samples(gen, ema, named, cfg, out_dir / "samples" / f"step_{step:07d}.png")
        if step % tc.save_every == 0 or step == tc.end_step:
            weights = {"trainable": gen.trainable_state_dict()}
            if ema is not None:
                weights["ema"] = ema.state_dict()
            state = {"step": step, "position": position}
            save_training(acc, cfg, tc.out_dir, step, weights, opt, sched, state, tc.keep)
    bar.close()
    report: dict = {}
    if acc.is_main_process and step == tc.steps:
        if ema is not None:
            ema.copy_to(named)  # the exported and evaluated model is the EMA one
        final = export_final(gen, cfg, path, out_dir / "final")
        print(f"saved the generator to {final}", flush=True)
        if cfg.eval.n_per_category > 0:
            gen.eval()
            report = evaluate_geneval_shapes(
                gen,
                out_dir / "geneval_shapes",
                cfg.eval.n_per_category,
                tc.seed,
                cfg.eval.batch_size,
            )
            print("GenEval-shapes (checker-scored)\n" + geneval_table(report), flush=True)
        if cfg.gen.edit and cfg.eval.edit_n > 0:
            gen.eval()
            edit = evaluate_edit(gen, out_dir / "edit", cfg.eval.edit_n, cfg.eval.batch_size)
            print("Editing (checker-scored)\n" + edit_table(edit), flush=True)
            report["edit"] = edit
    acc.end_training()
    return report


@torch.no_grad()
def write_samples(
    gen: Generator, ema: EMA | None, named: dict, cfg: GenTrainConfig, path: Path
) -> None:
    """A grid for the fixed sample prompts, with EMA weights swapped in when there are any."""
    backup = {k: p.detach().clone() for k, p in named.items()} if ema is not None else None
    if ema is not None:
        ema.copy_to(named)
    was_training = gen.training
    gen.eval()
    prompts = list(cfg.sample.prompts)
    images = to_pil(gen.generate(prompts, seed=0))
    save_grid(images, prompts, path)
    path.with_suffix(".txt").write_text("\n".join(prompts) + "\n")
    gen.train(was_training)
    if backup is not None:
        for k, p in named.items():
            p.copy_(backup[k])


if __name__ == "__main__":
    run_tool(main, GenTrainConfig)
