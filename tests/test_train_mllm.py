"""Two-step smoke run of stage 0 on the tiny preset: writes, resumes, exports, evaluates."""

import json

import pytest
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
        "--eval.every=1",
        "--eval.every_samples=4",
        "--train.log_every=1",
    ]
    report = main(load_config(CONFIG, args + ["--train.steps=2"]))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(0 <= r["vqa/overall"] <= 1 for r in rows)
    assert {"loss_vqa", "loss_caption", "loss_code"} & set(rows[0])
    ckpts = checkpoint.list_checkpoints(out)
    assert [c.name for c in ckpts] == ["step_00000001", "step_00000002"]
    state = checkpoint.load_train_state(ckpts[-1])
    assert state["step"] == 2 and state["position"] == 6
    assert "model" in str(sorted(p.name for p in ckpts[-1].iterdir()))
    assert checkpoint.load_weights(ckpts[-1], "probe")  # the default's vision probe resumes too
    assert "\nbatch_size = 3\n" in (ckpts[-1] / "config.toml").read_text()
    assert set(report["per_type"]) <= {"color", "count", "shape", "position"}
    saved = json.loads((out / "eval_vqa.json").read_text())
    assert saved["suite"] == "vqa"
    assert saved["code_lm"]["tokens"] > 100 and 0 < saved["code_lm"]["loss"] < 20
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


def test_first_steps_set_the_phase_in_samples_and_words_get_the_backbone_pool(tiny_backbone_dir):
    """`data.first_steps` counts optimizer steps; the data counts samples (`loop.take`)."""
    from tools.train_mllm import CONFIG, make_data
    from unimodal.backbone import Backbone

    tok = Backbone.from_pretrained(tiny_backbone_dir).tokenizer
    args = ["--data.first_steps=3", "--train.batch_size=4", "--train.grad_accum=2"]
    cfg = load_config(CONFIG, ["--config", "mllm_copy_cpu", *args])
    data = make_data(cfg, tok)
    assert data.first_samples == 24 and data.first[0] == ["words"] and data.words
    assert {data[i].kind for i in range(24)} == {"words"}
    assert {data[i].kind for i in range(24, 120)} > {"vqa"}
    with pytest.raises(ValueError, match="first_steps"):
        load_config(CONFIG, ["--config", "mllm_copy_cpu", "--data.first_steps=-1"])


def test_model_stage0_trains_the_backbone_once_then_reuses_it(tmp_path, tiny_backbone_dir):
    """`model.stage0`: the named stage-0 run is trained (its own process) when its final folder
    is missing, reused when present, and a failed stage 0 is one clear error."""
    from pathlib import Path

    import pytest

    from unimodal.config import ConfigError
    from unimodal.train.chain import resolve_stage0
    from unimodal.train.config import BackboneConfig

    tool = Path(__file__).resolve().parents[1] / "tools" / "train_mllm.py"
    out = tmp_path / "s0"
    toml = tmp_path / "s0.toml"
    toml.write_text(
        f'[model]\npath = "{tiny_backbone_dir}"\n[train]\nout_dir = "{out}"\nsteps = 1\n'
        "batch_size = 2\nwarmup_steps = 1\n[eval]\nvqa_samples = 0\n"
    )
    m = BackboneConfig(stage0=str(toml))
    resolve_stage0(m, tool)
    assert Path(m.path) == (out / "final").resolve()
    assert (out / "final" / "config.json").is_file()
    stamp = (out / "final" / "config.json").stat().st_mtime_ns
    again = BackboneConfig(stage0=str(toml))
    resolve_stage0(again, tool)  # reused: not trained a second time
    assert again.path == m.path
    assert (out / "final" / "config.json").stat().st_mtime_ns == stamp
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'[model]\npath = "{tmp_path / "missing"}"\n[train]\nout_dir = "{tmp_path / "b"}"\n'
    )
    with pytest.raises(ConfigError, match="stage 0 .* failed"):
        resolve_stage0(BackboneConfig(stage0=str(bad)), tool)
    given = BackboneConfig(stage0=str(bad), path=str(tiny_backbone_dir))
    resolve_stage0(given, tool)  # an explicit path wins: nothing is trained
    assert given.path == str(tiny_backbone_dir)


def test_held_out_code_modules_are_never_trained_on():
    from unimodal.presets import CODE_MODULES, HELDOUT_CODE_MODULES, stdlib_code
    from unimodal.stage0 import heldout_code, load_code_corpus

    assert not set(CODE_MODULES) & set(HELDOUT_CODE_MODULES)
    train = set(load_code_corpus(None, 300))
    held = heldout_code(300)
    assert held and not train & set(held)
    assert "def dedent" in "".join(held) and "def dedent" not in "".join(stdlib_code())
