"""What ``yolor prune`` is asked to do: one typed target and one request that owns the defaults.

A target is exactly one of three kinds (``prune conv``, ``prune layers``, ``prune global``), and
every option is checked when the request is built, before any model is read. Nothing here needs
torch, so the command module builds requests without paying for the engine's imports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from yolor_cli.engine.deploy.request import DEFAULT_CALIB_IMAGES, LATENCY_RUNTIMES
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.infer.request import DEFAULT_IMG_SIZE  # GFLOPs and latency are reported at it
from yolor_cli.engine.options import (
    REQUIRED,
    Request,
    batch_option,
    cfg_option,
    data_option,
    device_option,
    exist_ok_option,
    img_size_option,
    name_option,
    option,
    output_option,
    overwrite_option,
    project_option,
    report_option,
    seed_option,
    trust_pickle_option,
    weights_option,
    workers_option,
)
from yolor_cli.engine.tracking.options import mlflow_experiment_option, mlflow_log_weights_option, mlflow_option

METHODS = ("l1", "l2", "random", "bn")
DEFAULT_AMOUNT = 0.4  # int(0.4 x channels) go from each conv, as the old pruning scripts did
GLOBAL_MAX_RATIO = 0.9  # beyond it whole groups drop below torch-pruning's threshold and are skipped
MAX_STEPS = 100  # prune auto's cuts; each is fine-tuned, so more is a typo
MAX_ROUND_TO = 64  # widths rounded to more than this lose whole layers' worth of choice
MAX_EPOCHS = 100_000  # any epoch count; bounds a typo before a run folder is made
PRUNE_WEIGHTS_HELP = "Checkpoint to prune (ours, or official with --cfg)."


def amount_option() -> object:
    return option(
        DEFAULT_AMOUNT,
        "--amount",
        help="Fraction of each conv's output channels to remove (int(amount x channels) go).",
    )


def method_option(
    default: str = "l1", help: str = "Channel importance: l1, l2, random, or bn (BatchNorm scales)."
) -> object:
    return option(default, "--method", help=help)


def runtime_option(default: str | None, help: str) -> object:
    """A known runtime; whether its packages are installed is checked by the engine, before work."""
    return option(default, "--runtime", help=help, choices=LATENCY_RUNTIMES)


def check_amount(amount: float, flag: str = "--amount") -> None:
    if not 0 < amount < 1:
        raise YolorError(
            f"{flag} {amount} is outside (0, 1)",
            hint="e.g. --amount 0.4 removes 40 % of each conv's channels"
            if flag == "--amount"
            else "e.g. --target-macs 0.5 keeps half of the multiply-adds",
        )


def check_method(method: str) -> None:
    if method not in METHODS:
        raise YolorError(f"unknown pruning method {method!r}", hint=f"choose one of {', '.join(METHODS)}")


def check_global_options(target_macs: float | None, ratio: float | None) -> None:
    if (target_macs is None) == (ratio is None):
        raise YolorError(
            "give exactly one of --target-macs and --ratio",
            hint="e.g. --target-macs 0.5 keeps half of the multiply-adds",
        )
    if target_macs is not None:
        check_amount(target_macs, "--target-macs")
    elif not 0 < ratio <= GLOBAL_MAX_RATIO:  # type: ignore[operator]
        raise YolorError(
            f"--ratio {ratio} is outside (0, {GLOBAL_MAX_RATIO}]",
            hint="beyond it whole layer groups collapse; use --target-macs for deep cuts",
        )


@dataclass(frozen=True)
class ConvTargets(Request):
    """``prune conv``: the convs at these module indices, each by ``int(amount x channels)`` channels."""

    layers: tuple[int, ...] = option(
        REQUIRED, "--layer", help="Module index of a conv to prune (repeatable; see yolor info).", min=0
    )
    amount: float = amount_option()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_amount(self.amount)
        repeated = sorted({index for index in self.layers if self.layers.count(index) > 1})
        if repeated:
            raise YolorError(
                f"--layer {', '.join(map(str, repeated))} given more than once",
                hint="each --layer is pruned once; to prune it harder, raise --amount",
            )


@dataclass(frozen=True)
class LayerSpan(Request):
    """``prune layers``: every conv of modules ``start..upto`` (inclusive) in module order."""

    upto: int = option(REQUIRED, "--upto", help="Last module index to prune (inclusive).", min=0)
    start: int = option(0, "--from", help="First module index to prune.", min=0)
    amount: float = amount_option()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_amount(self.amount)
        if self.start > self.upto:
            raise YolorError(f"--from {self.start} is after --upto {self.upto}")


@dataclass(frozen=True)
class GlobalTarget(Request):
    """``prune global``: channels ranked across the model, to a MACs fraction or a channel ratio."""

    target_macs: float | None = option(
        None, "--target-macs", help="Prune until the MACs are this fraction of the original (e.g. 0.5)."
    )
    ratio: float | None = option(
        None, "--ratio", help="Or: remove this fraction of the channels, ranked across the whole model."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_global_options(self.target_macs, self.ratio)


PruneTarget = ConvTargets | LayerSpan | GlobalTarget


@dataclass(frozen=True)
class PruneRequest(Request):
    """One prune run. ``output`` None writes ``NAME_pruned.pt`` beside the weights (never overwriting);
    ``dry_run`` writes nothing; ``latency`` measures CPU latency before and after."""

    weights: Path = weights_option(REQUIRED, PRUNE_WEIGHTS_HELP)
    target: PruneTarget = REQUIRED  # built from the target's own options (prune conv, layers, global)
    cfg: str | None = cfg_option()
    method: str = method_option()
    output: Path | None = output_option(
        "Where to write (default: NAME_pruned.pt beside the input, never overwriting).", path_kind="file"
    )
    overwrite: bool = overwrite_option()
    img_size: int = img_size_option(DEFAULT_IMG_SIZE, "Input size for GFLOPs and latency.")
    dry_run: bool = option(False, "--dry-run", help="Show what would be pruned; write nothing.")
    latency: bool = option(True, "--latency/--no-latency", help="Measure CPU latency before and after (a few seconds).")
    seed: int = seed_option(cli=False)  # the draw of --method random
    trust_pickle: bool = trust_pickle_option()
    mlflow: bool = mlflow_option()
    mlflow_experiment: str | None = mlflow_experiment_option()
    mlflow_log_weights: bool = mlflow_log_weights_option()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_method(self.method)


# ---- yolor prune auto ------------------------------------------------------------------------------

ALLOCATIONS = ("global", "sensitivity")  # how a step's cut is shared among the layers
# What --allocate sensitivity spends the budget on: coupled conv groups (width), residual blocks
# removed whole (depth), or both ranked by the same loss per MAC saved.
AUTO_UNITS = ("conv", "block", "conv+block")
# steps: cut, fine-tune, repeat (each fine-tune its own warmup and schedule); gradual: one training run
# whose hook cuts along a decaying schedule (engine/prune/gradual.py). steps stays the default until
# gradual is measured better on real data.
SCHEDULES = ("steps", "gradual")
# The rankings that measure something about a channel: a random one has no place in a run meant to
# keep accuracy, nor in a scan, whose losses would measure the draw rather than the layer.
RANKED_METHODS = ("l1", "l2", "bn")
AUTO_METHODS = RANKED_METHODS
AUTO_DEFAULT_PROJECT = Path("runs/prune")


@dataclass(frozen=True)
class AutoPruneRequest(Request):
    """One ``yolor prune auto`` run: prune in ``steps`` towards ``target_macs`` (a fraction of the input's
    multiply-adds) or ``target_latency_ms`` (batch 1 on ``runtime``), fine-tuning ``epochs_per_step`` after
    each step and ``final_epochs`` at the end, and stop before a step loses more than ``max_drop`` of
    mAP50-95 against the input.

    With ``resume`` only ``project``/``name`` (the run folder, taken as is, not numbered), ``device`` and
    ``workers`` are used: the run continues with the request saved in its folder, so ``weights``,
    ``data`` and a target may be left out."""

    weights: Path | None = weights_option(
        None, "Checkpoint to prune (ours, or official with --cfg); not needed with --resume."
    )
    data: Path | None = data_option()
    target_macs: float | None = option(
        None, "--target-macs", help="End at this fraction of the input's MACs (e.g. 0.5)."
    )
    target_latency_ms: float | None = option(
        None,
        "--target-latency-ms",
        help="Or: aim at this latency (batch 1 on --runtime). With --allocate sensitivity the cut is "
        "planned by mAP lost per millisecond that each conv group's cut saves on that runtime; with global "
        "the latency is taken as proportional to the MACs.",
    )
    runtime: str = runtime_option(
        "torch",
        "Where latency is measured (steps.csv, --target-latency-ms): torch (PyTorch fp32), onnxruntime, "
        "openvino or openvino-int8; all on the CPU at batch 1 and --img-size.",
    )
    max_drop: float = option(
        0.01, "--max-drop", help="Largest allowed fall of mAP50-95 against the input (absolute).", min=0.0
    )
    steps: int = option(4, "--steps", help="Cuts to reach the target, each fine-tuned.", min=1, max=MAX_STEPS)
    epochs_per_step: int = option(
        3, "--epochs-per-step", help="Fine-tuning epochs after each cut.", min=0, max=MAX_EPOCHS
    )
    final_epochs: int = option(
        10, "--final-epochs", help="Fine-tuning epochs of the kept model at the end.", min=0, max=MAX_EPOCHS
    )
    allocate: str = option(
        "global",
        "--allocate",
        help="global (channels ranked across the model) or sensitivity (per-layer amounts from a scan).",
        choices=ALLOCATIONS,
    )
    unit: str = option(
        "conv",
        "--unit",
        help="With --allocate sensitivity: what the plan cuts: conv (coupled conv groups, width), block "
        "(residual blocks removed whole, depth) or conv+block (both, by mAP lost per MAC saved).",
        choices=AUTO_UNITS,
    )
    method: str = method_option(help="Channel importance: l1, l2 or bn (BatchNorm scales).")
    schedule: str = option(
        "steps",
        "--schedule",
        help="steps (prune, fine-tune, repeat) or gradual (one training run of as many epochs, "
        "--steps x --epochs-per-step + --final-epochs, cutting slices over its first half).",
        choices=SCHEDULES,
    )
    round_to: int = option(
        1,
        "--round-to",
        help="With --allocate sensitivity: round each pruned conv group's width to a multiple of this "
        "(8 suits OpenVINO/oneDNN, see benchmarks/README.md); 1 rounds nothing.",
        min=1,
        max=MAX_ROUND_TO,
    )
    distill: bool = option(True, "--distill/--no-distill", help="Fine-tune with the input model as the teacher.")
    reference: bool = option(
        False,
        "--reference/--no-reference",
        help="Also train the unpruned input as many epochs as the run spent (same trainer, no distillation; "
        "kept in reference/) and show it in the final table: the fair yardstick, at twice the training time.",
    )
    calib_images: int = option(
        DEFAULT_CALIB_IMAGES,
        "--calib-images",
        help="Training images the final table's pruned + INT8 model is calibrated on (as yolor export --int8; "
        "needs the openvino extra).",
        min=1,
    )
    img_size: int = img_size_option(DEFAULT_IMG_SIZE, "Size to train, validate and measure GFLOPs and latency at.")
    batch_size: int = batch_option(8, help="Fine-tuning batch size.")
    device: str = device_option()
    workers: int = workers_option(8)
    project: Path = project_option(AUTO_DEFAULT_PROJECT)
    name: str = name_option()
    exist_ok: bool = exist_ok_option()
    resume: bool = option(
        False,
        "--resume",
        help="Continue the run in --project/--name (the folder as on disk, e.g. --name exp2) where it "
        "stopped, with its own options.",
    )
    cfg: str | None = cfg_option()
    trust_pickle: bool = trust_pickle_option()
    seed: int = seed_option()
    mlflow: bool = mlflow_option()
    mlflow_experiment: str | None = mlflow_experiment_option()
    mlflow_log_weights: bool = mlflow_log_weights_option()
    report: bool = report_option()

    def __post_init__(self) -> None:
        super().__post_init__()  # bounds (steps, epochs, --max-drop, sizes, seed) before anything else
        if self.unit != "conv" and self.allocate != "sensitivity":
            raise YolorError(
                f"--unit {self.unit} needs --allocate sensitivity",
                hint="the global ranking compares channels only; a sensitivity scan prices each block",
            )
        if self.method not in AUTO_METHODS:
            raise YolorError(
                f"--method {self.method!r} is not one prune auto ranks by",
                hint=f"choose one of {', '.join(AUTO_METHODS)}",
            )
        if not self.resume:
            self._check_inputs()
        if self.schedule == "gradual" and self.allocate != "global":
            raise YolorError(
                "--schedule gradual ranks channels globally; --allocate sensitivity works with --schedule steps"
            )
        if self.schedule == "gradual" and self.total_epochs == 0:
            raise YolorError(
                "--schedule gradual prunes while it trains, and these options train 0 epochs",
                hint="give --epochs-per-step or --final-epochs above 0",
            )

    @property
    def total_epochs(self) -> int:
        """The training epochs of a run that goes to the end: the gradual run's length."""
        return self.steps * self.epochs_per_step + self.final_epochs

    def _check_inputs(self) -> None:
        if self.weights is None or self.data is None:
            given = (("--weights", self.weights), ("--data", self.data))
            missing = " and ".join(flag for flag, value in given if value is None)
            raise YolorError(f"prune auto needs {missing}", hint="or pass --resume to continue a run")
        if (self.target_macs is None) == (self.target_latency_ms is None):
            raise YolorError(
                "give exactly one of --target-macs and --target-latency-ms",
                hint="e.g. --target-macs 0.5 keeps half of the multiply-adds",
            )
        if self.target_macs is not None:
            check_amount(self.target_macs, "--target-macs")
        elif self.target_latency_ms is not None and not (
            math.isfinite(self.target_latency_ms) and self.target_latency_ms > 0
        ):
            raise YolorError(f"--target-latency-ms {self.target_latency_ms} is not a number above 0")

    def to_dict(self) -> dict[str, object]:
        """Plain JSON values (paths as text), for the run's state file."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> AutoPruneRequest:
        known = {f.name for f in fields(cls)}
        chosen: dict[str, object] = {k: v for k, v in values.items() if k in known}
        for key in ("weights", "data", "project"):
            if chosen.get(key) is not None:
                chosen[key] = Path(str(chosen[key]))
        return cls(**chosen)  # type: ignore[arg-type]


# What a scan prunes alone: width units (conv, stage), residual blocks removed whole, or both.
SENSITIVITY_UNITS = ("conv", "stage", "block", "conv+block", "stage+block")
SENSITIVITY_METHODS = RANKED_METHODS
DEFAULT_SENSITIVITY_AMOUNTS = (0.25, 0.5, 0.75)
SENSITIVITY_BATCH_SIZE = 32


def parse_amounts(text: str) -> tuple[float, ...]:
    """``--amounts 0.25,0.5,0.75`` as numbers (checked by :class:`SensitivityRequest`)."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise YolorError(
            f"--amounts {text!r} is not a comma-separated list of numbers", hint="e.g. --amounts 0.25,0.5,0.75"
        ) from None


@dataclass(frozen=True)
class SensitivityRequest(Request):
    """One ``yolor prune sensitivity`` scan: each unit of kind ``unit`` pruned alone by each of
    ``amounts`` (no fine-tuning) and scored on the val split of ``data``. ``output`` None writes to
    ``NAME_sensitivity/`` beside the weights; ``max_images`` None evaluates every val image."""

    weights: Path = weights_option(REQUIRED, PRUNE_WEIGHTS_HELP)
    data: Path = data_option(REQUIRED, "data.yaml whose val split scores the trials.")
    amounts: tuple[float, ...] = option(
        DEFAULT_SENSITIVITY_AMOUNTS,
        "--amounts",
        help="Comma-separated fractions of each conv's channels to remove, one trial each.",
        parse=parse_amounts,
    )
    unit: str = option(
        "conv",
        "--unit",
        help="What is pruned alone: conv (one conv with its coupled convs), stage (the convs between "
        "two route/shortcut joins), block (one residual block removed whole), or conv+block / stage+block.",
        choices=SENSITIVITY_UNITS,
    )
    cfg: str | None = cfg_option()
    method: str = method_option(help="Channel importance: l1, l2, or bn (BatchNorm scales).")
    img_size: int = img_size_option(DEFAULT_IMG_SIZE, "Evaluation size (also the size MACs are counted at).")
    max_images: int | None = option(
        None,
        "--max-images",
        help="Score on this many val images, spread over the split (default: all; all are held in memory).",
        min=1,
    )
    batch_size: int = batch_option(SENSITIVITY_BATCH_SIZE)
    device: str = device_option()
    output: Path | None = output_option(
        "Folder for sensitivity.csv/.json/.png (default: NAME_sensitivity/ beside the weights). "
        "It must be new, empty, or hold only an earlier scan's files.",
        path_kind="dir",
    )
    runtime: str | None = runtime_option(
        None,
        "Also time each trial's model on this runtime (torch, onnxruntime, openvino, openvino-int8; CPU, "
        "batch 1, --img-size): adds latency_ms, latency_saved_ms and map_drop_per_ms; the timings are kept "
        "in latency_<runtime>_<size>.json in the output folder and reused.",
    )
    trust_pickle: bool = trust_pickle_option()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.amounts:
            raise YolorError("--amounts is empty", hint="e.g. --amounts 0.25,0.5,0.75")
        for amount in self.amounts:
            if not 0 < amount < 1:
                raise YolorError(
                    f"--amounts {amount:g} is outside (0, 1)", hint="e.g. --amounts 0.25,0.5,0.75 removes 25, 50, 75 %"
                )
        repeated = sorted({amount for amount in self.amounts if self.amounts.count(amount) > 1})
        if repeated:
            raise YolorError(f"--amounts {', '.join(f'{a:g}' for a in repeated)} given more than once")
        if self.method == "random":
            raise YolorError(
                "--method random cannot measure sensitivity: the loss would depend on the draw, not on the layer",
                hint=f"choose one of {', '.join(SENSITIVITY_METHODS)}",
            )
        if self.method not in SENSITIVITY_METHODS:
            raise YolorError(
                f"unknown pruning method {self.method!r}", hint=f"choose one of {', '.join(SENSITIVITY_METHODS)}"
            )
