"""``yolor prune sensitivity``: how much accuracy each part of a model costs to prune.

Each unit (see :mod:`yolor_cli.engine.prune.units`) is pruned alone at each amount (a residual
block: removed), with no fine-tuning, and scored on the val split. The model file is read once and the val images are
letterboxed once (:class:`PreloadedSplit`); every trial prunes a fresh copy of the loaded model
(a deep copy and a new dependency graph cost tens of milliseconds, reading the file and decoding the
images would cost far more).

Trials are ranked by mAP50-95 lost per GMAC saved (at the scan's image size): the cheapest accuracy
per unit of compute first, which is what a pruning plan wants to spend. A *rise* in mAP counts as no
loss there: on a small split it is noise, and as a negative cost it would put the smallest cuts first.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolor_cli.engine.config import load_data_config
from yolor_cli.engine.deploy.runtime_latency import check_runtime
from yolor_cli.engine.errors import MissingDependencyError, YolorError
from yolor_cli.engine.evaluate.evaluator import check_model_classes
from yolor_cli.engine.evaluate.plots import plot_sensitivity, require_matplotlib
from yolor_cli.engine.evaluate.preloaded import PreloadedSplit, SharedPrefix, evaluate_preloaded
from yolor_cli.engine.files import atomic_write, guard_output
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.prune.blocks import check_removable_blocks, residual_blocks
from yolor_cli.engine.prune.latency_table import TABLE_PATTERN, unit_latency_table
from yolor_cli.engine.prune.pruning import (
    ChannelPruner,
    check_bn_rankable,
    check_no_grouped_convs,
    check_supported,
)
from yolor_cli.engine.prune.request import SensitivityRequest
from yolor_cli.engine.prune.run import measure
from yolor_cli.engine.prune.units import (
    BLOCK,
    CHANNELS,
    PruneUnit,
    prune_units,
    pruned_variant,
    unit_amounts,
    unit_kinds,
)
from yolor_cli.engine.reporting import Reporter, SilentReporter
from yolor_cli.engine.runtime import select_device

SAFEST_COUNT = 3
CSV_NAME, JSON_NAME, PNG_NAME = "sensitivity.csv", "sensitivity.json", "sensitivity.png"
OUR_FILES = (CSV_NAME, JSON_NAME, PNG_NAME)
CSV_COLUMNS = (
    "rank",
    "unit",
    "kind",
    "convs",
    "amount",
    "map50",
    "map",
    "map50_drop",
    "map_drop",
    "macs_saved",
    "params_saved",
    "map_drop_per_gmac",
    "latency_ms",  # with --runtime: the model with this cut, on that runtime
    "latency_saved_ms",
    "map_drop_per_ms",
)
LATENCY_COLUMNS = 3


@dataclass(frozen=True)
class Trial:
    """One unit pruned alone by one amount: its scores, their drops from the unpruned model's
    (positive = lost), and what the cut saved (MACs of one image at the scan's size)."""

    unit: PruneUnit
    amount: float
    map50: float
    map: float
    map50_drop: float
    map_drop: float
    macs_saved: int
    params_saved: int
    latency_ms: float | None = None  # with --runtime: this cut's model on it
    latency_saved_ms: float | None = None

    @property
    def cost(self) -> float:
        """mAP50-95 lost per GMAC saved, a rise counted as no loss (see the module docstring)."""
        return _cost(self.map_drop, self.macs_saved)

    @property
    def cost_per_ms(self) -> float | None:
        """mAP50-95 lost per millisecond saved on the scan's runtime (inf when it saved none)."""
        if self.latency_saved_ms is None:
            return None
        return max(self.map_drop, 0.0) / self.latency_saved_ms if self.latency_saved_ms > 0 else math.inf


def _cost(drop: float, macs_saved: int) -> float:
    return max(drop, 0.0) / (macs_saved / 1e9) if macs_saved > 0 else math.inf


@dataclass
class SensitivityScan:
    """The unpruned model's figures and every trial, in scan order (unit by unit, amount by amount).
    ``skipped`` are the (unit, amount) pairs that pruned nothing (the amount rounds to no channel)."""

    base_map50: float
    base_map: float
    base_macs: int
    base_params: int
    trials: list[Trial]
    skipped: list[tuple[PruneUnit, float]] = field(default_factory=list)
    runtime: str | None = None  # where the trials' latency was timed (--runtime), None when not
    base_latency_ms: float | None = None

    def ranked(self) -> list[Trial]:
        """Cheapest first: least mAP50-95 lost per GMAC saved, then most MACs saved."""
        return sorted(self.trials, key=lambda trial: (trial.cost, -trial.macs_saved))

    def safest(self, count: int = SAFEST_COUNT) -> list[str]:
        """The ``count`` units that lose least mAP50-95 per GMAC saved over all their amounts (summed
        losses over summed savings, so a unit that is cheap at 0.25 but breaks at 0.75 pays for it)."""
        totals: dict[str, list[float]] = {}
        for trial in self.trials:
            drop, saved = totals.setdefault(trial.unit.name, [0.0, 0.0])
            totals[trial.unit.name] = [drop + max(trial.map_drop, 0.0), saved + trial.macs_saved]
        order = sorted(totals, key=lambda name: (_cost(totals[name][0], int(totals[name][1])), -totals[name][1]))
        return order[:count]


def scan_model(
    model: DarknetModel,
    split: PreloadedSplit,
    units: list[PruneUnit],
    amounts: Sequence[float],
    *,
    method: str,
    img_size: int,
    reporter: Reporter,
    device: Any = "cpu",
) -> SensitivityScan:
    """Score ``model`` unpruned, then each unit pruned alone by each amount, on a copy each time
    (``model`` is left as it was). Pruning runs on the CPU; each pruned copy is fused and evaluated
    on ``device``, resumed from the unpruned model's state where its pruning starts
    (:class:`SharedPrefix`). The caller checks the model can be pruned (:func:`check_supported`,
    grouped convs, ``bn`` scales): :func:`run_sensitivity` does."""
    model.eval()
    base = evaluate_preloaded(model, split, device=device)
    prefix = SharedPrefix(model, split, device=device)
    base_cost = measure(model, img_size, latency=False)
    scan = SensitivityScan(
        base_map50=base.map50, base_map=base.map, base_macs=base_cost.macs, base_params=base_cost.params, trials=[]
    )
    plan = [(unit, amount) for unit in units for amount in unit_amounts(unit, tuple(amounts))]
    for unit, amount in reporter.track(plan, f"Pruning {len(units)} units, {len(plan)} trials", total=len(plan)):
        variant = pruned_variant(model, unit, amount, method)
        if variant is None:
            scan.skipped.append((unit, amount))
            continue
        cost = measure(variant, img_size, latency=False)
        metrics = evaluate_preloaded(variant, split, device=device, prefix=prefix)
        scan.trials.append(
            Trial(
                unit=unit,
                amount=amount,
                map50=metrics.map50,
                map=metrics.map,
                map50_drop=base.map50 - metrics.map50,
                map_drop=base.map - metrics.map,
                macs_saved=base_cost.macs - cost.macs,
                params_saved=base_cost.params - cost.params,
            )
        )
    return scan


@dataclass
class SensitivityResult:
    scan: SensitivityScan
    unit: str
    amounts: tuple[float, ...]
    method: str
    img_size: int
    images: int
    instances: int
    output: Path
    seconds: float
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        """What ``--json`` prints and ``sensitivity.json`` holds."""
        scan = self.scan
        return {
            "base": {
                "map50": scan.base_map50,
                "map": scan.base_map,
                "macs": scan.base_macs,
                "params": scan.base_params,
                **({"latency_ms": scan.base_latency_ms} if scan.runtime else {}),
            },
            "runtime": scan.runtime,
            "unit": self.unit,
            "method": self.method,
            "img_size": self.img_size,
            "images": self.images,
            "trials": [_trial_row(trial) for trial in scan.trials],
            "skipped": [{"unit": unit.name, "amount": amount} for unit, amount in scan.skipped],
            "safest": scan.safest(),
            "output": str(self.output),
            "seconds": self.seconds,
        }


def _trial_row(trial: Trial) -> dict[str, Any]:
    return {
        "unit": trial.unit.name,
        "kind": trial.unit.kind,
        "convs": list(trial.unit.convs),
        "amount": trial.amount,
        "map50": trial.map50,
        "map": trial.map,
        "map50_drop": trial.map50_drop,
        "map_drop": trial.map_drop,
        "macs_saved": trial.macs_saved,
        "params_saved": trial.params_saved,
        **(
            {"latency_ms": trial.latency_ms, "latency_saved_ms": trial.latency_saved_ms}
            if trial.latency_ms is not None
            else {}
        ),
    }


def default_output(weights: Path) -> Path:
    """``NAME_sensitivity/`` beside the weights."""
    return weights.with_name(f"{weights.stem}_sensitivity")


def foreign_files(folder: Path) -> str | None:
    """Why ``folder`` is not a scan's own (it holds other files), or None: the scan writes only
    :data:`OUR_FILES` and replaces an earlier scan's, but never mixes them with anything else."""
    foreign = sorted(
        path.name for path in folder.iterdir() if path.name not in OUR_FILES and not path.match(TABLE_PATTERN)
    )
    if not foreign:
        return None
    shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
    return f"already holds other files ({shown}), which the scan will not mix with its own"


def check_output_folder(folder: Path, inputs: list[Path]) -> None:
    """The scan's folder, checked by the one writer guard before the slow work."""
    guard_output(
        folder,
        inputs=inputs,
        folder=True,
        foreign=foreign_files,
        rewrite_own=True,
        hint="choose a new or empty folder with --output (one holding only an earlier scan's "
        "sensitivity.* files is reused)",
    )


def run_sensitivity(request: SensitivityRequest, reporter: Reporter | None = None) -> SensitivityResult:
    """Load the model and the val images once, scan every unit at every amount, write
    sensitivity.csv, sensitivity.json and (with matplotlib) sensitivity.png into the output folder."""
    start = time.perf_counter()
    reporter = reporter or SilentReporter()
    output = Path(request.output) if request.output is not None else default_output(request.weights)
    check_output_folder(output, [Path(request.weights), Path(request.data)])  # before the slow work
    if request.runtime is not None:
        check_runtime(request.runtime)
    data = load_data_config(request.data)
    loaded = load_model(cfg=request.cfg, weights=request.weights, trust_pickle=request.trust_pickle)
    model = loaded.model.eval()
    model.check_img_size(request.img_size)
    check_model_classes(model, data, hint="scan with the data the model was trained on")
    check_supported(model)
    kinds = unit_kinds(request.unit)
    widths = [kind for kind in kinds if kind != BLOCK]
    if widths:
        check_no_grouped_convs(model)
    pruner = ChannelPruner(model, method=request.method) if "conv" in kinds else None
    units = prune_units(model, request.unit, pruner=pruner)
    refused = [block for block in residual_blocks(model) if block.reason] if BLOCK in kinds else []
    if BLOCK in kinds:
        check_removable_blocks(model)
    if not units:
        raise YolorError("the model has no conv outside its detection heads to prune")
    if request.method == "bn" and widths:
        check_bn_rankable(model, sorted({index for unit in units if unit.kind == CHANNELS for index in unit.convs}))
    split = PreloadedSplit.load(
        data, "val", request.img_size, model.max_stride, request.batch_size, request.max_images, reporter
    )
    if not split.instances:
        raise YolorError(
            "the val split has no labelled objects, so every mAP is 0 and nothing can be compared",
            hint="scan on a split with labels",
        )
    scan = scan_model(
        model,
        split,
        units,
        request.amounts,
        method=request.method,
        img_size=request.img_size,
        reporter=reporter,
        device=select_device(request.device),
    )
    if not scan.trials:
        raise YolorError(
            "no trial pruned anything: every amount rounds to 0 channels of every unit",
            hint="raise --amounts (int(amount x channels) channels go from each conv)",
        )
    if request.runtime is not None:
        scan = with_latency(scan, model, units, request, output, reporter)
    notes = list(loaded.notes)
    notes += [f"{block.name} cannot be removed: {block.reason}" for block in refused]
    if scan.skipped:
        notes.append(
            f"{len(scan.skipped)} of {len(scan.trials) + len(scan.skipped)} trials pruned nothing (the amount rounds "
            "to 0 channels of a narrow conv) and are left out"
        )
    result = SensitivityResult(
        scan=scan,
        unit=request.unit,
        amounts=tuple(request.amounts),
        method=request.method,
        img_size=request.img_size,
        images=split.images,
        instances=split.instances,
        output=output,
        seconds=0.0,
        notes=notes,
    )
    result.files = _write(result, start, reporter)
    return result


def with_latency(
    scan: SensitivityScan,
    model: DarknetModel,
    units: list[PruneUnit],
    request: SensitivityRequest,
    folder: Path,
    reporter: Reporter,
) -> SensitivityScan:
    """The scan with each trial's latency on ``request.runtime`` (from the folder's cached table, or
    measured into it)."""
    assert request.runtime is not None
    table = unit_latency_table(
        model,
        units,
        request.amounts,
        runtime=request.runtime,
        img_size=request.img_size,
        folder=folder,
        reporter=reporter,
    )
    trials = [
        dataclasses.replace(
            trial,
            latency_ms=table.ms(trial.unit.name, trial.amount),
            latency_saved_ms=table.saved_ms(trial.unit.name, trial.amount),
        )
        for trial in scan.trials
    ]
    return dataclasses.replace(scan, trials=trials, runtime=request.runtime, base_latency_ms=table.base_ms)


def _write(result: SensitivityResult, start: float, reporter: Reporter) -> list[Path]:
    """The csv, the png when matplotlib is there (an earlier scan's png is removed otherwise: it would
    not match), and last the json, whose ``seconds`` then covers everything but its own write."""
    folder = result.output
    folder.mkdir(parents=True, exist_ok=True)
    files = [atomic_write(folder / CSV_NAME, lambda stream: stream.write(_csv_text(result.scan).encode()))]
    png = folder / PNG_NAME
    try:
        require_matplotlib()
    except MissingDependencyError:
        reporter.warning(f"{PNG_NAME} needs matplotlib: pip install 'yolor-cli[plots]'")
        png.unlink(missing_ok=True)
    else:
        files.append(plot_sensitivity(*heat_map(result.scan, result.amounts), png))
    result.seconds = time.perf_counter() - start
    payload = json.dumps(result.payload(), indent=2).encode()
    files.insert(1, atomic_write(folder / JSON_NAME, lambda stream: stream.write(payload)))
    return files


def heat_map(scan: SensitivityScan, amounts: Sequence[float]) -> tuple[list[str], list[float], np.ndarray]:
    """Unit names (scan order), amounts (ascending) and their mAP50-95 drops, NaN where skipped."""
    units = list(dict.fromkeys(trial.unit.name for trial in scan.trials))
    columns = sorted({*amounts, *(trial.amount for trial in scan.trials)})  # a removed block: 1
    drops = np.full((len(units), len(columns)), np.nan)
    for trial in scan.trials:
        drops[units.index(trial.unit.name), columns.index(trial.amount)] = trial.map_drop
    return units, columns, drops


def _csv_text(scan: SensitivityScan) -> str:
    """One row per trial in scan order; ``rank`` is the trial's place in :meth:`SensitivityScan.ranked`."""
    rank = {id(trial): place for place, trial in enumerate(scan.ranked(), 1)}
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for trial in scan.trials:
        row = _trial_row(trial)
        row["convs"] = " ".join(map(str, trial.unit.convs))
        per_ms = trial.cost_per_ms
        writer.writerow(
            [
                rank[id(trial)],
                *(row[column] for column in CSV_COLUMNS[1 : -1 - LATENCY_COLUMNS]),
                "" if math.isinf(trial.cost) else trial.cost,
                *(row.get(column, "") for column in CSV_COLUMNS[-LATENCY_COLUMNS:-1]),
                "" if per_ms is None or math.isinf(per_ms) else per_ms,
            ]
        )
    return stream.getvalue()
