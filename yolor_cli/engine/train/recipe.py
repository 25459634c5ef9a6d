"""How a run optimises (``--optimizer auto|sgd|adam|adamw``), decided once and kept for ``--resume``.

YOLOR's recipe (SGD with Nesterov momentum at lr0 0.01, a nominal batch of 64 reached by gradient
accumulation, 3 warmup epochs of at least 100 iterations) is built for 300 epochs on COCO. A short
run on a small data set makes too few optimiser steps for it: 168 images at batch 16 for 30 epochs
are 330 batches, about 80 steps of 64, a third of them in warmup. ``auto`` follows Ultralytics'
``optimizer=auto`` for the threshold: YOLOR's recipe from :data:`AUTO_SGD_MIN_ITERATIONS` iterations
on; below, AdamW at :data:`AUTO_ADAMW_LR` with a step per batch and YOLOR's warmup, the values that
learned best where we measured (benchmarks/README.md#peer-train and #demo).

What the user gives wins over auto's choices: ``--optimizer sgd|adam|adamw`` (then the hyp's lr0
and momentum, a nominal batch of 64, YOLOR's warmup: the recipe of earlier versions),
``--nominal-batch-size``, and, for the long-run SGD recipe, the lr0, momentum and warmup bias lr of
a ``--hyp`` file. The resolved :class:`Recipe` is stored in opt.yaml and the checkpoints, so a
resumed run repeats it exactly. No torch here: the command
line reads the choices from this module.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yolor_cli.engine.errors import YolorError

if TYPE_CHECKING:  # the config module pulls in torch (through the model package); the CLI imports this one
    from yolor_cli.engine.config import Hyp

NOMINAL_BATCH_SIZE = 64  # YOLOR's nominal batch, reached by gradient accumulation
WARMUP_MIN_ITERATIONS = 100  # the official 1000 is longer than whole runs on small datasets
OPTIMIZERS = ("sgd", "adam", "adamw")  # what optim.build_optimizer builds
OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}  # as torch spells them, for messages
AUTO = "auto"
OPTIMIZER_CHOICES = (AUTO, *OPTIMIZERS)
# Ultralytics' optimizer=auto threshold (ultralytics/engine/trainer.py, build_optimizer): SGD above
# 10,000 iterations, AdamW below. Ultralytics counts optimiser steps at its nominal batch of 64; we
# count batches (epochs x ceil(images / batch)), since auto's AdamW makes a step per batch.
AUTO_SGD_MIN_ITERATIONS = 10_000
# Auto's AdamW learning rate, by measurement: on the photo set and the demo, lr 0.002 with YOLOR's
# warmup learned better than Ultralytics' class-fitted lr with its short warmup
# (benchmarks/README.md#peer-train, #demo). Momentum (beta1) and the warmup bias lr are the hyp's.
AUTO_ADAMW_LR = 0.002
# Auto's scale augmentation for short runs (images scaled by 1 +- this): 0.5 (the demo hyp's) rather
# than YOLOR's 0.9, because a short run sees too few images to learn from objects shrunk to a tenth
# (benchmarks/README.md#peer-train). A --hyp keeps its own.
AUTO_SHORT_SCALE = 0.5
# YOLOR's SGD values (the official hyp.scratch.640.yaml), used by auto's long-run recipe unless --hyp is given.
YOLOR_LR0 = 0.01
YOLOR_MOMENTUM = 0.937


@dataclass(frozen=True)
class Recipe:
    """The optimisation of one run, as resolved: what the trainer builds and the run header shows."""

    optimizer: str  # one of OPTIMIZERS, never auto
    lr0: float
    momentum: float  # SGD momentum / Adam(W) beta1
    warmup_bias_lr: float
    nominal_batch_size: int
    warmup_iterations: int
    iterations: int  # batches of the whole run: epochs x ceil(train images / batch)
    batch_size: int
    auto: bool  # decided by --optimizer auto
    reason: str
    scale: float | None = None  # the scale augmentation's range when auto sets it; None: the hyp's

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """The recipe stored in opt.yaml or a checkpoint (fields added later take their defaults)."""
        fields = dataclasses.fields(cls)
        return cls(**{f.name: values[f.name] for f in fields if f.name in values or f.default is dataclasses.MISSING})

    def applied_to(self, hyp: Hyp) -> Hyp:
        """The hyperparameters the run trains with (written to the run's hyp.yaml)."""
        scale = hyp.scale if self.scale is None else self.scale
        return dataclasses.replace(
            hyp, lr0=self.lr0, momentum=self.momentum, warmup_bias_lr=self.warmup_bias_lr, scale=scale
        )

    def header(self) -> str:
        """The run header's line: "optimizer auto → AdamW lr 0.002, no accumulation: 330 iterations, warmup 100"."""
        name = OPTIMIZER_NAMES[self.optimizer]
        chosen = f"optimizer auto → {name}" if self.auto else f"optimizer {name}"
        if accumulation_steps(self.batch_size, self.nominal_batch_size) == 1:
            batching = "no accumulation"
        else:
            batching = f"nominal batch {self.nominal_batch_size}"
        yolor = " (YOLOR recipe)" if self.auto and self.optimizer == "sgd" else ""
        scale = "" if self.scale is None else f", scale {self.scale:g}"
        return (
            f"{chosen} lr {self.lr0:.3g}, {batching}{scale}{yolor}: {self.iterations:,} iterations, "
            f"warmup {self.warmup_iterations:,}"
        )


def accumulation_steps(batch_size: int, nominal: int = NOMINAL_BATCH_SIZE) -> int:
    """Batches per optimiser step to reach the nominal batch."""
    return max(round(nominal / batch_size), 1)


def yolor_warmup_iterations(warmup_epochs: float, batches_per_epoch: int, epochs: int) -> int:
    """YOLOR's warmup: the hyp's epochs, at least :data:`WARMUP_MIN_ITERATIONS`, at most half the run."""
    wanted = max(round(warmup_epochs * batches_per_epoch), WARMUP_MIN_ITERATIONS)
    return min(wanted, max(1, batches_per_epoch * epochs // 2))


def decide_recipe(
    optimizer: str,
    *,
    epochs: int,
    train_images: int,
    batch_size: int,
    hyp: Hyp,
    hyp_given: bool = False,
    nominal_batch_size: int | None = None,
) -> Recipe:
    """The recipe for a run of ``epochs`` over ``train_images`` at ``batch_size`` (total over processes).

    ``hyp_given``: the hyp was chosen by the user, so its lr0, momentum and warmup bias lr win over
    auto's SGD values (auto's AdamW keeps its own: the hyps' values are SGD's);
    ``nominal_batch_size`` (None: not given) wins over auto's choice of accumulation.
    """
    if optimizer not in OPTIMIZER_CHOICES:
        raise YolorError(f"unknown optimizer {optimizer!r}", hint=f"choose one of {', '.join(OPTIMIZER_CHOICES)}")
    batches = math.ceil(train_images / batch_size)
    iterations = epochs * batches
    common = {"iterations": iterations, "batch_size": batch_size}
    if optimizer != AUTO:
        return Recipe(
            optimizer=optimizer,
            lr0=hyp.lr0,
            momentum=hyp.momentum,
            warmup_bias_lr=hyp.warmup_bias_lr,
            nominal_batch_size=nominal_batch_size or NOMINAL_BATCH_SIZE,
            warmup_iterations=yolor_warmup_iterations(hyp.warmup_epochs, batches, epochs),
            auto=False,
            reason=f"--optimizer {optimizer}",
            **common,
        )
    if iterations >= AUTO_SGD_MIN_ITERATIONS:
        return Recipe(
            optimizer="sgd",
            lr0=hyp.lr0 if hyp_given else YOLOR_LR0,
            momentum=hyp.momentum if hyp_given else YOLOR_MOMENTUM,
            warmup_bias_lr=hyp.warmup_bias_lr,
            nominal_batch_size=nominal_batch_size or NOMINAL_BATCH_SIZE,
            warmup_iterations=yolor_warmup_iterations(hyp.warmup_epochs, batches, epochs),
            auto=True,
            reason=f"{iterations:,} iterations >= {AUTO_SGD_MIN_ITERATIONS:,}: YOLOR's recipe",
            **common,
        )
    # The hyp's lr0 is an SGD value in every bundled hyp but the demo's (0.01: 5x auto's), so auto's
    # AdamW keeps its measured lr; --optimizer adamw takes the hyp's.
    return Recipe(
        optimizer="adamw",
        lr0=AUTO_ADAMW_LR,
        momentum=hyp.momentum,
        warmup_bias_lr=hyp.warmup_bias_lr,
        nominal_batch_size=nominal_batch_size or batch_size,
        scale=None if hyp_given else AUTO_SHORT_SCALE,
        warmup_iterations=yolor_warmup_iterations(hyp.warmup_epochs, batches, epochs),
        auto=True,
        reason=(
            f"{iterations:,} iterations < {AUTO_SGD_MIN_ITERATIONS:,}: AdamW with a step per batch "
            f"(lr {AUTO_ADAMW_LR} as measured{'; the --hyp lr0 is for SGD' if hyp_given else ''})"
        ),
        **common,
    )
