"""``yolor prune conv|layers|global`` as engine calls: load, prune, measure, write an ordinary checkpoint."""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from yolor_cli.engine.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.darknet import DarknetModel, count_parameters
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.loading import load_model
from yolor_cli.engine.pruning import ChannelPruner, LayerChange, check_amount, prune_global, rebuild
from yolor_cli.engine.summary import count_gflops

LATENCY_REPEATS = 5


@dataclass
class ModelCost:
    params: int
    macs: float  # multiply-adds of one image at the report's size
    latency_ms: float | None  # fused, batch 1, CPU median; None when not measured


@dataclass
class PruneResult:
    changes: list[LayerChange]
    before: ModelCost
    after: ModelCost
    img_size: int
    output: Path | None  # None for --dry-run
    notes: list[str] = field(default_factory=list)


def measure(model: DarknetModel, img_size: int, latency: bool = True) -> ModelCost:
    macs = count_gflops(model, img_size) * 1e9 / 2
    return ModelCost(params=count_parameters(model), macs=macs,
                     latency_ms=latency_ms(model, img_size) if latency else None)


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


def _prune_local(model: DarknetModel, layers: list[int] | None, span: tuple[int, int] | None, amount: float,
                 method: str, seed: int) -> list[LayerChange]:
    pruner = ChannelPruner(model, method=method, seed=seed)
    if layers is not None:
        for index in layers:  # check them all before touching any
            pruner.check_prunable(index)
        targets = list(layers)
    else:
        assert span is not None
        targets = pruner.convs_between(*span)
        if not targets:
            raise YolorError(f"no prunable conv in modules {span[0]}..{span[1]}", hint="see the indices with yolor info")
    return [change for index in targets if (change := pruner.prune_conv(index, amount)) is not None]


def prune(*, weights: str | Path, cfg: str | None = None, layers: list[int] | None = None,
          span: tuple[int, int] | None = None, amount: float | None = None, target_macs: float | None = None,
          ratio: float | None = None, method: str = "l1", img_size: int = 640,
          output: str | Path | None = None, dry_run: bool = False, latency: bool = True, seed: int = 0,
          trust_pickle: bool = False) -> PruneResult:
    """Prune the convs in ``layers`` (``prune conv``) or every conv in ``span`` = (from, upto) in
    module order (``prune layers``), each by ``int(amount * channels)`` channels; or, with
    ``target_macs`` or ``ratio``, globally (``prune global``)."""
    global_mode = target_macs is not None or ratio is not None
    if not global_mode:
        if amount is None:
            raise YolorError("no --amount given")
        check_amount(amount)
    loaded = load_model(cfg=cfg, weights=weights, trust_pickle=trust_pickle)
    model = loaded.model.eval()
    model.check_img_size(img_size)
    before = measure(model, img_size, latency)
    if global_mode:
        changes = prune_global(model, target_macs=target_macs, ratio=ratio, method=method)
    else:
        changes = _prune_local(model, layers, span, amount, method, seed)  # type: ignore[arg-type]
    pruned = rebuild(model)
    after = measure(pruned, img_size, latency)
    notes = list(loaded.notes)
    if not changes:
        notes.append("no channel was pruned: the amount rounds to 0 channels, or every channel ranks the same "
                     "(untrained BatchNorm scales with --method bn)")
    collapsed = [c for c in changes if c.collapsed]
    if collapsed:
        notes.append(f"{len(collapsed)} layer(s) are left with fewer than 8 channels "
                     f"({', '.join(str(c.module) for c in collapsed)}): expect lost accuracy there")
    destination = None
    if not dry_run:
        destination = Path(output) if output else default_output(Path(weights))
        if destination.resolve() == Path(weights).resolve():
            raise YolorError(f"--output {destination} is the input file", hint="choose another path")
        names = loaded.names
        save_checkpoint(Checkpoint(cfg=pruned.cfg, model_state=pruned.state_dict(), names=names), destination)
    return PruneResult(changes=changes, before=before, after=after, img_size=img_size, output=destination,
                       notes=notes)
