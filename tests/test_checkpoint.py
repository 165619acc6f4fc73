import os

import pytest
import torch

from unimodal import checkpoint


def test_atomic_save_keep_and_load(tmp_path):
    w = {"trainable": {"a": torch.arange(4.0), "b": torch.ones(2, 2)}}
    for step in (1, 2, 3):
        checkpoint.save(
            tmp_path, step, w, {"step": step, "rng": checkpoint.rng_state()}, "x = 1\n", keep=2
        )
    names = [p.name for p in checkpoint.list_checkpoints(tmp_path)]
    assert names == ["step_00000002", "step_00000003"]
    last = checkpoint.latest(tmp_path)
    assert torch.equal(checkpoint.load_weights(last, "trainable")["a"], torch.arange(4.0))
    assert checkpoint.load_train_state(last)["step"] == 3
    with pytest.raises(FileNotFoundError, match="no 'ema' weights"):
        checkpoint.load_weights(last, "ema")


def test_interrupted_save_leaves_last_good_checkpoint(tmp_path, monkeypatch):
    w = {"trainable": {"a": torch.zeros(3)}}
    checkpoint.save(tmp_path, 1, w, {"step": 1}, "", keep=3)

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", crash)
    with pytest.raises(OSError):
        checkpoint.save(tmp_path, 2, w, {"step": 2}, "", keep=3)
    assert checkpoint.latest(tmp_path).name == "step_00000001"  # the half-written one is ignored
    assert any(p.name.startswith(".tmp_") for p in (tmp_path / "checkpoints").iterdir())


def test_tied_weights_are_saved(tmp_path):
    t = torch.randn(3, 3)
    checkpoint.save(tmp_path, 1, {"m": {"emb": t, "head": t}}, {}, "", keep=1)
    got = checkpoint.load_weights(checkpoint.latest(tmp_path), "m")
    assert torch.equal(got["emb"], got["head"])


def test_rng_state_round_trip():
    import random

    s = checkpoint.rng_state()
    a = (random.random(), torch.rand(2))
    checkpoint.set_rng_state(s)
    b = (random.random(), torch.rand(2))
    assert a[0] == b[0] and torch.equal(a[1], b[1])
    assert os.getpid() > 0
