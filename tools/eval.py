"""The single front door to evaluation suites; writes a JSON report and prints a table.

python tools/eval.py --suite vqa --model runs/mllm_tiny/final
python tools/eval.py --suite geneval-shapes --model runs/gen_tiny/final [--n 32]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def run_vqa(args: argparse.Namespace) -> tuple[dict, str]:
    from evals.vqa import evaluate_vqa, vqa_table
    from unimodal.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(args.model)
    report = evaluate_vqa(pipe.backbone, args.n or 200, args.image_size, args.batch_size)
    return report, vqa_table(report)


def run_geneval_shapes(args: argparse.Namespace) -> tuple[dict, str]:
    from evals.geneval_shapes import evaluate_geneval_shapes, geneval_table
    from unimodal.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(args.model)
    if pipe.generator is None:
        raise SystemExit(
            f"error: {args.model} has no generator (train one with tools/train_gen.py)"
        )
    out = Path(args.out).with_suffix("") if args.out else Path(args.model) / "geneval_shapes"
    report = evaluate_geneval_shapes(
        pipe.generator, out, args.n or 32, args.seed, args.batch_size, args.steps, args.guidance
    )
    return report, geneval_table(report)


def run_edit(args: argparse.Namespace) -> tuple[dict, str]:
    from evals.edit import edit_table, evaluate_edit
    from unimodal.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(args.model)
    if pipe.generator is None or not pipe.generator.cfg.edit:
        raise SystemExit(
            f"error: {args.model} is not an editing model (train with gen.edit = true)"
        )
    out = Path(args.model) / "edit"
    report = evaluate_edit(
        pipe.generator, out, args.n or 100, args.batch_size, args.steps, args.guidance
    )
    return report, edit_table(report)


def _judge_backbone(args: argparse.Namespace):
    """The backbone with the judge head from --model (a head folder) or none (a backbone)."""
    from reasoning.rm_r1.judge import load_head
    from unimodal.backbone import Backbone

    model = Path(args.model)
    if (model / "judge_lora.safetensors").is_file():
        if not args.backbone:
            raise SystemExit(f"error: {model} holds a judge head; pass --backbone FOLDER as well")
        backbone = Backbone.from_pretrained(args.backbone).freeze()
        spec = load_head(backbone, model)
        return backbone, spec.name, spec.style
    return Backbone.from_pretrained(model).freeze(), None, "instruct"


def run_rm_bench(args: argparse.Namespace) -> tuple[dict, str]:
    from evals.rm_suites import evaluate_rm_bench, rm_table

    if not args.data:
        raise SystemExit("error: --data FOLDER is required (RM-Bench *_filtered.json files)")
    backbone, head, style = _judge_backbone(args)
    report = evaluate_rm_bench(
        backbone,
        args.data,
        head,
        style,
        None,
        args.n or None,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    return report, rm_table(report)


def run_pairs(args: argparse.Namespace) -> tuple[dict, str]:
    from evals.rm_suites import evaluate_pairs, rm_table

    if not args.data:
        raise SystemExit("error: --data FILE.jsonl is required (preference pairs)")
    backbone, head, style = _judge_backbone(args)
    report = evaluate_pairs(
        backbone,
        args.data,
        args.n or None,
        head=head,
        style=style,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    return report, rm_table(report)


def _code_backbone(args: argparse.Namespace):
    """A backbone folder, or an AZR run/checkpoint on top of --backbone (its head switched on)."""
    from unimodal.backbone import Backbone

    model = Path(args.model)
    if (model / "config.json").is_file():
        return Backbone.from_pretrained(model).freeze(), None
    if not args.backbone:
        raise SystemExit(f"error: {model} is not a backbone folder; pass --backbone FOLDER too")
    from reasoning.azr.head import load_head

    backbone = Backbone.from_pretrained(args.backbone).freeze()
    return backbone, load_head(backbone, model)


def _code_suite(name: str, static_checks: bool = True, **extra):
    def run(args: argparse.Namespace) -> tuple[dict, str]:
        from evals import code_suites
        from reasoning.executor import Executor

        if not args.data:
            raise SystemExit(f"error: --data is required for {name} (a local JSONL file)")
        backbone, head = _code_backbone(args)
        fn = getattr(code_suites, f"evaluate_{name}")
        kw = dict(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, **extra)
        if args.samples > 1:
            kw.update(n=args.samples, ks=(1, args.samples), temperature=args.temperature)
        with Executor(workers=2, timeout=2.0, static_checks=static_checks) as ex:
            with backbone.lora(head):
                report = fn(backbone, ex, args.data, args.n, **kw)
        return report, code_suites.table(report)

    return run


SUITES: dict[str, Callable[[argparse.Namespace], tuple[dict, str]]] = {
    "vqa": run_vqa,
    "geneval-shapes": run_geneval_shapes,
    "edit": run_edit,
    "rm-bench": run_rm_bench,
    "pairs": run_pairs,
    "cruxeval": _code_suite("cruxeval"),
    "cruxeval-nano": _code_suite("cruxeval", nano=True),  # the nano world's scope (evals.nano)
    "humaneval": _code_suite("humaneval", static_checks=False),  # official tests import freely
    "gsm8k": _code_suite("gsm8k"),
}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--suite", required=True, choices=sorted(SUITES))
    ap.add_argument("--model", required=True, help="a folder written by a training tool")
    ap.add_argument("--backbone", default=None, help="backbone folder under a LoRA head")
    ap.add_argument("--data", default=None, help="data file or folder for suites that read one")
    ap.add_argument("--n", type=int, default=0, help="number of items (0: the suite's default)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=1024, help="judge suites")
    ap.add_argument("--samples", type=int, default=1, help="code suites: samples for pass@k")
    ap.add_argument("--temperature", type=float, default=0.8, help="code suites with --samples")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--out", default=None, help="JSON report path (default: MODEL/eval_SUITE.json)")
    args = ap.parse_args(argv)
    if not Path(args.model).is_dir():
        ap.error(f"--model: folder not found: {args.model}")
    if args.out and (Path(args.out).suffix != ".json" or Path(args.out).is_dir()):
        ap.error(f"--out: a JSON file path ending in .json, got {args.out}")
    report, table = SUITES[args.suite](args)
    out = Path(args.out) if args.out else Path(args.model) / f"eval_{args.suite}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(table)
    print(f"report: {out}")
    return report


if __name__ == "__main__":
    main()
