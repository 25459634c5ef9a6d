"""Typed layer specs and the registry that maps cfg section names to them.

Each spec parses and validates one section (errors carry file and line) and knows how to build
its module from the channels and strides of the layers before it. The registry is a plain
dict filled by a decorator: no ``eval`` and no lookup in ``globals()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from torch import nn

from yolor_cli.engine.errors import CfgError
from yolor_cli.engine.model.darknet.cfg import Section
from yolor_cli.engine.model.darknet.layers import (
    ControlChannels,
    ImplicitAdd,
    ImplicitMul,
    Reorg,
    Route,
    ShiftChannels,
    Shortcut,
    Silence,
    YoloLayer,
)

# Official BatchNorm settings (models/models.py): eps 1e-4, momentum 0.03.
BN_EPS = 1e-4
BN_MOMENTUM = 0.03
LEAKY_SLOPE = 0.1

# Bounds that refuse a cfg which cannot fit in memory before anything is allocated (a typo such as
# filters=100000000 would otherwise end in an allocation error or the OOM killer). Official models
# stay far below them: their widest layer has 2048 channels, their largest convolution a few million
# weights.
MAX_CHANNELS = 65536  # channels of any layer's output
MAX_LAYER_WEIGHTS = 1 << 28  # weights of one convolution (1 GiB in fp32)

ACTIVATIONS: dict[str, Callable[[], nn.Module] | None] = {
    "linear": None,  # no module, as in the official code (keeps module indices inside the Sequential)
    "leaky": lambda: nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
    "silu": nn.SiLU,
    "swish": nn.SiLU,  # x * sigmoid(x), the same function as SiLU
    "mish": nn.Mish,
    "logistic": nn.Sigmoid,
}

# Keys that Darknet's [yolo] carries for its own trainer; accepted and ignored here, as the
# official Python code does. Keys that change the decoding (new_coords, ...) are not accepted.
YOLO_TRAINING_KEYS = frozenset(
    {
        "num",
        "jitter",
        "ignore_thresh",
        "truth_thresh",
        "random",
        "scale_x_y",
        "iou_thresh",
        "cls_normalizer",
        "iou_normalizer",
        "iou_loss",
        "nms_kind",
        "beta_nms",
    }
)


@dataclass
class BuildContext:
    """What a spec needs to know about the layers before it while the model is built."""

    source: str
    index: int
    channels: list[int]  # output channels of layers 0..index-1
    strides: list[float | None]  # spatial stride of each layer's output (None: not spatial)
    input_channels: int
    levels: int = 0  # [yolo] layers built so far

    @property
    def previous_channels(self) -> int:
        return self.channels[-1] if self.channels else self.input_channels

    @property
    def previous_stride(self) -> float | None:
        return self.strides[-1] if self.strides else 1.0

    def absolute(self, reference: int, spec: LayerSpec, key: str) -> int:
        """Negative references are relative to this layer, others absolute (official rule)."""
        target = self.index + reference if reference < 0 else reference
        if not 0 <= target < self.index:
            raise CfgError(
                f"{self.source}:{spec.line}: [{spec.section_type()}] {key}={reference} points to "
                f"layer {target}, but only layers 0..{self.index - 1} come before layer {self.index}"
            )
        return target


@dataclass
class Built:
    """A built layer and what it hands to the next."""

    module: nn.Module
    channels: int
    stride: float | None


@dataclass(frozen=True)
class LayerSpec:
    """Base of all specs; ``line`` is where the section starts in its file."""

    line: int
    section_names: ClassVar[tuple[str, ...]] = ()
    required: ClassVar[frozenset[str]] = frozenset()
    optional: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def section_type(cls) -> str:
        return cls.section_names[0]

    @classmethod
    def from_section(cls, section: Section, source: str) -> LayerSpec:
        allowed = cls.required | cls.optional
        for key in section.options:
            if key not in allowed:
                raise CfgError(
                    f"{section.where(source, key)}: unknown key {key!r} in [{section.type}]",
                    hint=f"keys known for [{section.type}]: {', '.join(sorted(allowed)) or 'none'}",
                )
        for key in sorted(cls.required):
            if key not in section.options:
                raise CfgError(f"{section.where(source)}: [{section.type}] needs {key}=")
        return cls.parse(_Reader(section, source))

    @classmethod
    def parse(cls, reader: _Reader) -> LayerSpec:
        raise NotImplementedError

    def build(self, ctx: BuildContext) -> Built:
        raise NotImplementedError


class _Reader:
    """Typed access to one section's values with file:line errors."""

    def __init__(self, section: Section, source: str) -> None:
        self.section = section
        self.source = source
        self.line = section.line

    def _fail(self, key: str, expected: str) -> CfgError:
        value = self.section.options[key]
        return CfgError(f"{self.section.where(self.source, key)}: {key}={value} is not {expected}")

    def get_int(self, key: str, default: int | None = None) -> int:
        if key not in self.section.options:
            if default is None:
                raise CfgError(f"{self.section.where(self.source)}: [{self.section.type}] needs {key}=")
            return default
        try:
            return int(self.section.options[key])
        except ValueError:
            raise self._fail(key, "an integer") from None

    def get_ints(self, key: str) -> list[int]:
        try:
            return [int(part) for part in self.section.options[key].split(",") if part.strip()]
        except ValueError:
            raise self._fail(key, "a comma-separated list of integers") from None

    def get_floats(self, key: str) -> list[float]:
        try:
            return [float(part) for part in self.section.options[key].split(",") if part.strip()]
        except ValueError:
            raise self._fail(key, "a comma-separated list of numbers") from None

    def get_str(self, key: str, default: str) -> str:
        return self.section.options.get(key, default)


def check_channel_count(reader: _Reader, key: str, channels: int) -> None:
    """Refuse a channel count no machine could hold, naming the file and line, before building."""
    if channels > MAX_CHANNELS:
        raise CfgError(
            f"{reader.section.where(reader.source, key)}: {key}={channels} is more than the {MAX_CHANNELS} "
            "channels a layer may have",
            hint=f"check {key}= in the cfg",
        )


SECTION_TYPES: dict[str, type[LayerSpec]] = {}

SpecT = TypeVar("SpecT", bound=type[LayerSpec])


def register(spec: SpecT) -> SpecT:
    for name in spec.section_names:
        SECTION_TYPES[name] = spec
    return spec


def parse_layer(section: Section, source: str) -> LayerSpec:
    spec = SECTION_TYPES.get(section.type)
    if spec is None:
        raise CfgError(
            f"{section.where(source)}: unknown section [{section.type}]",
            hint=f"known sections: {', '.join(sorted(SECTION_TYPES))}",
        )
    return spec.from_section(section, source)


def _stride_times(stride: float | None, factor: float) -> float | None:
    return None if stride is None else stride * factor


@register
@dataclass(frozen=True)
class ConvSpec(LayerSpec):
    filters: int
    size: int
    stride: tuple[int, int]
    pad: bool
    groups: int
    batch_normalize: bool
    activation: str

    section_names: ClassVar[tuple[str, ...]] = ("convolutional",)
    required: ClassVar[frozenset[str]] = frozenset({"filters"})
    optional: ClassVar[frozenset[str]] = frozenset(
        {"size", "stride", "stride_x", "stride_y", "pad", "groups", "batch_normalize", "activation"}
    )

    @classmethod
    def parse(cls, reader: _Reader) -> ConvSpec:
        if "," in reader.get_str("size", ""):
            raise CfgError(
                f"{reader.section.where(reader.source, 'size')}: multi-size (MixConv) convolutions are not supported"
            )
        stride = reader.get_int("stride", 1)
        activation = reader.get_str("activation", "linear")
        if activation not in ACTIVATIONS:
            raise CfgError(
                f"{reader.section.where(reader.source, 'activation')}: unknown activation {activation!r}",
                hint=f"known activations: {', '.join(ACTIVATIONS)}",
            )
        spec = cls(
            line=reader.line,
            filters=reader.get_int("filters"),
            size=reader.get_int("size", 1),
            stride=(reader.get_int("stride_y", stride), reader.get_int("stride_x", stride)),
            pad=bool(reader.get_int("pad", 0)),
            groups=reader.get_int("groups", 1),
            batch_normalize=bool(reader.get_int("batch_normalize", 0)),
            activation=activation,
        )
        if spec.filters <= 0 or spec.size <= 0 or spec.groups <= 0 or min(spec.stride) <= 0:
            raise CfgError(f"{reader.section.where(reader.source)}: filters, size, stride and groups must be positive")
        check_channel_count(reader, "filters", spec.filters)
        return spec

    def build(self, ctx: BuildContext) -> Built:
        in_channels = ctx.previous_channels
        if in_channels % self.groups or self.filters % self.groups:
            raise CfgError(
                f"{ctx.source}:{self.line}: groups={self.groups} must divide the input "
                f"channels ({in_channels}) and filters ({self.filters})"
            )
        weights = in_channels * (self.filters // self.groups) * self.size * self.size
        if weights > MAX_LAYER_WEIGHTS:
            raise CfgError(
                f"{ctx.source}:{self.line}: this convolution would hold {weights:,} weights "
                f"({in_channels} -> {self.filters} channels, size {self.size}), more than the {MAX_LAYER_WEIGHTS:,} "
                "a layer may have",
                hint="check filters= and size= in the cfg",
            )
        block = nn.Sequential()
        block.add_module(
            "Conv2d",
            nn.Conv2d(
                in_channels,
                self.filters,
                self.size,
                self.stride,
                padding=self.size // 2 if self.pad else 0,
                groups=self.groups,
                bias=not self.batch_normalize,
            ),
        )
        if self.batch_normalize:
            block.add_module("BatchNorm2d", nn.BatchNorm2d(self.filters, eps=BN_EPS, momentum=BN_MOMENTUM))
        make_activation = ACTIVATIONS[self.activation]
        if make_activation is not None:
            block.add_module("activation", make_activation())
        # Strides are equal in every official cfg; the larger one keeps the level bookkeeping simple.
        return Built(block, self.filters, _stride_times(ctx.previous_stride, max(self.stride)))


@register
@dataclass(frozen=True)
class MaxPoolSpec(LayerSpec):
    size: int
    stride: int

    section_names: ClassVar[tuple[str, ...]] = ("maxpool",)
    optional: ClassVar[frozenset[str]] = frozenset({"size", "stride"})

    @classmethod
    def parse(cls, reader: _Reader) -> MaxPoolSpec:
        stride = reader.get_int("stride", 1)
        return cls(line=reader.line, size=reader.get_int("size", stride), stride=stride)

    def build(self, ctx: BuildContext) -> Built:
        pool = nn.MaxPool2d(kernel_size=self.size, stride=self.stride, padding=(self.size - 1) // 2)
        module: nn.Module = pool
        if self.size == 2 and self.stride == 1:  # keep the spatial size, as Darknet does
            module = nn.Sequential()
            module.add_module("ZeroPad2d", nn.ZeroPad2d((0, 1, 0, 1)))
            module.add_module("MaxPool2d", pool)
        return Built(module, ctx.previous_channels, _stride_times(ctx.previous_stride, self.stride))


@register
@dataclass(frozen=True)
class UpsampleSpec(LayerSpec):
    stride: int

    section_names: ClassVar[tuple[str, ...]] = ("upsample",)
    optional: ClassVar[frozenset[str]] = frozenset({"stride"})

    @classmethod
    def parse(cls, reader: _Reader) -> UpsampleSpec:
        return cls(line=reader.line, stride=reader.get_int("stride", 2))

    def build(self, ctx: BuildContext) -> Built:
        return Built(
            nn.Upsample(scale_factor=self.stride, mode="nearest"),
            ctx.previous_channels,
            _stride_times(ctx.previous_stride, 1 / self.stride),
        )


@register
@dataclass(frozen=True)
class ReorgSpec(LayerSpec):
    section_names: ClassVar[tuple[str, ...]] = ("reorg",)

    @classmethod
    def parse(cls, reader: _Reader) -> ReorgSpec:
        return cls(line=reader.line)

    def build(self, ctx: BuildContext) -> Built:
        return Built(Reorg(), 4 * ctx.previous_channels, _stride_times(ctx.previous_stride, 2))


@register
@dataclass(frozen=True)
class SilenceSpec(LayerSpec):
    section_names: ClassVar[tuple[str, ...]] = ("silence",)

    @classmethod
    def parse(cls, reader: _Reader) -> SilenceSpec:
        return cls(line=reader.line)

    def build(self, ctx: BuildContext) -> Built:
        return Built(Silence(), ctx.previous_channels, ctx.previous_stride)


@register
@dataclass(frozen=True)
class RouteSpec(LayerSpec):
    layers: tuple[int, ...]

    section_names: ClassVar[tuple[str, ...]] = ("route",)
    required: ClassVar[frozenset[str]] = frozenset({"layers"})

    @classmethod
    def parse(cls, reader: _Reader) -> RouteSpec:
        layers = tuple(reader.get_ints("layers"))
        if not layers:
            raise CfgError(f"{reader.section.where(reader.source, 'layers')}: [route] needs at least one layer")
        return cls(line=reader.line, layers=layers)

    def build(self, ctx: BuildContext) -> Built:
        sources = tuple(ctx.absolute(layer, self, "layers") for layer in self.layers)
        strides = {ctx.strides[j] for j in sources}
        if len(strides) > 1:
            raise CfgError(
                f"{ctx.source}:{self.line}: [route] layers={','.join(map(str, self.layers))} "
                f"joins maps of different strides {sorted(s for s in strides if s)}"
            )
        return Built(Route(sources), sum(ctx.channels[j] for j in sources), ctx.strides[sources[0]])


@register
@dataclass(frozen=True)
class ShortcutSpec(LayerSpec):
    sources: tuple[int, ...]
    weighted: bool

    section_names: ClassVar[tuple[str, ...]] = ("shortcut",)
    required: ClassVar[frozenset[str]] = frozenset({"from"})
    optional: ClassVar[frozenset[str]] = frozenset({"activation", "weights_type", "weights_normalization"})

    @classmethod
    def parse(cls, reader: _Reader) -> ShortcutSpec:
        if reader.get_str("activation", "linear") != "linear":
            raise CfgError(
                f"{reader.section.where(reader.source, 'activation')}: [shortcut] supports only activation=linear"
            )
        return cls(
            line=reader.line, sources=tuple(reader.get_ints("from")), weighted="weights_type" in reader.section.options
        )

    def build(self, ctx: BuildContext) -> Built:
        sources = tuple(ctx.absolute(layer, self, "from") for layer in self.sources)
        return Built(Shortcut(sources, weighted=self.weighted), ctx.previous_channels, ctx.previous_stride)


@dataclass(frozen=True)
class _ImplicitSpec(LayerSpec):
    filters: int

    required: ClassVar[frozenset[str]] = frozenset({"filters"})
    module_type: ClassVar[type[ImplicitAdd] | type[ImplicitMul]]

    @classmethod
    def parse(cls, reader: _Reader) -> _ImplicitSpec:
        filters = reader.get_int("filters")
        if filters <= 0:
            raise CfgError(f"{reader.section.where(reader.source, 'filters')}: filters must be positive")
        check_channel_count(reader, "filters", filters)
        return cls(line=reader.line, filters=filters)

    def build(self, ctx: BuildContext) -> Built:
        return Built(self.module_type(self.filters), self.filters, None)


@register
@dataclass(frozen=True)
class ImplicitAddSpec(_ImplicitSpec):
    section_names: ClassVar[tuple[str, ...]] = ("implicit_add",)
    module_type: ClassVar[type[ImplicitAdd]] = ImplicitAdd


@register
@dataclass(frozen=True)
class ImplicitMulSpec(_ImplicitSpec):
    section_names: ClassVar[tuple[str, ...]] = ("implicit_mul",)
    module_type: ClassVar[type[ImplicitMul]] = ImplicitMul


@dataclass(frozen=True)
class _ChannelOpSpec(LayerSpec):
    """Shared by [shift_channels] and [control_channels]: x (op) an earlier implicit vector."""

    source: int

    required: ClassVar[frozenset[str]] = frozenset({"from"})
    module_type: ClassVar[type[ShiftChannels] | type[ControlChannels]]

    @classmethod
    def parse(cls, reader: _Reader) -> _ChannelOpSpec:
        sources = reader.get_ints("from")
        if len(sources) != 1:
            raise CfgError(
                f"{reader.section.where(reader.source, 'from')}: [{reader.section.type}] takes "
                "exactly one layer in from="
            )
        return cls(line=reader.line, source=sources[0])

    def build(self, ctx: BuildContext) -> Built:
        source = ctx.absolute(self.source, self, "from")
        if ctx.channels[source] != ctx.previous_channels:
            raise CfgError(
                f"{ctx.source}:{self.line}: [{self.section_type()}] combines "
                f"{ctx.previous_channels} channels with layer {source}, which has "
                f"{ctx.channels[source]}",
                hint="the implicit layer's filters= must equal the channels it is applied to",
            )
        return Built(self.module_type((source,)), ctx.previous_channels, ctx.previous_stride)


@register
@dataclass(frozen=True)
class ShiftChannelsSpec(_ChannelOpSpec):
    section_names: ClassVar[tuple[str, ...]] = ("shift_channels",)
    module_type: ClassVar[type[ShiftChannels]] = ShiftChannels


@register
@dataclass(frozen=True)
class ControlChannelsSpec(_ChannelOpSpec):
    section_names: ClassVar[tuple[str, ...]] = ("control_channels",)
    module_type: ClassVar[type[ControlChannels]] = ControlChannels


@register
@dataclass(frozen=True)
class YoloSpec(LayerSpec):
    anchors: tuple[tuple[float, float], ...]  # all anchors of the model, in pixels
    mask: tuple[int, ...]  # which of them this level uses
    classes: int

    section_names: ClassVar[tuple[str, ...]] = ("yolo",)
    required: ClassVar[frozenset[str]] = frozenset({"anchors", "mask", "classes"})
    optional: ClassVar[frozenset[str]] = YOLO_TRAINING_KEYS

    @classmethod
    def parse(cls, reader: _Reader) -> YoloSpec:
        values = reader.get_floats("anchors")
        if len(values) % 2 or not values:
            raise CfgError(f"{reader.section.where(reader.source, 'anchors')}: anchors must be w,h pairs")
        anchors = tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))
        mask = tuple(reader.get_ints("mask"))
        if not mask or any(not 0 <= m < len(anchors) for m in mask):
            raise CfgError(
                f"{reader.section.where(reader.source, 'mask')}: mask must pick anchors 0..{len(anchors) - 1}"
            )
        classes = reader.get_int("classes")
        if classes < 1:
            raise CfgError(f"{reader.section.where(reader.source, 'classes')}: classes must be at least 1")
        return cls(line=reader.line, anchors=anchors, mask=mask, classes=classes)

    @property
    def outputs(self) -> int:
        """Channels the head conv must produce: anchors x (box 4 + objectness 1 + classes)."""
        return len(self.mask) * (self.classes + 5)

    def build(self, ctx: BuildContext) -> Built:
        if ctx.previous_channels != self.outputs:
            raise CfgError(
                f"{ctx.source}:{self.line}: [yolo] with {len(self.mask)} anchors and classes="
                f"{self.classes} needs {self.outputs} input channels, but the layer before it "
                f"gives {ctx.previous_channels}",
                hint="pass the class count with --nc instead of editing filters= by hand; "
                "it rewrites every dependent filters= line",
            )
        stride = ctx.previous_stride
        if stride is None:
            raise CfgError(f"{ctx.source}:{self.line}: [yolo] must follow a feature map, not an implicit vector")
        layer = YoloLayer([self.anchors[m] for m in self.mask], self.classes, stride, ctx.levels)
        return Built(layer, ctx.previous_channels, stride)
