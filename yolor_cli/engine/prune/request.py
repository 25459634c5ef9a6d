"""What ``yolor prune`` is asked to do: one typed target and one request that owns the defaults.

A target is exactly one of three kinds (``prune conv``, ``prune layers``, ``prune global``), and
every option is checked when the request is built, before any model is read. Nothing here needs
torch, so the command module builds requests without paying for the engine's imports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.infer.request import DEFAULT_IMG_SIZE  # GFLOPs and latency are reported at it

METHODS = ("l1", "l2", "random", "bn")
DEFAULT_AMOUNT = 0.4  # int(0.4 x channels) go from each conv, as the old pruning scripts did
GLOBAL_MAX_RATIO = 0.9  # beyond it whole groups drop below torch-pruning's threshold and are skipped


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
class ConvTargets:
    """``prune conv``: the convs at these module indices, each by ``int(amount x channels)`` channels."""

    layers: tuple[int, ...]
    amount: float = DEFAULT_AMOUNT

    def __post_init__(self) -> None:
        check_amount(self.amount)
        repeated = sorted({index for index in self.layers if self.layers.count(index) > 1})
        if repeated:
            raise YolorError(
                f"--layer {', '.join(map(str, repeated))} given more than once",
                hint="each --layer is pruned once; to prune it harder, raise --amount",
            )


@dataclass(frozen=True)
class LayerSpan:
    """``prune layers``: every conv of modules ``start..upto`` (inclusive) in module order."""

    upto: int
    start: int = 0
    amount: float = DEFAULT_AMOUNT

    def __post_init__(self) -> None:
        check_amount(self.amount)
        if self.start > self.upto:
            raise YolorError(f"--from {self.start} is after --upto {self.upto}")


@dataclass(frozen=True)
class GlobalTarget:
    """``prune global``: channels ranked across the model, to a MACs fraction or a channel ratio."""

    target_macs: float | None = None
    ratio: float | None = None

    def __post_init__(self) -> None:
        check_global_options(self.target_macs, self.ratio)


PruneTarget = ConvTargets | LayerSpan | GlobalTarget


@dataclass(frozen=True)
class PruneRequest:
    """One prune run. ``output`` None writes ``NAME_pruned.pt`` beside the weights (never overwriting);
    ``dry_run`` writes nothing; ``latency`` measures CPU latency before and after."""

    weights: Path
    target: PruneTarget
    cfg: str | None = None
    method: str = "l1"
    img_size: int = DEFAULT_IMG_SIZE
    output: Path | None = None
    overwrite: bool = False
    dry_run: bool = False
    latency: bool = True
    seed: int = 0
    trust_pickle: bool = False

    def __post_init__(self) -> None:
        check_method(self.method)


# ---- yolor prune auto ------------------------------------------------------------------------------

ALLOCATIONS = ("global", "sensitivity")  # how a step's cut is shared among the layers
# The rankings that measure something about a channel: a random one has no place in a run meant to
# keep accuracy, nor in a scan, whose losses would measure the draw rather than the layer.
RANKED_METHODS = ("l1", "l2", "bn")
AUTO_METHODS = RANKED_METHODS
AUTO_DEFAULT_PROJECT = Path("runs/prune")


@dataclass(frozen=True)
class AutoPruneRequest:
    """One ``yolor prune auto`` run: prune in ``steps`` towards ``target_macs`` (a fraction of the input's
    multiply-adds) or ``target_latency_ms`` (CPU, fused, batch 1), fine-tuning ``epochs_per_step`` after
    each step and ``final_epochs`` at the end, and stop before a step loses more than ``max_drop`` of
    mAP50-95 against the input.

    With ``resume`` only ``project``/``name`` (the run folder, taken as is, not numbered), ``device`` and
    ``workers`` are used: the run continues with the request saved in its folder, so ``weights``,
    ``data`` and a target may be left out."""

    weights: Path | None = None
    data: Path | None = None
    target_macs: float | None = None
    target_latency_ms: float | None = None
    max_drop: float = 0.01
    steps: int = 4
    epochs_per_step: int = 3
    final_epochs: int = 10
    allocate: str = "global"
    method: str = "l1"
    distill: bool = True
    img_size: int = DEFAULT_IMG_SIZE
    batch_size: int = 8
    device: str = ""
    workers: int = 8
    project: Path = AUTO_DEFAULT_PROJECT
    name: str = "exp"
    exist_ok: bool = False
    resume: bool = False
    cfg: str | None = None
    trust_pickle: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        self._check_numbers()
        if self.allocate not in ALLOCATIONS:
            raise YolorError(f"unknown --allocate {self.allocate!r}", hint=f"choose one of {', '.join(ALLOCATIONS)}")
        if self.method not in AUTO_METHODS:
            raise YolorError(
                f"--method {self.method!r} is not one prune auto ranks by",
                hint=f"choose one of {', '.join(AUTO_METHODS)}",
            )
        if not self.resume:
            self._check_inputs()

    def _check_numbers(self) -> None:
        if self.steps < 1:
            raise YolorError(f"--steps {self.steps} is below 1", hint="e.g. --steps 4 reaches the target in 4 cuts")
        for flag, value in (("--epochs-per-step", self.epochs_per_step), ("--final-epochs", self.final_epochs)):
            if value < 0:
                raise YolorError(f"{flag} {value} is negative", hint="0 skips that fine-tuning")
        if not math.isfinite(self.max_drop):  # a NaN would switch the guard off silently
            raise YolorError(f"--max-drop {self.max_drop} is not a number", hint="e.g. --max-drop 0.01")
        if self.max_drop < 0:
            raise YolorError(
                f"--max-drop {self.max_drop} is negative",
                hint="it is the largest allowed fall of mAP50-95, e.g. 0.01; 0 allows none",
            )
        if self.batch_size < 1:
            raise YolorError(f"--batch-size {self.batch_size} is below 1")
        if self.workers < 0:
            raise YolorError(f"--workers {self.workers} is negative")

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


SENSITIVITY_UNITS = ("conv", "stage")
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
class SensitivityRequest:
    """One ``yolor prune sensitivity`` scan: each unit of kind ``unit`` pruned alone by each of
    ``amounts`` (no fine-tuning) and scored on the val split of ``data``. ``output`` None writes to
    ``NAME_sensitivity/`` beside the weights; ``max_images`` None evaluates every val image."""

    weights: Path
    data: Path
    cfg: str | None = None
    amounts: tuple[float, ...] = DEFAULT_SENSITIVITY_AMOUNTS
    unit: str = "conv"
    method: str = "l1"
    img_size: int = DEFAULT_IMG_SIZE
    max_images: int | None = None
    batch_size: int = SENSITIVITY_BATCH_SIZE
    device: str = ""
    output: Path | None = None
    trust_pickle: bool = False

    def __post_init__(self) -> None:
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
        if self.unit not in SENSITIVITY_UNITS:
            raise YolorError(f"unknown --unit {self.unit!r}", hint=f"choose one of {', '.join(SENSITIVITY_UNITS)}")
        if self.method == "random":
            raise YolorError(
                "--method random cannot measure sensitivity: the loss would depend on the draw, not on the layer",
                hint=f"choose one of {', '.join(SENSITIVITY_METHODS)}",
            )
        if self.method not in SENSITIVITY_METHODS:
            raise YolorError(
                f"unknown pruning method {self.method!r}", hint=f"choose one of {', '.join(SENSITIVITY_METHODS)}"
            )
        if self.max_images is not None and self.max_images < 1:
            raise YolorError(f"--max-images {self.max_images} must be at least 1")
        if self.batch_size < 1:
            raise YolorError(f"--batch-size {self.batch_size} must be at least 1")
