"""A short training run in its own process, for tests/test_faults.py to kill with SIGKILL and resume.

    python tests/fault_run.py CHECKPOINT_DIR OUT.npz [--model linear|resnet] [--resume]
        [--pause-in-epoch E | --pause-in-write E] [--marker P]

Trains ``CONFIGS[model]`` (3 epochs of 10 steps on synthetic data) with a checkpoint in
CHECKPOINT_DIR, and saves the final state and the losses to OUT.npz. ``linear`` is the
linear model; ``resnet`` is the resnet's architecture at widths 4 and 8, with image shifts
(:data:`TINY_RESNET`): batch-norm state carried through the steps, and a random shift
drawn in every step.
``--pause-in-epoch E`` stops in the middle of epoch E (after its 5th step has finished),
``--pause-in-write E`` in the middle of writing the checkpoint of epoch E (half of the
file written and flushed to the temporary file): the run creates the file ``--marker``
and sleeps there until the test kills it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

from convgrad import files, models, train

CONFIGS = {
    name: train.TrainConfig(model=name, epochs=3, batch_size=16, lr=1e-3, seed=5) for name in ("linear", "resnet")
}
TINY_RESNET = models.make_resnet("NHWC", 4, ((4, 1), (8, 2)), shift=1)
STEPS_PER_EPOCH = 10
BATCH_SIZE = 16


def dataset() -> train.Dataset:
    return train.synthetic_dataset(STEPS_PER_EPOCH * BATCH_SIZE, 32, seed=2)


def pause(marker: Path) -> None:
    marker.write_text("paused\n")
    time.sleep(600)  # the test kills the process here
    raise SystemExit("fault_run: not killed")


def pause_in_epoch(epoch: int, marker: Path) -> None:
    """Make ``train.train``'s steps pause once step 5 of ``epoch`` has finished."""
    make_step = train.make_step
    target, count = (epoch - 1) * STEPS_PER_EPOCH + 5, [0]

    def paused_make_step(*args, **kwargs):
        step = make_step(*args, **kwargs)

        def counted(*step_args):
            state, loss = step(*step_args)
            count[0] += 1
            if count[0] == target:
                jax.block_until_ready(state)
                pause(marker)
            return state, loss

        return counted

    train.make_step = paused_make_step


def pause_in_write(epoch: int, marker: Path) -> None:
    """Pause the atomic write of the checkpoint of ``epoch`` half-way (the ``epoch``-th write of the run)."""
    writes = [0]

    def halfway(temporary: Path) -> None:
        writes[0] += 1
        if writes[0] == epoch:
            pause(marker)

    files._halfway_hook = halfway


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", choices=sorted(CONFIGS), default="linear")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--pause-in-epoch", type=int)
    parser.add_argument("--pause-in-write", type=int)
    parser.add_argument("--marker", type=Path)
    args = parser.parse_args()
    if args.pause_in_epoch:
        pause_in_epoch(args.pause_in_epoch, args.marker)
    if args.pause_in_write:
        pause_in_write(args.pause_in_write, args.marker)
    models.MODELS["resnet"] = TINY_RESNET
    state, report = train.train(
        CONFIGS[args.model], dataset(), checkpoint_dir=args.checkpoint_dir, resume=args.resume, progress=False
    )
    out = {f"state{jax.tree_util.keystr(path)}": leaf for path, leaf in jax.tree_util.tree_leaves_with_path(state)}
    out["train_loss"] = np.array([r["train_loss"] for r in report["history"]])
    out["test_accuracy"] = np.array([r["test_accuracy"] for r in report["history"]])
    np.savez(args.out, **out)


if __name__ == "__main__":
    main()
