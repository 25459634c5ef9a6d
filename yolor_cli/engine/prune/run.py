"""``yolor prune conv|layers|global`` as one engine call: load, prune, measure, write an ordinary checkpoint.

The request's target picks its mode from :data:`MODES`, one entry per target type: how the target is
checked against the model (before any slow work) and how it is pruned. With tracking on, the command is
one MLflow run (experiment ``prune``, as ``prune auto``'s default) that names the input's run, and the
pruned checkpoint records it: train -> prune -> export reads as one lineage.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.files import guard_output
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import DarknetModel, count_parameters
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.model.summary import count_gflops
from yolor_cli.engine.prune.pruning import (
    ChannelPruner,
    LayerChange,
    check_bn_rankable,
    check_bn_rankable_globally,
    check_no_grouped_convs,
    check_prunable,
    check_supported,
    conv_of,
    conv_widths,
    convs_between,
    prune_global,
    rebuild,
)
from yolor_cli.engine.prune.request import ConvTargets, GlobalTarget, LayerSpan, PruneRequest
from yolor_cli.engine.reporting import Reporter, SilentReporter
from yolor_cli.engine.tracking.options import tracking_settings
from yolor_cli.engine.tracking.tracker import INPUT_RUN_TAG, RUN_NAME_TAG, Tracker, start_tracking

LATENCY_REPEATS = 5
DEFAULT_EXPERIMENT = "prune"  # prune auto's default experiment too (its --project runs/prune)
TRACKING_FIELDS = ("mlflow", "mlflow_experiment", "mlflow_log_weights")  # how the command is logged, not params
CHECKPOINT_SUFFIXES = (".pt", ".pth")  # what --output may end in: a pruned model is a checkpoint


@dataclass
class ModelCost:
    params: int
    macs: int  # multiply-adds of one image at the report's size
    latency_ms: float | None  # fused, batch 1, CPU median; None when not measured


@dataclass
class PruneResult:
    changes: list[LayerChange]
    before: ModelCost
    after: ModelCost
    img_size: int
    output: Path | None  # None for --dry-run
    notes: list[str] = field(default_factory=list)
    input_run_id: str | None = None  # the MLflow run that wrote the weights, when it was tracked


def measure(model: DarknetModel, img_size: int, latency: bool = True) -> ModelCost:
    macs = round(count_gflops(model, img_size) * 1e9 / 2)  # a whole count (the scaling leaves float noise)
    return ModelCost(
        params=count_parameters(model), macs=macs, latency_ms=latency_ms(model, img_size) if latency else None
    )


@torch.no_grad()
def latency_ms(model: DarknetModel, img_size: int, repeats: int = LATENCY_REPEATS) -> float:
    fused = copy.deepcopy(model).eval().fuse()
    image = torch.zeros(1, model.input_channels, img_size, img_size)
    fused(image)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fused(image)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def default_output(weights: Path) -> Path:
    """``name_pruned.pt`` beside the input, numbered so that no file is ever overwritten."""
    candidate = weights.with_name(f"{weights.stem}_pruned.pt")
    number = 2
    while candidate.exists():
        candidate = weights.with_name(f"{weights.stem}_pruned{number}.pt")
        number += 1
    return candidate


def _destination(weights: Path, output: str | Path | None, overwrite: bool) -> Path:
    destination = Path(output) if output else default_output(weights)
    # A pruned model is a checkpoint: never written under another format's name (m.onnx).
    return guard_output(destination, inputs=[weights], overwrite=overwrite, suffixes=CHECKPOINT_SUFFIXES)


def _checked_local(model: DarknetModel, convs: list[int], method: str) -> list[int]:
    """``prune conv`` and ``prune layers`` rank channels conv by conv: no grouped convs, and bn
    ranking needs trained scales in every conv it prunes."""
    check_no_grouped_convs(model)
    if method == "bn":
        check_bn_rankable(model, convs)
    return convs


def _plan_convs(model: DarknetModel, target: ConvTargets, method: str, notes: list[str]) -> list[int]:
    for index in target.layers:
        check_prunable(model, index)
    return _checked_local(model, list(target.layers), method)


def _plan_span(model: DarknetModel, target: LayerSpan, method: str, notes: list[str]) -> list[int]:
    last = len(model.module_list) - 1
    if target.upto > last:
        notes.append(f"--upto {target.upto} is past the last module ({last}); pruning up to {last}")
    convs = convs_between(model, target.start, target.upto)
    if not convs:
        raise YolorError(
            f"no prunable conv in modules {target.start}..{target.upto}", hint="see the indices with yolor info"
        )
    return _checked_local(model, convs, method)


def _plan_global(model: DarknetModel, target: GlobalTarget, method: str, notes: list[str]) -> list[int]:
    if method == "bn":
        check_bn_rankable_globally(model)
    return []  # the convs are chosen by ranking, while pruning


def _prune_local(
    model: DarknetModel, target: ConvTargets | LayerSpan, convs: list[int], request: PruneRequest
) -> DarknetModel:
    pruner = ChannelPruner(model, method=request.method, seed=request.seed)
    for index in convs:
        pruner.prune_conv(index, target.amount)
    return model


def _prune_global(model: DarknetModel, target: GlobalTarget, convs: list[int], request: PruneRequest) -> DarknetModel:
    return prune_global(model, target, method=request.method)


@dataclass(frozen=True)
class Mode:
    """How one kind of target is checked against the model, pruned, and explained when it prunes nothing."""

    command: str  # the subcommand: prune conv, prune layers, prune global
    plan: Callable[[DarknetModel, Any, str, list[str]], list[int]]  # the convs to prune, checked
    prune: Callable[[DarknetModel, Any, list[int], PruneRequest], DarknetModel]
    nothing_pruned: str
    nothing_pruned_hint: str


LOCAL_NOTHING = (
    "the amount rounds to 0 channels, or the layers are already as small as their coupled partners allow",
    "raise --amount (int(amount x channels) channels go from each conv)",
)
MODES: dict[type, Mode] = {
    ConvTargets: Mode("prune conv", _plan_convs, _prune_local, *LOCAL_NOTHING),
    LayerSpan: Mode("prune layers", _plan_span, _prune_local, *LOCAL_NOTHING),
    GlobalTarget: Mode(
        "prune global", _plan_global, _prune_global, "the ratio rounds to 0 channels in every group", "raise --ratio"
    ),
}


def prune(request: PruneRequest, reporter: Reporter | None = None) -> PruneResult:
    """Prune as ``request.target`` says: the convs of a :class:`ConvTargets` or every conv of a
    :class:`LayerSpan`, each by ``int(amount * channels)`` channels, or a :class:`GlobalTarget`.
    The request checked its options when built; everything that depends on the model is checked
    here before the slow work (measuring, pruning). Logged to MLflow as the request says (one run,
    open while the pruned checkpoint is written, so the file records it)."""
    reporter = reporter or SilentReporter()
    mode = MODES[type(request.target)]
    settings = tracking_settings(
        mlflow=request.mlflow,
        experiment=request.mlflow_experiment,
        log_weights=request.mlflow_log_weights,
        default_experiment=DEFAULT_EXPERIMENT,
    )
    with start_tracking(settings, reporter, command=mode.command) as tracker:
        result = _prune(request, mode)
        _log_prune(tracker, request, result)
        return result


def _log_prune(tracker: Tracker, request: PruneRequest, result: PruneResult) -> None:
    """The prune's run: the input's run (lineage), the request (the target's options as ``target.*``),
    the cost before and after, and with --mlflow-log-weights the pruned checkpoint."""
    tracker.tags(
        {
            RUN_NAME_TAG: f"prune {request.weights.name}",
            "yolor.weights": str(request.weights.resolve()),
            "yolor.output": str(result.output.resolve()) if result.output else None,
            "yolor.cfg": request.cfg or f"from {request.weights}",
            INPUT_RUN_TAG: result.input_run_id,
        }
    )
    tracker.params({k: v for k, v in dataclasses.asdict(request).items() if k not in TRACKING_FIELDS})
    metrics: dict[str, float | None] = {"layers_changed": float(len(result.changes))}
    for when, cost in (("before", result.before), ("after", result.after)):
        metrics[f"{when}/params"] = float(cost.params)
        metrics[f"{when}/macs"] = float(cost.macs)
        metrics[f"{when}/latency_ms"] = cost.latency_ms
    metrics["macs_fraction"] = result.after.macs / result.before.macs if result.before.macs else None
    tracker.metrics(metrics)
    if tracker.log_weights and result.output is not None:
        tracker.artifact(result.output, "weights")


def _prune(request: PruneRequest, mode: Mode) -> PruneResult:
    destination = None if request.dry_run else _destination(request.weights, request.output, request.overwrite)
    loaded = load_model(cfg=request.cfg, weights=request.weights, trust_pickle=request.trust_pickle)
    model = loaded.model.eval()
    model.check_img_size(request.img_size)
    check_supported(model)
    notes = list(loaded.notes)
    convs = mode.plan(model, request.target, request.method, notes)
    before = measure(model, request.img_size, request.latency)
    widths = conv_widths(model)
    model = mode.prune(model, request.target, convs, request)
    changes = [
        LayerChange(module=i, before=width, after=conv_of(model, i).out_channels)
        for i, width in widths.items()
        if conv_of(model, i).out_channels != width
    ]
    if not changes:
        raise YolorError(
            f"nothing was pruned, so nothing was written: {mode.nothing_pruned}", hint=mode.nothing_pruned_hint
        )
    pruned = rebuild(model)
    after = measure(pruned, request.img_size, request.latency)
    collapsed = [c for c in changes if c.collapsed]
    if collapsed:
        notes.append(
            f"{len(collapsed)} layer(s) are left with fewer than 8 channels "
            f"({', '.join(str(c.module) for c in collapsed)}): expect lost accuracy there"
        )
    if destination is not None:
        save_checkpoint(Checkpoint(cfg=pruned.cfg, model_state=pruned.state_dict(), names=loaded.names), destination)
    return PruneResult(
        changes=changes,
        before=before,
        after=after,
        img_size=request.img_size,
        output=destination,
        notes=notes,
        input_run_id=loaded.checkpoint.mlflow_run_id if loaded.checkpoint is not None else None,
    )
