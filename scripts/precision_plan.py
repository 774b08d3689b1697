"""Print, before the workflow's work starts, which precision pretraining and training will use on this machine and
why: bfloat16 pays only where the CPU runs it natively (AVX512-BF16/AMX) and is emulated, many times slower,
elsewhere.

Usage: python scripts/precision_plan.py --pretrain auto --train auto [--gpu-id -1]
"""
import argparse
import sys
from typing import List, Optional


def plan(pretrain: str, train: str, gpu_id: int) -> List[str]:
    """One line per step: the setting, what it resolves to here, and why."""
    from spacy_spanbert import cpu

    if gpu_id >= 0:
        return [f"pretrain: precision {pretrain} on GPU {gpu_id} (auto: bf16, or fp16 without bf16 support)",
                f"train: cpu_bf16 {train} does not apply on GPU {gpu_id} (mixed_precision does)"]
    native = cpu.has_native_bf16()
    lines = []
    for step, setting in (("pretrain", pretrain), ("train", train)):
        value = str(setting).lower()
        uses_bf16 = native if value == "auto" else value in ("bf16", "true")
        name = "precision" if step == "pretrain" else "cpu_bf16"
        choice = "bfloat16" if uses_bf16 else "float32"
        line = f"{step}: {name} {setting} -> {choice}, because {cpu.precision_reason(native)}"
        if uses_bf16 and not native:
            line += f"; WARNING: set {step}'s setting to auto"
        lines.append(line)
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrain", default="auto", help="pretraining precision: fp32 | bf16 | auto")
    p.add_argument("--train", default="auto", help="training cpu_bf16: true | false | auto")
    p.add_argument("--gpu-id", type=int, default=-1)
    args = p.parse_args(argv)
    for line in plan(args.pretrain, args.train, args.gpu_id):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
