"""Put trained LoRA heads into a model folder: one folder, the generator and every head.

    python tools/add_heads.py --model runs/gen_tiny/final --head azr=runs/azr_tiny \\
        --head judge=runs/rm_tiny/rl/final

Each `--head NAME=SOURCE` takes an AZR run or checkpoint folder (tools/train_azr.py), a judge
head folder (tools/train_rm.py's OUT/final, its prompt style kept in head.json) or a PEFT
adapter folder, checks that it fits the model folder's backbone (the folder itself, or the one
its backbone.json names) and writes it to MODEL/heads/NAME/ as a PEFT adapter
(`unimodal.adapters`). `Pipeline.from_pretrained(MODEL)` then attaches every head (chat with
`head="azr"`, `reasoning.rm_r1.judge.with_judge(pipe).judge(...)`) and `tools/serve.py` serves
each as its own model id (`unimodal:azr`, `unimodal:judge`). A head of the same name is
replaced.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reasoning.azr.head import load_head as load_azr_head
from reasoning.rm_r1.judge import load_head as load_judge_head
from unimodal.adapters import check_name, is_adapter, load_adapter, save_adapter
from unimodal.backbone import Backbone, check_model_dir


def backbone_dir(model: Path) -> Path:
    """The backbone folder of a model folder (a generator export names it in backbone.json)."""
    if (model / "backbone.json").is_file():
        return check_model_dir(json.loads((model / "backbone.json").read_text())["path"])
    return check_model_dir(model)


def attach(bb: Backbone, name: str, source: Path) -> tuple[str, dict]:
    """Attach the head in `source` to `bb`; (its adapter name on `bb`, metadata to keep)."""
    if is_adapter(source):
        return name, load_adapter(bb, source, name)
    if (source / "judge_lora.safetensors").is_file():
        spec = load_judge_head(bb, source, name)
        return name, {"kind": "judge", "style": spec.style}
    if (source / "state.json").is_file() or (source / "checkpoints").is_dir():
        return load_azr_head(bb, source), {"kind": "azr"}
    raise FileNotFoundError(
        f"{source}: not an AZR run / checkpoint, a judge head folder or a PEFT adapter folder"
    )


def main(model: Path, heads: list[tuple[str, Path]]) -> list[Path]:
    base = backbone_dir(model)
    written = []
    for name, source in heads:
        bb = Backbone.from_pretrained(base).freeze()  # a fresh one: each head under its own name
        try:
            attached, meta = attach(bb, name, source)
        except ValueError as e:  # LoRA keys that fit no layer of this backbone
            raise SystemExit(
                f"error: head '{name}' from {source} does not fit {base}: {e}"
            ) from None
        out = save_adapter(bb, attached, model / "heads" / name, str(base), meta)
        print(f"head '{name}' from {source} -> {out}")
        written.append(out)
    return written


def parse(argv: list[str]) -> tuple[Path, list[tuple[str, Path]]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="the model folder to add heads to")
    p.add_argument("--head", action="append", default=[], help="NAME=SOURCE (repeatable)")
    args = p.parse_args(argv)
    heads = []
    for h in args.head:
        name, sep, source = h.partition("=")
        if not sep or not source:
            p.error(f"--head {h!r}: expected NAME=SOURCE")
        try:
            heads.append((check_name(name), Path(source)))
        except ValueError as e:
            p.error(str(e))
    if not heads:
        p.error("give at least one --head NAME=SOURCE")
    if not args.model.is_dir():
        p.error(f"--model {args.model}: not a folder")
    return args.model, heads


if __name__ == "__main__":
    try:
        main(*parse(sys.argv[1:]))
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
