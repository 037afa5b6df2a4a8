"""Does pruning in two steps, with distillation in between, give a better student than pruning
to the final shape at once? (Gradual pruning / a "teacher assistant" between teacher and student.)

Step 1 is an ordinary squeeze into an intermediate pruned shape (``--via``, e.g. every layer at
the final width), distilled for ``--via-epochs``. Step 2 is the same squeeze command as the
one-shot baseline (``--final``), except that the student is carved out of step 1's distilled
student instead of the teacher; the teacher, data, distillation and report are unchanged, so
its report compares directly with the one-shot run of the same ``--final`` arguments.

    PYTHONPATH=src python scripts/gradual_prune_probe.py --teacher runs/teacher-cola \\
        --task cola --data-dir $GLUE --out runs/cola-gradual --seed 43 \\
        --via "--heads 4 --ffn 576" --via-epochs 1 --final "--layers 0,3,5 --heads 4 --ffn 576"

The one-shot baseline is ``squeezebert squeeze ... --construction pruned <final> --seed S
--intermediate-epochs 0``. Session 18 measured CoLA with this script (the intermediate above),
then built the same two steps into ``squeeze`` (``--intermediate-epochs``, default 1: every
layer at the final width); the script stays for trying other intermediates (``--via``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--via", required=True, help="pruning flags of the intermediate student")
    p.add_argument("--via-epochs", type=int, default=1)
    p.add_argument("--final", required=True, help="pruning flags of the final student (as the one-shot run)")
    p.add_argument("--extra", default="", help="further squeeze flags for the final step (e.g. --no-openvino)")
    args = p.parse_args()

    import squeezebert.squeeze as sq
    from squeezebert.checkpoint import load
    from squeezebert.cli import main as cli

    common = ["squeeze", "--teacher", args.teacher, "--task", args.task, "--data-dir", args.data_dir]
    common += ["--construction", "pruned", "--seed", str(args.seed)]
    via_out = args.out / "via"
    if not (via_out / "report.json").exists():
        rc = cli(
            common + shlex.split(args.via)
            + ["--epochs", str(args.via_epochs), "--no-int8", "--no-bf16", "--no-openvino", "--out", str(via_out)]
        )  # fmt: skip
        if rc:
            return rc
    intermediate = load(via_out).model  # the best epoch's checkpoint

    original = sq.construct_student

    def from_intermediate(teacher, spec, calibration):  # noqa: ANN001, ANN202 - the product's signature
        return original(intermediate, spec, calibration)

    sq.construct_student = from_intermediate
    # the product's own two-step pruning off: here the intermediate is step 1's
    final = shlex.split(args.final) + shlex.split(args.extra) + ["--intermediate-epochs", "0"]
    return cli(common + final + ["--out", str(args.out / "final")])


if __name__ == "__main__":
    sys.exit(main())
