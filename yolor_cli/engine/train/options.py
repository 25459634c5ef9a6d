"""The options a training runs with, resolved once and recorded in opt.yaml and every checkpoint,
so that ``--resume`` repeats the run; and the demo profile a run without ``--data`` uses.

:class:`yolor_cli.engine.train.request.TrainRequest` (what the command line asks) resolves into
:class:`TrainOptions` (what the run does).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolor_cli.engine.train.distill import DEFAULT_DISTILL_WEIGHT
from yolor_cli.engine.train.hooks import DEFAULT_CLOSE_MOSAIC
from yolor_cli.engine.train.recipe import AUTO, Recipe

DEMO_CFG = "yolor_csp_tiny"
DEMO_IMAGES = 400
DEMO_VERSION = 1  # bump when the generated demo data changes, so caches are rebuilt
DEMO_HYP = "demo"  # the demo's hyp when none is given: YOLOR's scratch values, lr0 0.002, scale 0.5
# The demo profile, for options the user leaves unset when training on the demo data.
DEMO_DEFAULTS: dict[str, Any] = {"epochs": 10, "batch_size": 8, "img_size": 320}
# The demo's 10-epoch recipe, for a demo run of those 10 epochs: Adam at the demo hyp's lr 0.002, no
# gradient accumulation, mosaic to the end. YOLOR's SGD recipe barely starts learning in 10 epochs, and
# --optimizer auto's AdamW scored a little lower over three seeds, so the demo keeps Adam
# (benchmarks/README.md#demo); a demo run of other --epochs uses auto.
DEMO_RECIPE: dict[str, Any] = {"optimizer": "adam", "nominal_batch_size": 8, "close_mosaic": 0}
# Options of runs saved before --optimizer and --close-mosaic: they resume as they trained.
LEGACY_OPTIONS: dict[str, Any] = {"close_mosaic": 0}


@dataclass(frozen=True)
class TrainOptions:
    data: str | None = None
    cfg: str | None = None
    weights: str | None = None
    hyp: str | None = None  # None: scratch.640 (demo data: demo), and auto may choose lr0 and momentum
    epochs: int = 300
    batch_size: int = 8
    nominal_batch_size: int | None = None  # None: as the recipe decides (64, or no accumulation)
    optimizer: str = AUTO  # auto, sgd, adam or adamw; a planned run holds the resolved name ...
    recipe: Recipe | None = None  # ... and the resolved recipe, so that --resume repeats it
    close_mosaic: int = DEFAULT_CLOSE_MOSAIC  # the last N epochs without mosaic and mixup (0: none)
    img_size: int = 640
    test_img_size: int | None = None
    device: str = ""
    workers: int = 8
    project: str = "runs/train"
    name: str = "exp"
    exist_ok: bool = False
    multi_scale: bool = False
    rect: bool = False
    cache_images: bool = False
    noval: bool = False
    nosave: bool = False
    period: int = 0
    save_period: int = 25
    patience: int = 0
    seed: int = 0
    image_weights: bool = False
    sync_bn: bool = False
    single_cls: bool = False
    sparsity: float = 0.0
    amp: bool | None = None  # --amp/--no-amp as asked; None: fp16 on CUDA, fp32 on CPU (resolve_amp, see _amp)
    amp_mode: str | None = None  # what the run trained with (fp16, bf16, off): for opt.yaml's reader only
    teacher: str | None = None  # --teacher: a checkpoint to distil from (a resumed run reloads it)
    distill_weight: float = DEFAULT_DISTILL_WEIGHT  # the distillation term's factor in the loss
    prune_to: float | None = None  # --prune-to: the fraction of the starting MACs kept (gradual pruning)
    cwd: str | None = None  # the folder the run started in: relative paths of older runs resolve there

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        chosen = {k: v for k, v in values.items() if k in known}
        if isinstance(chosen.get("recipe"), dict):
            chosen["recipe"] = Recipe.from_dict(chosen["recipe"])
        return cls(**chosen)

    @classmethod
    def from_saved(cls, values: dict[str, Any]) -> TrainOptions:
        """A run's options as opt.yaml and its checkpoints hold them; those of runs saved before
        --optimizer (``adam: true`` or false) resume with the optimizer they trained with."""
        if "optimizer" not in values:  # saved before --optimizer and --close-mosaic
            values = {**LEGACY_OPTIONS, "optimizer": "adam" if values.get("adam") else "sgd", **values}
        return cls.from_dict(values).with_paths_found()

    def with_absolute_paths(self) -> TrainOptions:
        """The options as a run records them (opt.yaml, checkpoints): every file and folder absolute, so
        ``--resume`` works from any folder; a bundled cfg or hyp name stays a name."""
        cwd = Path.cwd()
        changes: dict[str, Any] = {key: _absolute(getattr(self, key), cwd) for key in PATH_OPTIONS}
        changes.update({key: _absolute(getattr(self, key), cwd, must_exist=True) for key in NAMED_OPTIONS})
        changes["project"] = str(cwd / self.project)
        return dataclasses.replace(self, **changes, cwd=self.cwd or str(cwd))

    def with_paths_found(self) -> TrainOptions:
        """A saved run's relative paths (runs written before paths were recorded absolute): those
        found under the folder the run started in (when recorded) resolve there; others stay
        relative to the current folder, where a file missing later is named by its loader."""
        if self.cwd is None:
            return self
        base = Path(self.cwd)
        changes = {
            key: str(base / value)
            for key in (*PATH_OPTIONS, *NAMED_OPTIONS)
            if (value := getattr(self, key)) and not Path(value).is_absolute() and (base / value).exists()
        }
        return dataclasses.replace(self, **changes)


PATH_OPTIONS = ("data", "weights", "teacher")  # always files
NAMED_OPTIONS = ("cfg", "hyp")  # a file, or the name of a bundled one


def _absolute(value: str | None, cwd: Path, *, must_exist: bool = False) -> str | None:
    if not value or Path(value).is_absolute() or (must_exist and not (cwd / value).exists()):
        return value
    return str(cwd / value)
