"""User errors at the command line are one clear line and exit code 2, not a traceback."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_missing_model_folder_and_bad_metadata(tmp_path):
    r = run(
        "tools/train_gen.py", f"--model.path={tmp_path / 'nope'}", f"--train.out_dir={tmp_path}/o"
    )
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model folder not found") and "Traceback" not in r.stderr

    root = tmp_path / "imgs"
    root.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(root / "a.png")
    (root / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "x"}\n{not json\n')
    r = run(
        "tools/train_gen.py",
        "--data.kind=folder",
        f"--data.root={root}",
        f"--train.out_dir={tmp_path}/o",
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "metadata.jsonl:2" in r.stderr.strip().splitlines()[-1]


def last_error(r: subprocess.CompletedProcess) -> str:
    """The one `error: ...` line of a failed run (no traceback)."""
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    return last


def test_errors_while_the_generator_is_built_are_one_line(tmp_path, tiny_backbone_dir):
    """Settings that only fail against the built decoder / VAE (after the backbone loaded)."""
    common = (f"--model.path={tiny_backbone_dir}", f"--train.out_dir={tmp_path}/o")
    # scale 16 neither divides nor is divided by the 6x6 token grid of 24 px at patch 4
    r = run("tools/train_gen.py", *common, "--gen.resolutions=[8,16,24]")
    assert "queries.scales: scale 16 does not divide the decoder token grid 6x6" in last_error(r)
    r = run("tools/train_gen.py", *common, "--gen.resolutions=[8,16,34]")
    assert "decoder.patch_size: 4 does not divide the latent grid 34x34" in last_error(r)


def test_dc_vae_with_default_resolutions_fails_before_anything_loads(tmp_path):
    """A DC-AE (factor 32) with the pixel-space default resolutions: one line naming a valid
    choice, before the (here missing) backbone and VAE folders are even looked at."""
    r = run(
        "tools/train_gen.py",
        f"--model.path={tmp_path / 'no_backbone'}",
        "--gen.vae.type=dc",
        f"--gen.vae.path={tmp_path / 'no_vae'}",
        f"--train.out_dir={tmp_path}/o",
    )
    line = last_error(r)
    assert "gen.resolutions: 8 px is not a multiple of the VAE factor 32" in line
    assert "--gen.resolutions=[256,512,1024]" in line
