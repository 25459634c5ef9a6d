"""How ``yolor prune auto`` shares a step's cut among the layers: one strategy per ``--allocate``.

``global`` ranks every channel of the model against every other (:func:`prune_global`'s MACs search);
``sensitivity`` spends the MACs budget (or, for a latency target, the milliseconds on ``--runtime``) on
the conv groups whose cut costs least mAP50-95 per MAC (or millisecond) saved in a scan of the input
(:mod:`yolor_cli.engine.prune.sensitivity_allocation`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yolor_cli.engine.config import DataConfig
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.prune.blocks import check_removable_blocks
from yolor_cli.engine.prune.pruning import check_bn_rankable_globally, check_no_grouped_convs, prune_global
from yolor_cli.engine.prune.request import AutoPruneRequest, GlobalTarget
from yolor_cli.engine.prune.sensitivity_allocation import SensitivityAllocation
from yolor_cli.engine.reporting import Reporter


@dataclass(frozen=True)
class AllocationContext:
    """What an allocator may need besides the model: the run's options and data, the run folder (to
    keep work such as a sensitivity scan across resumes) and the reporter."""

    request: AutoPruneRequest
    data: DataConfig
    run_dir: Path
    reporter: Reporter
    target_fraction: float  # the input's MACs fraction the last step reaches


@dataclass(frozen=True)
class Allocator:
    """How a step's cut is shared among the layers. ``check`` refuses a model or request it cannot work
    with, before any slow work or folder; ``prune`` brings ``model`` to ``relative`` x its own MACs."""

    check: Callable[[DarknetModel, AutoPruneRequest], None]
    prune: Callable[[DarknetModel, float, AllocationContext], DarknetModel]
    # The input's MACs fraction the allocator's own plan reaches for a latency target (it then replaces
    # the proportional estimate the run started with); None when it has no such plan.
    target: Callable[[AllocationContext], float | None] = lambda context: None


def _check_global(model: DarknetModel, request: AutoPruneRequest) -> None:
    if request.method == "bn":
        check_bn_rankable_globally(model)


def _prune_global(model: DarknetModel, relative: float, context: AllocationContext) -> DarknetModel:
    return prune_global(model, GlobalTarget(target_macs=relative), method=context.request.method)


def _check_sensitivity(model: DarknetModel, request: AutoPruneRequest) -> None:
    _check_global(model, request)
    check_no_grouped_convs(model)  # the scan prunes conv by conv, which cannot keep groups aligned
    if "block" in request.unit.split("+"):
        check_removable_blocks(model)


def _prune_sensitivity(model: DarknetModel, relative: float, context: AllocationContext) -> DarknetModel:
    allocation = SensitivityAllocation(context.run_dir, context.request, context.target_fraction, context.reporter)
    return allocation.prune(model, relative)


def _sensitivity_target(context: AllocationContext) -> float | None:
    if context.request.target_latency_ms is None:
        return None
    allocation = SensitivityAllocation(context.run_dir, context.request, context.target_fraction, context.reporter)
    return allocation.macs_fraction()


ALLOCATORS: dict[str, Allocator] = {
    "global": Allocator(_check_global, _prune_global),
    "sensitivity": Allocator(_check_sensitivity, _prune_sensitivity, _sensitivity_target),
}
