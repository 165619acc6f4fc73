"""`python -m benchmarks.proof --state FILE [--mini] PART...`: run measurement parts in order.

Started by `benchmarks.proof.supervise.run_parts` (not meant to be run by hand). Before each part
the state file names it as running; after it, its result joins the state's `results`. A part
that raises is recorded as failed with the end of its traceback, and the process exits, so the
parts after it get a fresh process (a broken CUDA context never leaks into them).

`PROOF_FAULT="part=crash|hang|raise,..."` replaces a part by a fault, for the tests of the
supervisor (a crash, an overrun, an exception must each cost that part only).
"""

from __future__ import annotations

import argparse
import os
import time
import traceback
from pathlib import Path

from benchmarks.proof import env, speed
from benchmarks.proof.supervise import read_json, write_json

PARTS = {"env": env.run, **{f"speed.{k}": fn for k, fn in speed.PARTS.items()}}


def fault(kind: str):
    def run(mini: bool) -> dict:
        if kind == "crash":
            os._exit(3)
        if kind == "hang":
            time.sleep(3600)
        raise RuntimeError("injected fault")

    return run


def parts() -> dict:
    faults = dict(f.split("=", 1) for f in os.environ.get("PROOF_FAULT", "").split(",") if "=" in f)
    return PARTS | {name: fault(kind) for name, kind in faults.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.proof")
    ap.add_argument("--state", type=Path, required=True)
    ap.add_argument("--mini", action="store_true")
    ap.add_argument("parts", nargs="+", choices=sorted(PARTS))
    args = ap.parse_args(argv)
    state = read_json(args.state) or {"results": {}}
    for part in args.parts:
        state["running"] = part
        write_json(args.state, state)
        print(f"\n## proof part {part}", flush=True)
        start = time.perf_counter()
        try:
            result = parts()[part](args.mini)
            failed = False
        except Exception:
            result = {"status": "failed", "error": traceback.format_exc()[-2000:]}
            failed = True
            traceback.print_exc()
        result["wall_s"] = round(time.perf_counter() - start, 1)
        state["results"][part] = result
        state["running"] = ""
        write_json(args.state, state)
        if failed:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
