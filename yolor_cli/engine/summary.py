"""A model's description: per-layer table, parameter count and GFLOPs at an image size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from yolor_cli.engine.darknet import DarknetModel, count_parameters
from yolor_cli.engine.darknet.layers import FeatureLayer


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


def count_gflops(model: DarknetModel, img_size: int) -> float:
    """Forward GFLOPs of one square image (a multiply-add counts 2), as torch's flop counter sees them."""
    model.check_img_size(img_size)
    probe = model.max_stride * PROBE_STRIDES
    was_training = model.training
    model.eval()
    try:
        parameter = next(model.parameters())
        image = torch.zeros(1, model.input_channels, probe, probe, dtype=parameter.dtype,
                            device=parameter.device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(image)
    finally:
        model.train(was_training)
    return counter.get_total_flops() * (img_size / probe) ** 2 / 1e9


def summarize(model: DarknetModel, img_size: int) -> ModelSummary:
    rows = []
    for index, (section, module) in enumerate(zip(model.cfg.layers, model.module_list)):
        if isinstance(module, FeatureLayer):
            sources = ",".join(map(str, module.sources)) or "-"
        else:
            sources = "-1"
        rows.append(LayerRow(index=index, type=section.type, sources=sources,
                             channels=model.layer_channels[index], params=count_parameters(module)))
    return ModelSummary(rows=rows, params=count_parameters(model), gflops=count_gflops(model, img_size),
                        layers=len(rows), nc=model.nc, img_size=img_size, strides=model.strides)
