"""The YOLOR model built from a Darknet cfg.

``module_list`` has one entry per cfg section with the official names inside, so official
state_dicts load unchanged. The cfg travels with the model (``model.cfg``), which is what lets a
pruned or re-classed model be saved as plain tensors plus text and rebuilt anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from yolor_cli.engine.errors import CfgError, YolorError
from yolor_cli.engine.model.darknet.cfg import DarknetCfg
from yolor_cli.engine.model.darknet.heads import Head, check_level_count, find_heads
from yolor_cli.engine.model.darknet.layers import FeatureLayer, YoloLayer
from yolor_cli.engine.model.darknet.specs import MAX_CHANNELS, BuildContext, LayerSpec, parse_layer

DEFAULT_INPUT_CHANNELS = 3
# Bias priors of the official head init: about 8 objects per 640x640 image, class scores near 1/nc.
PRIOR_OBJECTS_PER_IMAGE = 8
PRIOR_IMAGE_SIZE = 640
PRIOR_CLASS_PROBABILITY = 0.6


@dataclass
class ForwardState:
    """A forward pass stopped between two modules: ``x`` the last output (the input images before
    module 0), ``kept`` the earlier outputs that later modules read (by module index), and ``levels``
    the detection levels produced so far."""

    x: torch.Tensor
    kept: dict[int, torch.Tensor] = field(default_factory=dict)
    levels: list = field(default_factory=list)


class DarknetModel(nn.Module):
    """A detector described by a Darknet cfg.

    Train mode returns the raw maps, one (bs, na, ny, nx, 5+nc) tensor per level. Eval mode
    returns ``(decoded, raw)``: decoded is (bs, N, 5+nc) with cx, cy, w, h in input pixels,
    objectness and class probabilities.
    """

    def __init__(self, cfg: DarknetCfg) -> None:
        super().__init__()
        self.cfg = cfg.copy()
        self.specs: list[LayerSpec] = [parse_layer(section, cfg.source) for section in cfg.layers]
        try:
            input_channels = int(cfg.net.options.get("channels", DEFAULT_INPUT_CHANNELS))
        except ValueError:
            raise CfgError(f"{cfg.net.where(cfg.source, 'channels')}: channels must be an integer") from None

        ctx = BuildContext(source=cfg.source, index=0, channels=[], strides=[], input_channels=input_channels)
        modules: list[nn.Module] = []
        for index, spec in enumerate(self.specs):
            ctx.index = index
            built = spec.build(ctx)
            if built.channels > MAX_CHANNELS:  # routes and reorgs multiply channels without a filters= line
                raise CfgError(
                    f"{cfg.source}:{spec.line}: layer {index} would have {built.channels} channels, more than "
                    f"the {MAX_CHANNELS} a layer may have",
                    hint="check the layers this one concatenates or reorganises",
                )
            if isinstance(built.module, YoloLayer):
                ctx.levels += 1
            modules.append(built.module)
            ctx.channels.append(built.channels)
            ctx.strides.append(built.stride)
        self.module_list = nn.ModuleList(modules)
        self.heads: list[Head] = find_heads(self.specs, cfg.source)
        check_level_count(self.heads, self.specs, cfg.source)
        self.input_channels = input_channels
        self.layer_channels: list[int] = list(ctx.channels)
        self._needed = {j for m in modules if isinstance(m, FeatureLayer) for j in m.sources}
        self._init_head_biases()

    # ---- description -------------------------------------------------------------------------
    @property
    def yolo_layers(self) -> list[YoloLayer]:
        return [self.module_list[head.yolo] for head in self.heads]  # type: ignore[misc]

    @property
    def nc(self) -> int:
        return self.yolo_layers[0].nc

    @property
    def strides(self) -> list[float]:
        return [layer.stride for layer in self.yolo_layers]

    @property
    def max_stride(self) -> int:
        return int(max(self.strides))

    def check_img_size(self, img_size: int) -> None:
        check_stride_multiple(img_size, self.max_stride)

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor):
        return self.outputs(self.run_modules(ForwardState(x), 0, len(self.module_list)))

    def run_modules(self, state: ForwardState, start: int, stop: int) -> ForwardState:
        """Run modules ``start .. stop-1`` from ``state`` (taken just before module ``start``).

        ``state`` itself is left as it was, so one state can be resumed many times: evaluating
        pruned variants of a model resumes them all from the unpruned model's state at the first
        module they changed (``yolor prune sensitivity``)."""
        x, kept, levels = state.x, dict(state.kept), list(state.levels)
        for index in range(start, stop):
            module = self.module_list[index]
            if isinstance(module, FeatureLayer):
                x = module(x, [kept[j] for j in module.sources])
            elif isinstance(module, YoloLayer):
                levels.append(module(x))
            else:
                x = module(x)
            if index in self._needed:
                kept[index] = x
        return ForwardState(x, kept, levels)

    def outputs(self, state: ForwardState):
        """What :meth:`forward` returns once every module ran: the raw levels in train mode,
        ``(decoded, raw)`` in eval mode."""
        if self.training:
            return state.levels
        decoded, raw = zip(*state.levels)
        return torch.cat(decoded, 1), list(raw)

    def needed_after(self, index: int) -> set[int]:
        """The outputs of modules before ``index`` that modules from ``index`` on read."""
        return {
            j
            for module in list(self.module_list)[index:]
            if isinstance(module, FeatureLayer)
            for j in module.sources
            if j < index
        }

    # ---- transforms ---------------------------------------------------------------------------
    @torch.no_grad()
    def fuse(self) -> DarknetModel:
        """Fold every BatchNorm into its conv for inference; the model must be in eval mode."""
        for index, module in enumerate(self.module_list):
            if isinstance(module, nn.Sequential) and "BatchNorm2d" in module._modules:
                fused = nn.Sequential()
                fused.add_module("Conv2d", fuse_conv_bn_eval(module.Conv2d.eval(), module.BatchNorm2d.eval()))
                if "activation" in module._modules:
                    fused.add_module("activation", module.activation)
                self.module_list[index] = fused
        return self

    @torch.no_grad()
    def _init_head_biases(self) -> None:
        """Objectness and class bias priors on each head conv, as the official model does."""
        for head in self.heads:
            yolo: YoloLayer = self.module_list[head.yolo]  # type: ignore[assignment]
            conv = self.module_list[head.conv].Conv2d
            if conv.bias is None:
                continue
            bias = conv.bias.view(yolo.na, -1)
            bias[:, 4] += math.log(PRIOR_OBJECTS_PER_IMAGE / (PRIOR_IMAGE_SIZE / yolo.stride) ** 2)
            bias[:, 5:] += math.log(PRIOR_CLASS_PROBABILITY / (yolo.nc - 0.99))


# The sizes suggested when an image size is below the stride: the usual fast and full sizes.
SUGGESTED_IMG_SIZES = (320, 640)


def check_stride_multiple(img_size: int, stride: int) -> None:
    """Inputs must be multiples of the largest stride, or routes join maps of different sizes."""
    if img_size < stride:  # 0, negative or too small: no multiple is "near" it
        examples = sorted({max(stride, round(size / stride) * stride) for size in SUGGESTED_IMG_SIZES})
        raise YolorError(
            f"image size {img_size} is smaller than the model's largest stride {stride}",
            hint=f"use a multiple of {stride} such as {' or '.join(map(str, examples))}",
        )
    if img_size % stride:
        nearest = max(stride, round(img_size / stride) * stride)
        raise YolorError(
            f"image size {img_size} is not a multiple of the model's largest stride {stride}",
            hint=f"use --img-size {nearest}",
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
