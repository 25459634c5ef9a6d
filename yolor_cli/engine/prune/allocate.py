"""How ``yolor prune auto`` shares a step's cut among the layers: one strategy per ``--allocate``.

``global`` ranks every channel of the model against every other (:func:`prune_global`'s MACs search).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yolor_cli.engine.config import DataConfig
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.prune.pruning import check_bn_rankable_globally, prune_global
from yolor_cli.engine.prune.request import AutoPruneRequest, GlobalTarget
from yolor_cli.engine.reporting import Reporter


@dataclass(frozen=True)
class AllocationContext:
    """What an allocator may need besides the model: the run's options and data, the run folder (to
    keep work such as a sensitivity scan across resumes) and the reporter."""

    request: AutoPruneRequest
    data: DataConfig
    run_dir: Path
    reporter: Reporter


@dataclass(frozen=True)
class Allocator:
    """How a step's cut is shared among the layers. ``check`` refuses a model or request it cannot work
    with, before any slow work or folder; ``prune`` brings ``model`` to ``relative`` x its own MACs."""

    check: Callable[[DarknetModel, AutoPruneRequest], None]
    prune: Callable[[DarknetModel, float, AllocationContext], DarknetModel]


def _check_global(model: DarknetModel, request: AutoPruneRequest) -> None:
    if request.method == "bn":
        check_bn_rankable_globally(model)


def _prune_global(model: DarknetModel, relative: float, context: AllocationContext) -> DarknetModel:
    return prune_global(model, GlobalTarget(target_macs=relative), method=context.request.method)


def _sensitivity_unavailable(*_: object) -> DarknetModel:
    raise YolorError("--allocate sensitivity is not available in this build", hint="use --allocate global")


ALLOCATORS: dict[str, Allocator] = {
    "global": Allocator(_check_global, _prune_global),
    "sensitivity": Allocator(_sensitivity_unavailable, _sensitivity_unavailable),
}
