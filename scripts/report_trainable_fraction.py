"""Trainable-parameter fraction of BloodCellSAM2 (paper: about 0.8 %) for both training stages.

Builds the PEFT SAM2 with random weights (the count does not depend on the weights), applies
the stage-1 policy (LoRA + decoder adapters + density branch) and the stage-2 policy (plus the
memory encoder) and prints trainable / total parameters per stage and per part.

    python scripts/report_trainable_fraction.py [--size large] [--image-size 1024] [--lora-rank 8] [--adapter-dim 32]
"""

from __future__ import annotations

import argparse
import logging

from monaiseg.networks import (
    BLOODCELL_STAGE1_TRAINABLE,
    BLOODCELL_STAGE2_TRAINABLE,
    build_peft_sam2,
    freeze_except,
    parameter_report,
)

PARTS = {
    "LoRA (q, k)": lambda n: ".lora_" in n,
    "decoder adapters": lambda n: ".adapter." in n,
    "density branch": lambda n: n.startswith("density_encoder."),
    "memory encoder": lambda n: n.startswith("memory_encoder."),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="large", help="sam2.1 size: tiny, small, base_plus, large")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--lora-blocks", type=int, default=4)
    parser.add_argument("--adapter-dim", type=int, default=32)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    model = build_peft_sam2(
        args.size,
        args.image_size,
        lora_rank=args.lora_rank,
        lora_alpha=2 * args.lora_rank,
        lora_blocks=args.lora_blocks,
        adapter_dim=args.adapter_dim,
    )
    print(
        f"sam2.1_hiera_{args.size} at {args.image_size}: LoRA rank {args.lora_rank} on q,k of the last "
        f"{args.lora_blocks} blocks, adapter dim {args.adapter_dim}, density branch"
    )
    for part, selects in PARTS.items():
        print(f"  {part:<18} {sum(p.numel() for n, p in model.named_parameters() if selects(n)):>12,}")
    for stage, policy in (
        ("stage 1 (static)", BLOODCELL_STAGE1_TRAINABLE),
        ("stage 2 (video)", BLOODCELL_STAGE2_TRAINABLE),
    ):
        report = parameter_report(freeze_except(model, policy))
        print(
            f"{stage:<17} trainable {report['trainable']:>10,} / {report['total']:,} = "
            f"{report['trainable_percent']:.3f} %"
        )


if __name__ == "__main__":
    main()
