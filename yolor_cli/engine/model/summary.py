"""A model's description: per-layer table, parameter count and GFLOPs at an image size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from yolor_cli.engine.model.darknet import DarknetModel, count_parameters
from yolor_cli.engine.model.darknet.layers import FeatureLayer


@dataclass(frozen=True)
class LayerRow:
    index: int
    type: str
    sources: str  # "-1" = the previous layer, indices for route-like layers, "-" for none
    channels: int
    params: int


@dataclass(frozen=True)
class ModelSummary:
    rows: list[LayerRow]
    params: int
    gflops: float
    layers: int
    nc: int
    img_size: int
    strides: list[float]


# Counting runs at this many times the largest stride: every map is img_size / stride, so the
# counted (conv and matmul) FLOPs grow exactly with the image area and scale up losslessly.
PROBE_STRIDES = 2


def probe_input(model: DarknetModel) -> torch.Tensor:
    """The smallest input every level sees: PROBE_STRIDES cells of the coarsest one (also what
    pruning traces its dependency graph with)."""
    side = model.max_stride * PROBE_STRIDES
    parameter = next(model.parameters())
    return torch.zeros(1, model.input_channels, side, side, dtype=parameter.dtype, device=parameter.device)


class ConvMacs:
    """Multiply-adds of every conv at the probe size. Output sizes are recorded in one forward;
    channel counts are read at each call, so a model being pruned (channels change, sizes never)
    can be re-counted for free. Convs are all the arithmetic a Darknet model has: this equals torch's
    FlopCounterMode (a test checks it) at a fraction of its cost."""

    def __init__(self, model: DarknetModel) -> None:
        self.convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        self.areas: dict[nn.Module, int] = {}
        self.probe = model.max_stride * PROBE_STRIDES
        hooks = [conv.register_forward_hook(self._record) for conv in self.convs]
        was_training = model.training
        try:
            with torch.no_grad():
                model.eval()(probe_input(model))
        finally:
            model.train(was_training)
            for hook in hooks:
                hook.remove()

    def _record(self, conv: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        self.areas[conv] = output.shape[-2] * output.shape[-1]

    def __call__(self, img_size: int | None = None) -> float:
        """MACs at the probe size, or scaled to a square ``img_size``."""
        macs = sum(
            conv.out_channels
            * conv.in_channels
            // conv.groups
            * conv.kernel_size[0]
            * conv.kernel_size[1]
            * self.areas[conv]
            for conv in self.convs
        )
        return macs * ((img_size / self.probe) ** 2 if img_size else 1.0)


def count_gflops(model: DarknetModel, img_size: int) -> float:
    """Forward GFLOPs of one square image (a multiply-add counts 2)."""
    model.check_img_size(img_size)
    return 2 * ConvMacs(model)(img_size) / 1e9


def summarize(model: DarknetModel, img_size: int) -> ModelSummary:
    rows = []
    for index, (section, module) in enumerate(zip(model.cfg.layers, model.module_list)):
        if isinstance(module, FeatureLayer):
            sources = ",".join(map(str, module.sources)) or "-"
        else:
            sources = "-1"
        rows.append(
            LayerRow(
                index=index,
                type=section.type,
                sources=sources,
                channels=model.layer_channels[index],
                params=count_parameters(module),
            )
        )
    return ModelSummary(
        rows=rows,
        params=count_parameters(model),
        gflops=count_gflops(model, img_size),
        layers=len(rows),
        nc=model.nc,
        img_size=img_size,
        strides=model.strides,
    )
