"""Write a random-init folder of a published model: its real config with the depth cut, laid out
like the real repo (sharded safetensors + index, tokenizer with the real control-token ids, chat
template, preprocessor and generation configs; SANA / SD3.5 as diffusers pipeline folders with
their VAE in vae/; timm / open_clip encoders as their hub folders). Nothing is downloaded.

    python tools/make_fixture.py --like qwen2.5-vl-3b --layers 2 --out runs/fixtures/vl3b
    python tools/make_fixture.py --like qwen2.5-coder-1.5b --out runs/fixtures/coder
    python tools/make_fixture.py --like sana-600m --out runs/fixtures/sana  # + vae/ (DC-AE)
    python tools/make_fixture.py --like sd3.5-medium --out runs/fixtures/sd35  # + vae/ (KL, f8)
    python tools/make_fixture.py --like dinov2-vitb14 --dtype float32 --out runs/fixtures/dino
    python tools/make_fixture.py --like qwen2-vl-2b --vocab-size 4096 --out DIR  # cheap CI copy

Families: unimodal/fixtures/real.py. Then e.g. `tools/train_gen.py --model.path=runs/fixtures/vl3b
--gen.decoder.pretrained=runs/fixtures/sana --gen.vae.type=dc --gen.vae.path=runs/fixtures/sana`,
or `--gen.align_target=encoder --gen.encoder.path=runs/fixtures/dino` (REPA on DINOv2).
"""

from __future__ import annotations

import argparse
import sys

from unimodal.fixtures import FAMILIES, build_fixture


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--like", required=True, choices=list(FAMILIES))
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=2, help="depth (LM + vision / DiT blocks)")
    ap.add_argument(
        "--vocab-size",
        type=int,
        default=None,
        help="shrink the embedding (control tokens move with the table's end); default: real",
    )
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--max-shard-size", default="200MB")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        out = build_fixture(
            a.like, a.out, a.layers, a.vocab_size, a.dtype, a.max_shard_size, a.seed
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(out)


if __name__ == "__main__":
    main()
