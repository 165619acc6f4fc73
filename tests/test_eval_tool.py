"""The eval front door: argument errors and the judge suites on the tiny backbone."""

import json

import pytest

from tools import eval as eval_tool


def test_pairs_suite_on_a_preference_file(tmp_path, tiny_backbone_dir):
    data = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": "2 + 2 = ?", "chosen": "4", "rejected": "5", "domain": "math"},
        {"prompt": "Say hi", "chosen": "hi", "rejected": "no", "domain": "chat"},
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "report.json"
    report = eval_tool.main(
        [
            "--suite",
            "pairs",
            "--model",
            str(tiny_backbone_dir),
            "--data",
            str(data),
            "--max-new-tokens",
            "4",
            "--out",
            str(out),
        ]
    )
    assert json.loads(out.read_text())["suite"] == "pairs"
    assert 0.0 <= report["overall"]["accuracy"] <= 1.0


def test_missing_data_and_model_are_clear_errors(tmp_path, tiny_backbone_dir):
    with pytest.raises(SystemExit, match="--data"):
        eval_tool.main(["--suite", "pairs", "--model", str(tiny_backbone_dir)])
    with pytest.raises(SystemExit):
        eval_tool.main(["--suite", "vqa", "--model", str(tmp_path / "nope")])


def test_out_that_is_not_a_json_path_is_refused_before_work(tmp_path, tiny_backbone_dir, capsys):
    for bad in (tmp_path / "report", tmp_path):  # no suffix (collides with the image folder)
        with pytest.raises(SystemExit):
            eval_tool.main(["--suite", "vqa", "--model", str(tiny_backbone_dir), "--out", str(bad)])  # fmt: skip
        assert "--out: a JSON file path" in capsys.readouterr().err


def test_cruxeval_suite_through_the_executor(tmp_path, tiny_backbone_dir, shared_data):
    out = tmp_path / "crux.json"
    report = eval_tool.main(
        [
            "--suite",
            "cruxeval",
            "--model",
            str(tiny_backbone_dir),
            "--n",
            "2",
            "--data",
            str(shared_data / "cruxeval" / "cruxeval.jsonl"),
            "--max-new-tokens",
            "8",
            "--out",
            str(out),
        ]
    )
    assert set(report["rows"]) == {"CRUXEval-O", "CRUXEval-I"}
    assert json.loads(out.read_text())["suite"] == "cruxeval"
