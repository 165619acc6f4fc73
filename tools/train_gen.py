"""Train text-to-image generation on the frozen backbone (Ming-Lite-Uni style).

    python tools/train_gen.py                          # configs/gen_tiny.toml: CPU, ~12 min
    python tools/train_gen.py --config gen_shapes_gpu  # a GPU run
    python tools/train_gen.py --data.kind=folder --data.root=emoji_dir --gen.resolutions=[16,32,64]
    python tools/train_gen.py --config gen_shapes_gpu --print-config   # the resolved run
    python tools/train_gen.py --data.kind=webdataset --data.root=DIR --data.cache=CACHE  # tools/cache.py
    accelerate launch --config_file configs/accelerate/ddp.yaml tools/train_gen.py --config ...

Trains the multi-scale queries, connector, null conditions, alignment projectors and the decoder
(full / LoRA / frozen) with flow matching + representation alignment. EMA of the trainable
weights, sample grids in OUT/samples/, curves in OUT/curves.png, atomic resumable checkpoints in
OUT/checkpoints/, the final model in OUT/final/ (loadable by `unimodal.pipeline.Pipeline`), and
a GenEval-shapes table (and an editing table for editing runs).
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from evals.edit import edit_table, evaluate_edit
from evals.geneval_shapes import evaluate_geneval_shapes, geneval_table
from unimodal import checkpoint
from unimodal.cli import run_tool
from unimodal.config import to_toml
from unimodal.gencache import CachedGenData, to_device
from unimodal.gendata import GenData
from unimodal.generator import Generator
from unimodal.grid import save_grid, to_pil
from unimodal.train import EMA, loop, trainable
from unimodal.train.gen_config import GenTrainConfig

CONFIG = GenTrainConfig


def main(cfg: GenTrainConfig) -> dict:
    tc = cfg.train
    run = loop.start(cfg, tc, "gen")
    gen = Generator(cfg.gen, loop.load_backbone(run, cfg.model))
    if cfg.speed.compile:  # one static graph per resolution (three scales)
        gen.decoder.compile(dynamic=False)
        gen.connector.compile(dynamic=False)
    named = trainable(gen)
    params = list(named.values())
    loop.optimizer(run, params)
    ema = EMA(named, tc.ema_decay) if tc.ema_decay > 0 else None

    def load(ckpt: Path) -> None:
        gen.load_trainable_state_dict(checkpoint.load_weights(ckpt, "trainable"))
        if ema is not None:
            ema.load_state_dict(checkpoint.load_weights(ckpt, "ema"))

    def weights() -> dict:
        out = {"trainable": gen.trainable_state_dict()}
        return out | ({"ema": ema.state_dict()} if ema is not None else {})

    loop.resume(run, load)
    data = open_data(cfg, gen, run.per_process)  # before `prepare`: a cache checks the weights
    model = loop.prepare(run, gen)
    n_params = sum(p.numel() for p in params) / 1e6
    run.acc.print(f"trainable parameters: {n_params:.2f}M; query tokens: {gen.queries.num_tokens}")
    noise = torch.Generator(device=run.acc.device)
    for _ in loop.steps(run):
        for _ in range(tc.grad_accum):
            noise.manual_seed(
                tc.seed * 1_000_003 + run.position + run.acc.process_index * run.per_process
            )
            batch = to_device(data.batch(gen, loop.take(run, data)), run.acc.device)
            losses = loop.update(run, model, params, partial(model, *batch[:2], noise, *batch[2:]))
        if ema is not None:
            ema.update(named)
        loop.log(run, losses, show=("loss", "items_s"))
        done = run.step + 1
        if run.main and (done == tc.steps or (cfg.sample.every and done % cfg.sample.every == 0)):
            write_samples(
                gen, ema, named, cfg, run.out / "samples" / f"step_{run.step + 1:07d}.png"
            )
        loop.save(run, weights)
    report = finish_gen(run, gen, ema, named, cfg) if run.main and run.complete else {}
    loop.finish(run, curves=("loss", "fm_*", "cos_*", "items_s"))
    return report


def open_data(cfg: GenTrainConfig, gen: Generator, per_process: int) -> GenData | CachedGenData:
    """The training samples: the configured source, or its precomputed cache (`data.cache`)."""
    if cfg.data.cache:
        return CachedGenData(cfg, gen, per_process)
    return GenData(cfg.data, max(cfg.gen.resolutions), cfg.train.seed, per_process=per_process)


def finish_gen(run: loop.Run, gen: Generator, ema: EMA | None, named: dict, cfg) -> dict:
    """Export OUT/final (EMA weights when there are any) and score GenEval-shapes / editing."""
    if ema is not None:
        ema.copy_to(named)  # the exported and evaluated model is the EMA one
    final = export_final(gen, cfg, Path(gen.backbone.path), run.out / "final")
    print(f"saved the generator to {final}", flush=True)
    gen.eval()
    report: dict = {}
    if cfg.eval.n_per_category > 0:
        n, bs = cfg.eval.n_per_category, cfg.eval.batch_size
        report = evaluate_geneval_shapes(gen, run.out / "geneval_shapes", n, cfg.train.seed, bs)
        print("GenEval-shapes (checker-scored)\n" + geneval_table(report), flush=True)
    if cfg.gen.edit and cfg.eval.edit_n > 0:
        edit = evaluate_edit(gen, run.out / "edit", cfg.eval.edit_n, cfg.eval.batch_size)
        print("Editing (checker-scored)\n" + edit_table(edit), flush=True)
        report["edit"] = edit
    return report


def export_final(gen: Generator, cfg: GenTrainConfig, backbone_path: Path, out: Path) -> Path:
    """Write OUT/final: trained weights + resolved config + the backbone folder it needs.
    The folders it reads (backbone, decoder, VAE, encoder) are recorded as absolute paths, so
    it loads from any directory (they are not copied)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in gen.trainable_state_dict().items()}
    save_file(state, out / "generator.safetensors")
    (out / "config.toml").write_text(to_toml(absolute_paths(cfg, backbone_path)))
    (out / "backbone.json").write_text(json.dumps({"path": str(backbone_path.resolve())}))
    return out


def absolute_paths(cfg: GenTrainConfig, backbone_path: Path) -> GenTrainConfig:
    """`cfg` with the backbone, decoder, VAE and encoder folders resolved to absolute paths."""

    def absolute(path: str | None) -> str | None:
        return str(Path(path).expanduser().resolve()) if path else path

    g = cfg.gen
    gen = replace(
        g,
        decoder=replace(g.decoder, pretrained=absolute(g.decoder.pretrained)),
        vae=replace(g.vae, path=absolute(g.vae.path)),
        encoder=replace(g.encoder, path=absolute(g.encoder.path)),
    )
    model = replace(cfg.model, path=str(backbone_path.resolve()), stage0="")
    return replace(cfg, model=model, gen=gen)


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
    with torch.random.fork_rng(devices=[]):  # sampling never shifts the training RNG stream
        save_grid(to_pil(gen.generate(prompts, seed=0)), prompts, path)
    path.with_suffix(".txt").write_text("\n".join(prompts) + "\n")
    gen.train(was_training)
    if backup is not None:
        for k, p in named.items():
            p.copy_(backup[k])


if __name__ == "__main__":
    run_tool(main, GenTrainConfig)
