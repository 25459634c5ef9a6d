"""The layer modules a Darknet YOLOR model is made of.

Modules that read earlier layers' outputs subclass :class:`FeatureLayer` and receive those
outputs explicitly; the model owns the bookkeeping. Attribute and parameter names follow the
official ``models/models.py`` so official state_dicts load key for key.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class FeatureLayer(nn.Module):
    """A layer whose inputs are earlier layers' outputs (``sources``, absolute indices)."""

    def __init__(self, sources: tuple[int, ...]) -> None:
        super().__init__()
        self.sources = tuple(sources)

    def forward(self, x: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class Route(FeatureLayer):
    """``[route]``: one earlier output, or several concatenated along channels."""

    def forward(self, x: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        return features[0] if len(features) == 1 else torch.cat(features, 1)


class Shortcut(FeatureLayer):
    """``[shortcut]``: residual sum with earlier outputs, optionally with learnt weights.

    Channel counts may differ, as in the official layer: the sum covers the common channels and
    the input's extra channels pass through. It is written without in-place slice assignment.
    """

    def __init__(self, sources: tuple[int, ...], weighted: bool = False) -> None:
        super().__init__(sources)
        self.weighted = weighted
        self.n = len(sources) + 1
        if weighted:
            self.w = nn.Parameter(torch.zeros(self.n))

    def forward(self, x: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        if self.weighted:
            weights = torch.sigmoid(self.w) * (2 / self.n)
            x = x * weights[0]
        for position, feature in enumerate(features):
            if self.weighted:
                feature = feature * weights[position + 1]
            channels, feature_channels = x.shape[1], feature.shape[1]
            if channels == feature_channels:
                x = x + feature
            elif channels > feature_channels:
                x = torch.cat((x[:, :feature_channels] + feature, x[:, feature_channels:]), 1)
            else:
                x = x + feature[:, :channels]
        return x


class ShiftChannels(FeatureLayer):
    """``[shift_channels]``: adds an implicit vector (broadcast over batch and space)."""

    def forward(self, x: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        return x + features[0]


class ControlChannels(FeatureLayer):
    """``[control_channels]``: multiplies by an implicit vector (broadcast)."""

    def forward(self, x: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        return x * features[0]


class ImplicitAdd(FeatureLayer):
    """``[implicit_add]``: a learnt (1, C, 1, 1) vector, initialised near 0."""

    def __init__(self, channels: int) -> None:
        super().__init__(())
        self.channel = channels
        self.implicit = nn.Parameter(torch.zeros(1, channels, 1, 1))
        nn.init.normal_(self.implicit, std=0.02)

    def forward(self, x: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        return self.implicit


class ImplicitMul(FeatureLayer):
    """``[implicit_mul]``: a learnt (1, C, 1, 1) vector, initialised near 1."""

    def __init__(self, channels: int) -> None:
        super().__init__(())
        self.channel = channels
        self.implicit = nn.Parameter(torch.ones(1, channels, 1, 1))
        nn.init.normal_(self.implicit, mean=1.0, std=0.02)

    def forward(self, x: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        return self.implicit


class Reorg(nn.Module):
    """``[reorg]``: space-to-depth by 2, in the official channel order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)


class Silence(nn.Module):
    """``[silence]``: passes its input through unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class YoloLayer(nn.Module):
    """``[yolo]``: reshapes a head's map and, in eval mode, decodes boxes.

    Anchors are a non-persistent buffer (official state_dicts have no key for them) so they move
    with the model; the grid is built from the input on its device, so a model moved, reloaded or
    pruned needs no patching. Decoding concatenates instead of assigning into slices, which keeps
    ScatterND out of exported graphs.
    """

    anchors: torch.Tensor

    def __init__(self, anchors: list[tuple[float, float]], nc: int, stride: float, level: int) -> None:
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.na = len(anchors)
        self.stride = float(stride)
        self.level = level
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32), persistent=False)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> YoloLayer:
        """Anchors stay float32 when the model goes to bf16: bf16 rounds an anchor of 459 px to 460
        (decoding is in float32 then, see :meth:`decode`). fp16 holds these integers exactly, so
        ``.half()`` still casts them, and exported fp16 graphs keep their fp16 constants."""
        anchors = self.anchors
        super()._apply(fn, recurse)
        if self.anchors.dtype == torch.bfloat16:
            self.anchors = anchors.to(device=self.anchors.device, dtype=torch.float32)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        bs, _, ny, nx = x.shape
        p = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
        if self.training:
            return p
        return self.decode(p), p

    def decode(self, p: torch.Tensor) -> torch.Tensor:
        """Raw map (bs, na, ny, nx, no) -> (bs, na*ny*nx, no): cx, cy, w, h in pixels, scores.

        A bf16 map is decoded in float32: bf16 keeps 8 significant bits, so a centre near 600 px would
        land on a 4-px step. fp16 (11 bits, a 0.5-px step there) and fp32 maps decode in their own
        type, which keeps the exported fp16 and fp32 graphs as they were."""
        if p.dtype == torch.bfloat16:
            p = p.float()
        bs, _, ny, nx, _ = p.shape
        # float32 ranges, then cast: a half-precision Range cannot be exported to ONNX
        ys = torch.arange(ny, device=p.device, dtype=torch.float32).to(p.dtype)
        xs = torch.arange(nx, device=p.device, dtype=torch.float32).to(p.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack((grid_x, grid_y), -1).view(1, 1, ny, nx, 2)
        y = p.sigmoid()
        xy = (y[..., 0:2] * 2.0 - 0.5 + grid) * self.stride
        wh = (y[..., 2:4] * 2.0) ** 2 * self.anchors.to(p.dtype).view(1, self.na, 1, 1, 2)
        return torch.cat((xy, wh, y[..., 4:]), -1).view(bs, -1, self.no)
