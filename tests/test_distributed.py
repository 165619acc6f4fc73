"""Two CPU processes (gloo, launched by `accelerate launch`) train the generator: both ranks
hold identical trainable weights after each saved step, and a checkpoint written under two
processes resumes under one; from WebDataset / parquet shards of real emoji each rank reads only
its own shards. Also a two-process smoke run of stage 0 (`tools/train_mllm.py`).

Run as a script, this file is the worker: it runs a tool's `main` with the skeleton's
`loop.save` wrapped so that every rank writes a hash of the weights it is about to save, and
`loop.take` so that every rank records the shards and captions of a stream it trains on.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_GEN = [
    "--train.batch_size=4",  # global: 2 per process under two
    "--train.warmup_steps=1",
    "--train.log_every=1",
    "--train.save_every=1000",
    "--sample.every=0",
    "--eval.n_per_category=0",
]


def weights_hash(weights: dict) -> str:
    """SHA-256 over the sorted names, dtypes, shapes and bytes of a state dict (or dict of them)."""
    h = hashlib.sha256()
    for name in sorted(weights):
        value = weights[name]
        if isinstance(value, dict):
            h.update(f"{name}:{weights_hash(value)}".encode())
            continue
        t = value.detach().cpu().contiguous()
        h.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
    return h.hexdigest()


def worker(tool: str, argv: list[str]) -> None:
    """Run `tools/<tool>.py` with `argv`; each rank writes OUT/hashes/rank<r>_step<s>.json."""
    sys.path.insert(0, str(ROOT / "tools"))
    mod = __import__(tool)
    from unimodal.config import load_config
    from unimodal.train import loop

    original = loop.save

    def save(run, weights, **extra):
        if loop.due(run, run.tc.save_every):
            folder = run.out / "hashes"
            folder.mkdir(parents=True, exist_ok=True)
            rank, step = run.acc.process_index, run.step + 1
            record = {"rank": rank, "world": run.acc.num_processes, "step": step}
            record["hash"] = weights_hash(weights())
            (folder / f"rank{rank}_step{step}.json").write_text(json.dumps(record))
        return original(run, weights, **extra)

    loop.save = save
    loop.take = record_takes(loop.take)
    mod.main(load_config(mod.CONFIG, argv))


def record_takes(take):
    """`loop.take` that also appends, for a sharded stream, this rank's shard files and the
    captions it was handed to OUT/taken/rank<r>.jsonl."""

    def recorded(run, source):
        items = take(run, source)
        stream = getattr(source, "stream", None)
        if stream is not None:
            shards = [Path(stream.reader.shards[u[0]]).name for u in stream.units]
            row = {"shards": shards, "texts": [item.text for item in items]}
            (run.out / "taken").mkdir(parents=True, exist_ok=True)
            with open(run.out / "taken" / f"rank{run.acc.process_index}.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
        return items

    return recorded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tool: str, args: list[str], procs: int, cwd: Path, timeout: float) -> str:
    """Run the worker under `procs` processes; return its output (fails the test on error)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.update(TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    script = [__file__, tool, *args]
    if procs == 1:
        cmd = [sys.executable, *script]
    else:
        # `--cpu` alone starts one process unless mpirun is installed; the torchrun launcher
        # (`--multi_gpu`) plus ACCELERATE_USE_CPU gives `procs` CPU processes on gloo.
        env["ACCELERATE_USE_CPU"] = "1"
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
        cmd += ["--num_processes", str(procs), "--num_machines", "1", "--mixed_precision", "no"]
        cmd += ["--dynamo_backend", "no", "--main_process_ip", "127.0.0.1"]
        cmd += ["--main_process_port", str(free_port()), "--monitor_interval", "1", *script]
    try:
        out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:  # the process group is killed by subprocess.run
        pytest.fail(f"{tool} under {procs} processes timed out after {timeout}s: {e.output}")
    log = out.stdout + out.stderr
    assert out.returncode == 0, f"{tool} under {procs} processes failed:\n{log[-4000:]}"
    return log


def read_hashes(out: Path, step: int) -> dict[int, dict]:
    return {
        int(p.stem.split("_")[0][4:]): json.loads(p.read_text())
        for p in (out / "hashes").glob(f"rank*_step{step}.json")
    }


def test_two_processes_agree_and_resume_under_one(tiny_backbone_dir, tmp_path):
    from unimodal import checkpoint

    out = tmp_path / "gen"
    args = [f"--model.path={tiny_backbone_dir}", f"--train.out_dir={out}", *TINY_GEN]
    launch("train_gen", [*args, "--train.steps=3", "--train.stop_at=2"], 2, tmp_path, 120)
    ranks = read_hashes(out, 2)
    assert sorted(ranks) == [0, 1] and all(r["world"] == 2 for r in ranks.values())
    assert ranks[0]["hash"] == ranks[1]["hash"], "ranks diverged: gradients were not synced"
    ckpt2 = checkpoint.latest(out)
    assert ckpt2 is not None and ckpt2.name == "step_00000002", ckpt2
    saved = {"trainable": checkpoint.load_weights(ckpt2, "trainable")}
    saved["ema"] = checkpoint.load_weights(ckpt2, "ema")
    assert weights_hash(saved) == ranks[0]["hash"], "checkpoint differs from rank 0's weights"
    assert checkpoint.load_train_state(ckpt2)["position"] == 2 * 4  # steps x global batch
    assert not (out / "final").exists()  # stopped at 2 of 3 steps

    log = launch("train_gen", [*args, "--train.steps=3"], 1, tmp_path, 120)
    assert f"resumed from {ckpt2} at step 2" in log
    ckpt3 = checkpoint.latest(out)
    assert ckpt3 is not None and ckpt3 != ckpt2
    assert checkpoint.load_train_state(ckpt3)["position"] == 8 + 4
    after = checkpoint.load_weights(ckpt3, "trainable")
    changed = [k for k, v in after.items() if not v.equal(saved["trainable"][k])]
    assert changed and all(v.isfinite().all() for v in after.values())
    assert (out / "final" / "generator.safetensors").is_file()
    assert read_hashes(out, 3)[0]["world"] == 1


def test_stage0_two_processes(tiny_backbone_dir, tmp_path):
    out = tmp_path / "mllm"
    args = [f"--model.path={tiny_backbone_dir}", f"--train.out_dir={out}", "--train.steps=3"]
    args += ["--train.stop_at=2", "--train.batch_size=4", "--train.warmup_steps=1"]
    launch("train_mllm", args, 2, tmp_path, 120)
    ranks = read_hashes(out, 2)
    assert sorted(ranks) == [0, 1] and ranks[0]["hash"] == ranks[1]["hash"]


@pytest.mark.parametrize("kind", ["webdataset", "hf"])
def test_two_processes_train_from_their_own_shards(shared_data, tiny_backbone_dir, tmp_path, kind):
    from tools.make_shards import folder_records, write_parquet, write_shards
    from unimodal.data import prepare_emoji_folder

    emoji = shared_data / "noto-emoji"
    folder = prepare_emoji_folder(
        emoji / "noto-emoji-png72.tar", emoji / "captions.jsonl", tmp_path / "folder", limit=16
    )
    records = folder_records(folder)
    chunks = [records[i : i + 4] for i in range(0, 16, 4)]  # four shards of four records
    if kind == "webdataset":
        names = [p.name for p in write_shards(records, tmp_path / "data", 4)]
    else:
        names = [write_parquet(c, tmp_path / "data" / f"part-{i}.parquet").name
                 for i, c in enumerate(chunks)]  # fmt: skip
    captions = {name: {t for _, _, t in c} for name, c in zip(names, chunks, strict=True)}
    out = tmp_path / "gen"
    args = [f"--model.path={tiny_backbone_dir}", f"--train.out_dir={out}", *TINY_GEN]
    args += [f"--data.kind={kind}", f"--data.root={tmp_path / 'data'}", "--train.steps=2"]
    launch("train_gen", args, 2, tmp_path, 180)
    assert (out / "final" / "generator.safetensors").is_file()
    taken = {}
    for r in (0, 1):
        rows = [json.loads(x) for x in (out / "taken" / f"rank{r}.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all(len(row["texts"]) == 2 for row in rows)  # 2 steps x 2
        assert rows[0]["shards"] == names[r::2]  # rank r: shards r, r + 2
        own = set().union(*(captions[s] for s in rows[0]["shards"]))
        taken[r] = [t for row in rows for t in row["texts"]]
        assert set(taken[r]) <= own, f"rank {r} read a record of another rank's shards"
    assert not set(taken[0]) & set(taken[1]) and len(set(taken[0] + taken[1])) == 8


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2:])
