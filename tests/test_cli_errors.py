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
