"""Two-step smoke run of stage 0 on the tiny preset: writes, resumes, exports, evaluates."""

import json

import torch

from unimodal import checkpoint
from unimodal.config import load_config


def test_stage0_smoke_writes_and_resumes(tmp_path, tiny_backbone_dir, capsys):
    from tools.train_mllm import CONFIG, main

    out = tmp_path / "run"
    args = [
        f"--model.path={tiny_backbone_dir}",
        f"--train.out_dir={out}",
        "--train.batch_size=3",
        "--train.save_every=1",
        "--train.warmup_steps=1",
        "--eval.vqa_samples=4",
    ]
    report = main(load_config(CONFIG, args + ["--train.steps=2"]))
    ckpts = checkpoint.list_checkpoints(out)
    assert [c.name for c in ckpts] == ["step_00000001", "step_00000002"]
    state = checkpoint.load_train_state(ckpts[-1])
    assert state["step"] == 2 and state["position"] == 6
    assert "model" in str(sorted(p.name for p in ckpts[-1].iterdir()))
    assert "\nbatch_size = 3\n" in (ckpts[-1] / "config.toml").read_text()
    assert set(report["per_type"]) <= {"color", "count", "shape", "position"}
    assert json.loads((out / "eval_vqa.json").read_text())["suite"] == "vqa"
    w2 = checkpoint.load_weights(ckpts[-1], "model")

    # resume: the third step starts from step 2's weights and data position
    main(load_config(CONFIG, args + ["--train.steps=3"]))
    assert "resumed from" in capsys.readouterr().out
    last = checkpoint.latest(out)
    assert last.name == "step_00000003"
    assert checkpoint.load_train_state(last)["position"] == 9
    w3 = checkpoint.load_weights(last, "model")
    changed = [k for k in w2 if not torch.equal(w2[k], w3[k])]
    assert changed, "the resumed step did not update any weight"
    assert (out / "final" / "config.json").is_file()


def test_chunk_chars_reaches_the_code_corpus():
    """`data.chunk_chars` was read nowhere (the corpus was always cut at 600 characters)."""
    from tools.train_mllm import CONFIG, make_data

    short = make_data(load_config(CONFIG, ["--data.chunk_chars=120"]))
    long = make_data(load_config(CONFIG, ["--data.chunk_chars=2000"]))
    assert len(short.code) > 3 * len(long.code)
    assert max(len(c) for c in short.code) < max(len(c) for c in long.code)
