"""Operations one training step dispatches, by the styleseg file that issued them (docs/performance.md).

On a GPU each dispatched operation is (about) one kernel launch, and the small presets are bound by
launches, not arithmetic; this counts them on any machine. `--accelerator` counts what a GPU runs:
every random draw hashed (`training/randomness.py`) and Adam's multi-tensor path (its CUDA default).

    python scripts/step-ops.py --preset viton128 --batch 32 --accelerator --set augment.fixed_p=0.1

(A fresh run's ADA probability starts at 0 and augmentation is skipped; `augment.fixed_p` counts a
step with augmentation, as every step of a run grown from a trained model has.)
"""

from __future__ import annotations

import argparse
import collections
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from styleseg.bench import bench_trainer, final_stage_config
from styleseg.config import build_config


class CountOps(TorchDispatchMode):
    """Counts every dispatched operation under the nearest styleseg frame of the Python stack."""

    def __init__(self):
        super().__init__()
        self.by_file: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        where = "outside styleseg"
        for frame in reversed(traceback.extract_stack(limit=40)):
            if "/styleseg/" in frame.filename:
                where = frame.filename.split("/styleseg/")[-1]
                break
        self.by_file[where] += 1
        return func(*args, **(kwargs or {}))


def use_accelerator_paths(trainer) -> None:
    """Switch the two internals that differ on a GPU; refused loudly if either has been renamed,
    so the counts never silently stay the CPU's."""
    rand = trainer.loss.rand
    groups = [g for opt in (trainer.nets.opt_G, trainer.nets.opt_D) for g in opt.param_groups]
    if not hasattr(rand, "per_sample_from") or not all("foreach" in g for g in groups):
        raise SystemExit("step-ops --accelerator: the draws' per_sample_from or Adam's foreach is gone")
    rand.per_sample_from = float("inf")
    for group in groups:
        group["foreach"] = True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="viton128")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--accelerator", action="store_true", help="count the paths a GPU takes (on the CPU)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()

    torch.set_num_threads(1)
    cfg = final_stage_config(build_config(args.preset, ["dtype=fp32", *args.overrides]), args.batch)
    with bench_trainer(cfg, torch.device("cpu"), samples=max(64, 2 * args.batch)) as trainer:
        if args.accelerator:
            use_accelerator_paths(trainer)
        trainer.train_step()  # first-step set-up is not a step's cost
        interval = max(cfg.optim.r1_interval, 1)
        while trainer.step % interval:
            trainer.train_step()
        path = "accelerator paths" if args.accelerator else "CPU paths"
        for kind in ("R1 step", "plain step"):  # an R1 interval starts with its R1 step
            with CountOps() as count:
                trainer.train_step()
            total = sum(count.by_file.values())
            top = ", ".join(f"{where} {n}" for where, n in count.by_file.most_common(6))
            print(f"{cfg.preset} batch {args.batch}, {path}, {kind}: {total} operations; {top}")


if __name__ == "__main__":
    main()
