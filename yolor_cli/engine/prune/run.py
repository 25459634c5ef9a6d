"""``yolor prune conv|layers|global`` as engine calls: load, prune, measure, write an ordinary checkpoint."""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.files import check_output
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import DarknetModel, count_parameters
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.model.summary import count_gflops
from yolor_cli.engine.prune.pruning import (
    ChannelPruner,
    LayerChange,
    check_amount,
    check_bn_rankable,
    check_global_options,
    check_method,
    check_no_grouped_convs,
    check_prunable,
    check_supported,
    conv_of,
    conv_widths,
    convs_between,
    prune_global,
    rebuild,
)

LATENCY_REPEATS = 5


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
    check_output(destination, weights, overwrite)
    return destination


def _local_targets(
    model: DarknetModel, layers: list[int] | None, span: tuple[int, int] | None, notes: list[str]
) -> list[int]:
    """The convs ``prune conv`` / ``prune layers`` will prune, checked before any work is done."""
    if layers is not None:
        repeated = sorted({index for index in layers if layers.count(index) > 1})
        if repeated:
            raise YolorError(
                f"--layer {', '.join(map(str, repeated))} given more than once",
                hint="each --layer is pruned once; to prune it harder, raise --amount",
            )
        for index in layers:
            check_prunable(model, index)
        return list(layers)
    assert span is not None
    start, upto = span
    last = len(model.module_list) - 1
    if start > upto:
        raise YolorError(f"--from {start} is after --upto {upto}")
    if upto > last:
        notes.append(f"--upto {upto} is past the last module ({last}); pruning up to {last}")
    targets = convs_between(model, start, upto)
    if not targets:
        raise YolorError(f"no prunable conv in modules {start}..{upto}", hint="see the indices with yolor info")
    return targets


def prune(
    *,
    weights: str | Path,
    cfg: str | None = None,
    layers: list[int] | None = None,
    span: tuple[int, int] | None = None,
    amount: float | None = None,
    target_macs: float | None = None,
    ratio: float | None = None,
    method: str = "l1",
    img_size: int = 640,
    output: str | Path | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    latency: bool = True,
    seed: int = 0,
    trust_pickle: bool = False,
) -> PruneResult:
    """Prune the convs in ``layers`` (``prune conv``) or every conv in ``span`` = (from, upto) in
    module order (``prune layers``), each by ``int(amount * channels)`` channels; or, with
    ``target_macs`` or ``ratio``, globally (``prune global``). Everything the user can get wrong is
    checked before the slow work (measuring, pruning)."""
    global_mode = layers is None and span is None
    if global_mode:
        check_global_options(target_macs, ratio)
    elif amount is None:
        raise YolorError("no --amount given")
    else:
        check_amount(amount)
    check_method(method)
    destination = None if dry_run else _destination(Path(weights), output, overwrite)
    loaded = load_model(cfg=cfg, weights=weights, trust_pickle=trust_pickle)
    model = loaded.model.eval()
    model.check_img_size(img_size)
    check_supported(model)
    notes = list(loaded.notes)
    targets = None if global_mode else _local_targets(model, layers, span, notes)
    if targets is not None:
        check_no_grouped_convs(model)
        if method == "bn":
            check_bn_rankable(model, targets)
    before = measure(model, img_size, latency)
    widths = conv_widths(model)
    if global_mode:
        model, _ = prune_global(model, target_macs=target_macs, ratio=ratio, method=method)
    else:
        pruner = ChannelPruner(model, method=method, seed=seed)
        for index in targets or []:
            pruner.prune_conv(index, amount)  # type: ignore[arg-type]
    changes = [
        LayerChange(module=i, before=width, after=conv_of(model, i).out_channels)
        for i, width in widths.items()
        if conv_of(model, i).out_channels != width
    ]
    if not changes:
        raise YolorError(
            "nothing was pruned, so nothing was written: "
            + (
                "the ratio rounds to 0 channels in every group"
                if global_mode
                else "the amount rounds to 0 channels, or the layers are already as small as their "
                "coupled partners allow"
            ),
            hint="raise --ratio"
            if global_mode
            else "raise --amount (int(amount x channels) channels go from each conv)",
        )
    pruned = rebuild(model)
    after = measure(pruned, img_size, latency)
    collapsed = [c for c in changes if c.collapsed]
    if collapsed:
        notes.append(
            f"{len(collapsed)} layer(s) are left with fewer than 8 channels "
            f"({', '.join(str(c.module) for c in collapsed)}): expect lost accuracy there"
        )
    if destination is not None:
        save_checkpoint(Checkpoint(cfg=pruned.cfg, model_state=pruned.state_dict(), names=loaded.names), destination)
    return PruneResult(changes=changes, before=before, after=after, img_size=img_size, output=destination, notes=notes)
