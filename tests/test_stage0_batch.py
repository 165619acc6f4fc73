"""Stage-0 step levers: target-only logits and the vision probe."""

import torch

from unimodal.backbone import Backbone
from unimodal.stage0 import Stage0Data
from unimodal.stage0_batch import step_losses


def _batch():
    data = Stage0Data(0, 32, {"vqa": 2.0, "caption": 1.0, "code": 1.0}, chunk_chars=200)
    batch = [data[i] for i in range(12)]
    assert {e.kind for e in batch} == {"vqa", "caption", "code"}
    return batch


def test_target_only_logits_leave_the_losses_unchanged(tiny_backbone_dir):
    bb = Backbone.from_pretrained(tiny_backbone_dir)
    bb.model.eval()
    batch = _batch()
    base = step_losses(bb, bb, batch, "cpu")
    got = step_losses(bb, bb, batch, "cpu", targets_only=True)
    assert set(got) == set(base) and {"loss_vqa", "loss_code"} < set(base)
    for k in base:
        torch.testing.assert_close(got[k], base[k], rtol=1e-4, atol=1e-4)


def test_cell_labels_name_the_object_under_each_cell_centre():
    from unimodal.data import Obj, Scene
    from unimodal.vision_probe import N_CLASSES, cell_labels, object_class

    # a large red square in the top-left quarter, a small blue circle near the bottom right
    scene = Scene(
        (Obj("square", "red", "large", 0.25, 0.25), Obj("circle", "blue", "small", 0.8, 0.8))
    )
    got = cell_labels(scene, 4, 4).view(4, 4)
    red, blue = object_class("red", "square"), object_class("blue", "circle")
    assert got[:2, :2].eq(red).all() and got[3, 3] == blue
    assert int((got == 0).sum()) == 16 - 4 - 1 and 0 < max(red, blue) < N_CLASSES


def test_probe_loss_reaches_the_vision_tower(tiny_backbone_dir):
    from unimodal.vision_probe import TokenProbe

    bb = Backbone.from_pretrained(tiny_backbone_dir)
    probe = TokenProbe(bb.hidden_size)
    batch = _batch()
    out = step_losses(bb, bb, batch, "cpu", True, probe=probe, probe_weight=1.0)
    plain = step_losses(bb, bb, batch, "cpu", True)
    assert float(out["loss_probe"].detach()) > 1.0  # ~log(25) for a fresh head
    torch.testing.assert_close(out["loss"], plain["loss"] + out["loss_probe"])
    torch.autograd.backward(out["loss_probe"])
    tower = bb.model.model.visual.patch_embed.proj.weight
    assert tower.grad is not None and tower.grad.abs().sum() > 0
    assert probe.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in bb.model.lm_head.parameters())


def test_the_default_stage0_config_uses_the_levers_and_checks_them():
    import pytest

    from tools.train_mllm import CONFIG
    from unimodal.config import load_config
    from unimodal.presets import PRESETS

    cfg = load_config(CONFIG, [])
    assert cfg.train.targets_only and cfg.train.probe_weight > 0
    assert PRESETS[cfg.model.preset].answer_words
    with pytest.raises(Exception, match="probe_weight"):
        load_config(CONFIG, ["--train.probe_weight=-1"])
