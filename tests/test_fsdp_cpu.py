"""FSDP2 (`fully_shard`) on the CPU with gloo, two processes: the tiny backbone sharded block by
block as accelerate's policy would (`unimodal.fsdp.block_names`, then the root) decodes the same
greedy tokens as the unsharded model (rollouts run outside the root's forward:
`unimodal.fsdp.gathered`), saves a sharded checkpoint (torch.distributed.checkpoint) and
resumes it under two processes and under one.

Run as a script, this file is the worker: `python tests/test_fsdp_cpu.py BACKBONE OUT MODE`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def worker(backbone_dir: str, out: str, mode: str) -> None:
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.fsdp import fully_shard

    from unimodal.backbone import Backbone
    from unimodal.fsdp import block_names
    from unimodal.sampling import sample

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    bb = Backbone.from_pretrained(backbone_dir, dtype=torch.float32).freeze()
    if mode == "generate":
        return generate_worker(bb, out, rank, world)
    prompt = bb.encode_chat([[{"role": "user", "content": "a red circle"}]], None)
    names = set(block_names(bb))
    if mode == "resume":  # a different start: the weights must come from the checkpoint
        with torch.no_grad():
            for p in bb.parameters():
                p.add_(1.0)
    for m in list(bb.modules()):
        if type(m).__name__ in names:
            fully_shard(m)
    fully_shard(bb)
    state = {"model": bb.state_dict()}
    if mode == "save":
        dcp.save(state, checkpoint_id=f"{out}/ckpt")
    else:
        dcp.load(state, checkpoint_id=f"{out}/ckpt")
        bb.load_state_dict(state["model"])
    shards = sum(type(p).__name__ == "DTensor" for p in bb.parameters())
    ids = sample(bb, prompt, max_new_tokens=6, temperature=0.0).completion_ids[0].tolist()
    record = {"world": world, "ids": ids, "sharded_params": shards}
    Path(out, f"{mode}_rank{rank}_of{world}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


def tiny_generator(bb):
    import torch

    from unimodal.generator import Generator, GenModelConfig

    torch.manual_seed(0)  # the same weights on every rank and in the test
    return Generator(GenModelConfig(), bb)


def generate_worker(bb, out: str, rank: int, world: int) -> None:
    """The generator sharded as accelerate's policy would (its blocks, then the root) samples
    an image: every step runs outside the root's forward."""
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from unimodal.fsdp import block_names

    gen = tiny_generator(bb)
    names = set(block_names(gen))
    for m in list(gen.modules()):
        if type(m).__name__ in names:
            fully_shard(m)
    fully_shard(gen)
    shards = sum(type(p).__name__ == "DTensor" for p in gen.parameters())
    image = gen.generate(["a red circle"], steps=2, seed=3)
    torch.save(image, Path(out, f"image_rank{rank}_of{world}.pt"))
    Path(out, f"generate_rank{rank}_of{world}.json").write_text(json.dumps({"sharded": shards}))
    dist.destroy_process_group()


def launch(backbone: Path, out: Path, mode: str, procs: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    env["WORLD_SIZE"], env["PYTHONPATH"] = str(procs), str(ROOT)
    ps = [
        subprocess.Popen(
            [sys.executable, __file__, str(backbone), str(out), mode],
            env=dict(env, RANK=str(r)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for r in range(procs)
    ]
    logs = [p.communicate(timeout=240)[0].decode(errors="replace") for p in ps]
    for p, log in zip(ps, logs):
        assert p.returncode == 0, f"{mode} under {procs} processes failed:\n{log[-3000:]}"


@pytest.mark.slow  # about 85 s on 2 shared cores (three launches)
def test_fsdp2_shards_decodes_saves_and_resumes_on_cpu(tiny_backbone_dir, tmp_path):
    import torch

    from unimodal.backbone import Backbone
    from unimodal.sampling import sample

    bb = Backbone.from_pretrained(tiny_backbone_dir, dtype=torch.float32).freeze()
    prompt = bb.encode_chat([[{"role": "user", "content": "a red circle"}]], None)
    want = sample(bb, prompt, max_new_tokens=6, temperature=0.0).completion_ids[0].tolist()

    launch(tiny_backbone_dir, tmp_path, "save", 2)
    launch(tiny_backbone_dir, tmp_path, "resume", 2)
    launch(tiny_backbone_dir, tmp_path, "resume", 1)
    runs = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*_rank*.json")}
    assert sorted(runs) == [
        "resume_rank0_of1", "resume_rank0_of2", "resume_rank1_of2", "save_rank0_of2",
        "save_rank1_of2",
    ]  # fmt: skip
    assert all(r["sharded_params"] > 0 for r in runs.values())  # the parameters are DTensors
    assert all(r["ids"] == want for r in runs.values()), (want, runs)


@pytest.mark.slow  # about 30 s on 2 shared cores
def test_fsdp2_sharded_generator_samples_the_same_image(tiny_backbone_dir, tmp_path):
    import torch

    from unimodal.backbone import Backbone

    bb = Backbone.from_pretrained(tiny_backbone_dir, dtype=torch.float32).freeze()
    want = tiny_generator(bb).generate(["a red circle"], steps=2, seed=3)
    launch(tiny_backbone_dir, tmp_path, "generate", 2)
    for rank in range(2):
        record = json.loads((tmp_path / f"generate_rank{rank}_of2.json").read_text())
        assert record["sharded"] > 0
        got = torch.load(tmp_path / f"image_rank{rank}_of2.pt")
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


if __name__ == "__main__":
    worker(*sys.argv[1:])
