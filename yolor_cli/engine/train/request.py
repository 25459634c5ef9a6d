"""What ``yolor train`` is asked to do: each option declared once (see engine/options.py).

None means "not given": :meth:`TrainRequest.options` fills those from the demo profile when there
is no ``--data``, from the usual defaults otherwise, and resolves the request into the
:class:`~yolor_cli.engine.train.options.TrainOptions` a run records. Only the standard library at
import: the command line builds its options from these fields without loading torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.options import (
    MAX_BATCH,
    MAX_IMG_SIZE,
    Request,
    batch_option,
    cfg_option,
    device_option,
    exist_ok_option,
    name_option,
    option,
    project_option,
    report_option,
    seed_option,
    workers_option,
)
from yolor_cli.engine.tracking.options import mlflow_experiment_option, mlflow_log_weights_option, mlflow_option
from yolor_cli.engine.train.recipe import OPTIMIZER_CHOICES

if TYPE_CHECKING:
    from yolor_cli.engine.train.options import TrainOptions

MAX_EPOCHS = 100_000  # any real schedule is far below; bounds a typo before a run folder is made
MAX_NOMINAL_BATCH = 64 * MAX_BATCH  # gradient accumulation up to many full batches
# What --resume takes from the command line: the run keeps every other option of its own (tracking is
# the command's, not the run's: a resumed run continues its MLflow run when tracking is on).
TRACKING_FIELDS = ("mlflow", "mlflow_experiment", "mlflow_log_weights")  # not training options
RESUME_OWN = ("last", "resume", "device", "amp", "project", *TRACKING_FIELDS)


def _check_prune_to(fraction: float) -> None:
    if not 0 < fraction < 1:
        raise YolorError(f"--prune-to {fraction:g} is outside (0, 1)", hint="e.g. --prune-to 0.5 keeps half the MACs")


@dataclass(frozen=True)
class TrainRequest(Request):
    """One ``yolor train`` run, or with ``resume`` the continuation of ``last`` (default: the newest
    last.pt under ``project``). ``img_size`` is the train size and optionally the validation size."""

    last: Path | None = option(
        None,
        help="With --resume: the last.pt to continue (default: the newest under --project).",
        argument=True,
        show_default=False,
    )
    data: Path | None = option(
        None,
        "--data",
        help="data.yaml; without it, the built-in demo data (generated once, cached).",
        path_kind="file",
    )
    cfg: str | None = cfg_option()
    weights: Path | None = option(
        None,
        "--weights",
        "-w",
        help="Start from these weights (ours keep their architecture, pruned shapes too; "
        "official ones need --cfg); matching tensors are transferred.",
        path_kind="file",
    )
    hyp: str | None = option(
        None, "--hyp", help="Hyperparameter YAML or bundled name (default scratch.640; demo data: demo)."
    )
    epochs: int | None = option(None, "--epochs", help="Default 300; 10 on the demo data.", min=1, max=MAX_EPOCHS)
    batch_size: int | None = batch_option(None, help="Total over all processes (default 8).")
    nominal_batch_size: int | None = option(
        None,
        "--nominal-batch-size",
        help="Accumulate gradients up to this batch before a step (default: 64 as YOLOR, "
        "no accumulation for short runs under --optimizer auto).",
        min=1,
        max=MAX_NOMINAL_BATCH,
    )
    # No lower bound here: the model refuses a size below its largest stride with the multiples it takes.
    img_size: tuple[int, ...] = option(
        (),
        "--img-size",
        help="Train size, and optionally (repeat the option) the validation size (default 640; 320 on the demo data).",
        max=MAX_IMG_SIZE,
    )
    device: str = device_option()
    workers: int = workers_option(8)
    project: Path = project_option(Path("runs/train"))
    name: str = name_option()
    exist_ok: bool = exist_ok_option()
    resume: bool = option(False, "--resume", help="Continue an interrupted run (see LAST).")
    multi_scale: bool = option(False, "--multi-scale", help="Vary the size +/- 50 % per batch.")
    image_weights: bool = option(
        False, "--image-weights", help="Draw images of rare and poorly detected classes more often."
    )
    rect: bool = option(False, "--rect", help="Rectangular batches (no mosaic).")
    cache_images: bool = option(False, "--cache-images", help="Keep resized images in RAM.")
    optimizer: str | None = option(
        None,
        "--optimizer",
        help="auto (default): YOLOR's SGD recipe from 10,000 iterations, AdamW for shorter runs; "
        "the choice is printed and kept in opt.yaml.",
        choices=OPTIMIZER_CHOICES,
    )
    adam: bool = option(False, "--adam", help="The same as --optimizer adam.")
    close_mosaic: int | None = option(
        None,
        "--close-mosaic",
        help="Train the last N epochs without mosaic and mixup, at most half the run "
        "(default 10; 0: mosaic to the end).",
        min=0,
        max=MAX_EPOCHS,
    )
    sync_bn: bool = option(False, "--sync-bn", help="BatchNorm statistics over all DDP processes.")
    single_cls: bool = option(False, "--single-cls", help="Train every object as one class.")
    sparsity: float = option(
        0.0,
        "--sparsity",
        help="L1 penalty on BatchNorm scales (network slimming, e.g. 1e-4) before yolor prune --method bn.",
        min=0.0,
    )
    amp: bool | None = option(
        None,
        "--amp/--no-amp",
        help="Mixed precision: fp16 autocast on CUDA (on by default), bf16 on a CPU with AMX-BF16 or "
        "AVX-512 BF16 (only with --amp); a resumed run keeps its own.",
    )
    teacher: Path | None = option(
        None,
        "--teacher",
        help="Distil from this checkpoint (e.g. the unpruned model a pruned --weights came from): "
        "same classes and detection heads; it is evaluated once at the start.",
        path_kind="file",
    )
    distill_weight: float | None = option(
        None,
        "--distill-weight",
        help="Weight of the distillation term in the loss, above 0 (the run header shows the one used); "
        "needs --teacher.",
    )
    prune_to: float | None = option(
        None,
        "--prune-to",
        help="Prune while training: remove channels in slices over the first half of the epochs until "
        "this fraction of the starting MACs is left (e.g. 0.5), then train on at that size.",
        check=_check_prune_to,
    )
    noval: bool = option(False, "--noval", help="Validate only after the last epoch.")
    nosave: bool = option(False, "--nosave", help="Write only the final last.pt.")
    period: int = option(0, "--period", help="Validate from this epoch on.", min=0, max=MAX_EPOCHS)
    save_period: int = option(25, "--save-period", help="epoch_NNN.pt every N epochs.", min=0, max=MAX_EPOCHS)
    patience: int = option(
        0, "--patience", help="Stop after N epochs without a better fitness (0: never).", min=0, max=MAX_EPOCHS
    )
    seed: int = seed_option()
    mlflow: bool = mlflow_option()
    mlflow_experiment: str | None = mlflow_experiment_option()
    mlflow_log_weights: bool = mlflow_log_weights_option()
    report: bool = report_option()

    def __post_init__(self) -> None:
        if self.img_size is None or isinstance(self.img_size, int):  # not given, or a library caller's one size
            object.__setattr__(self, "img_size", () if self.img_size is None else (self.img_size,))
        if self.last is not None and str(self.last).isdigit():  # the old scripts' `--img-size 640 640`
            raise YolorError(
                f"unexpected argument {self.last}",
                hint=f"give the validation size by repeating the option: --img-size 640 --img-size {self.last}",
            )
        if self.last is not None and not self.resume:
            raise YolorError(f"unexpected argument {self.last}", hint="to continue a run: yolor train --resume LAST")
        super().__post_init__()
        if len(self.img_size) > 2:
            raise YolorError("--img-size takes one or two sizes (train, then validation)")
        if self.adam and self.optimizer not in (None, "adam"):
            raise YolorError(f"--adam means --optimizer adam, not {self.optimizer}", hint="give one of them")

    def options(self) -> TrainOptions:
        """The options a new run trains with: the demo profile fills what is not given when there is
        no ``data``, the usual defaults otherwise; ``adam`` is ``optimizer="adam"``."""
        from yolor_cli.engine.train.distill import check_distill_options
        from yolor_cli.engine.train.options import DEMO_DEFAULTS, DEMO_RECIPE, TrainOptions

        teacher = str(self.teacher) if self.teacher else None
        check_distill_options(teacher, self.distill_weight)
        sizes = dict(zip(("img_size", "test_img_size"), self.img_size, strict=False))
        given: dict[str, Any] = {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
            **sizes,
            "optimizer": "adam" if self.adam else self.optimizer,
            "teacher": teacher,
        }
        for key in ("data", "weights", "project"):
            given[key] = str(given[key]) if given[key] is not None else None
        dropped = ("adam", "last", "resume", "report", *TRACKING_FIELDS)
        values = {k: v for k, v in given.items() if v is not None and k not in dropped}
        if len(self.img_size) == 0:
            values.pop("img_size", None)
        if not values.get("data"):
            measured = values.get("epochs", DEMO_DEFAULTS["epochs"]) == DEMO_DEFAULTS["epochs"]
            values = {**DEMO_DEFAULTS, **(DEMO_RECIPE if measured else {}), **values}
        return TrainOptions.from_dict(values)
