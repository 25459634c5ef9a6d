"""Devices: the one place that turns ``--device`` into a torch device, and decides a run's AMP mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from yolor_cli.engine.errors import YolorError


def channels_last(module: torch.nn.Module, device: torch.device | None = None) -> torch.nn.Module:
    """``module`` on ``device`` with its convolution weights in channels-last memory layout (a faster
    forward and backward on CPU convolutions: benchmarks/README.md#train-step); every other parameter
    keeps the default layout. A (1, C, 1, 1) implicit vector converted with the whole module would keep
    channels-last strides while its gradient (a sum over a broadcast) comes back contiguous: DDP then
    warns "Grad strides do not match bucket view strides" and copies that gradient on every step.
    Only convolutions gain from the layout, so only their weights get it."""
    module.to(device)
    for layer in module.modules():
        if isinstance(layer, torch.nn.Conv2d):
            layer.to(memory_format=torch.channels_last)
            continue
        for parameter in layer.parameters(recurse=False):  # a model converted whole before: undo it
            if parameter.dim() == 4 and parameter.stride() != _default_strides(parameter.shape):
                parameter.data = parameter.data.clone(memory_format=torch.contiguous_format)
    return module


def _default_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def cuda_indices(device: str) -> list[str]:
    """The GPU numbers a ``--device`` names (none for ``''`` and ``cpu``); checks the spelling only."""
    spec = device.strip().lower().replace("cuda:", "")
    if spec in ("", "auto", "cpu"):
        return []
    indices = [part.strip() for part in spec.split(",") if part.strip()]
    if not indices or not all(part.isdigit() for part in indices):
        raise YolorError(f"--device {device!r} is not understood", hint="use cpu, 0, or 0,1")
    return indices


def select_device(device: str = "") -> torch.device:
    """``''`` = first GPU if there is one, else CPU; ``cpu``; ``0`` or ``0,1`` = CUDA (first listed
    for single-process work)."""
    spec = device.strip().lower()
    if spec in ("", "auto"):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    indices = cuda_indices(device)
    if not torch.cuda.is_available():
        raise YolorError(
            f"--device {device} asks for a CUDA GPU, but CUDA is not available here",
            hint="use --device cpu (or leave --device out)",
        )
    count = torch.cuda.device_count()
    missing = [int(i) for i in indices if int(i) >= count]
    if missing:
        raise YolorError(f"--device {device}: this machine has {count} GPU(s), numbered 0..{count - 1}")
    return torch.device(f"cuda:{indices[0]}")


# ---- mixed precision ------------------------------------------------------------------------------

# CPU features that run bf16 convolutions and matmuls in hardware (oneDNN picks them up); the names are
# both torch's capability keys and /proc/cpuinfo flags. Without them oneDNN emulates bf16 and a step
# is slower than in fp32, so AMP stays off.
CPU_BF16_FEATURES = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX-512 BF16"))
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class AmpMode:
    """How a training step runs: autocast to ``dtype`` (None: off), with a GradScaler or not, and why."""

    dtype: torch.dtype | None
    scaler: bool
    reason: str

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def name(self) -> str:
        """fp16, bf16 or off: how opt.yaml names the mode a run trained with."""
        if not self.enabled:
            return "off"
        return "bf16" if self.dtype == torch.bfloat16 else "fp16"

    def describe(self) -> str:
        """The line a run prints before its first epoch."""
        if not self.enabled:
            return f"AMP off: {self.reason}"
        name = "bf16" if self.dtype == torch.bfloat16 else "fp16"
        scaling = " with gradient scaling" if self.scaler else ""
        return f"AMP: {name} autocast{scaling} ({self.reason})"


def _torch_cpu_flags() -> set[str] | None:
    """The CPU features torch itself detected (a private probe: None where this torch lacks it)."""
    probe = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    if probe is None:
        return None
    try:
        return {name for name, present in probe().items() if present is True}
    except (RuntimeError, AttributeError, TypeError):
        return None


def _cpuinfo_flags() -> set[str]:
    """The flags of the first CPU in /proc/cpuinfo (empty where there is no such file, e.g. macOS)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_bf16_feature() -> str | None:
    """The name of the feature that makes bf16 fast on this CPU ("AMX-BF16", "AVX-512 BF16"), or None."""
    flags = _torch_cpu_flags()
    if flags is None:
        flags = _cpuinfo_flags()
    return next((name for flag, name in CPU_BF16_FEATURES if flag in flags), None)


def resolve_amp(device: torch.device, requested: bool | None = None) -> AmpMode:
    """The AMP mode of a run on ``device``: ``requested`` True/False is ``--amp``/``--no-amp``, None is
    automatic. CUDA: fp16 with a GradScaler (fp16's range needs it), on unless refused. A CPU with bf16
    in hardware: bf16, whose fp32-sized exponent needs no scaler, only when asked for: on the demo one
    bf16 seed fell far behind fp32, so bf16 is not yet shown to train as well
    (benchmarks/README.md#demo). Anything else trains in fp32."""
    if requested is False:
        return AmpMode(None, False, "--no-amp")
    if device.type == "cuda":
        return AmpMode(torch.float16, True, "CUDA")
    if device.type != "cpu":
        return AmpMode(None, False, f"no autocast for {device.type} devices here")
    feature = cpu_bf16_feature()
    if feature is None:
        return AmpMode(None, False, "this CPU has neither AMX-BF16 nor AVX-512 BF16, without which bf16 is slower")
    if requested is None:
        return AmpMode(None, False, f"bf16 on a CPU is opt-in; --amp turns it on (this CPU has {feature})")
    return AmpMode(torch.bfloat16, False, f"CPU has {feature}")


# ---- inference precision --------------------------------------------------------------------------

NO_BF16_HARDWARE = "this CPU has neither AMX-BF16 nor AVX-512 BF16, without which bf16 is slower than fp32"
PRECISION_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


@dataclass(frozen=True)
class InferencePrecision:
    """The number type a model runs in for ``yolor eval`` and ``yolor detect``, and why: printed with
    the results, since a figure measured in bf16 is not quite the fp32 one."""

    dtype: torch.dtype
    reason: str
    # A line for the user when --half was asked for and is not honoured (None otherwise).
    note: str | None = None
    # How an exported file runs when its dtype alone does not say it: "int8", "int8+bf16".
    label: str | None = None

    @property
    def name(self) -> str:
        """fp32, fp16 or bf16 (int8 for a quantized file): the JSON output's "precision"."""
        return self.label or PRECISION_NAMES[self.dtype]

    def describe(self) -> str:
        return f"{self.name} ({self.reason})"


FP32 = InferencePrecision(torch.float32, "default")


def resolve_inference_precision(device: torch.device, requested: bool | None = None) -> InferencePrecision:
    """The precision of inference on ``device``: ``requested`` True/False is ``--half``/``--no-half``,
    None is automatic. A CPU with bf16 in hardware runs bf16 unless refused: inference has no
    gradients to lose, the mAP barely moves and the forward runs much faster
    (benchmarks/README.md#precision). CUDA keeps fp16 as an
    opt-in, as before. Without bf16 hardware oneDNN emulates bf16 and is slower than fp32, so
    ``--half`` is noted and ignored, not an error: a script that passes it runs on every machine."""
    if requested is False:
        return InferencePrecision(torch.float32, "--no-half")
    if device.type == "cuda":
        if requested:
            return InferencePrecision(torch.float16, "CUDA, --half")
        return InferencePrecision(torch.float32, "CUDA: --half for fp16")
    if device.type != "cpu":
        return InferencePrecision(torch.float32, f"no reduced precision for {device.type} devices here")
    feature = cpu_bf16_feature()
    if feature is None:
        if requested:
            return InferencePrecision(
                torch.float32,
                "--half ignored: this CPU has no bf16 hardware (AMX-BF16 or AVX-512 BF16)",
                note=f"--half is ignored: {NO_BF16_HARDWARE}; running in fp32",
            )
        return InferencePrecision(torch.float32, NO_BF16_HARDWARE)
    if requested:
        return InferencePrecision(torch.bfloat16, f"CPU has {feature}, --half")
    return InferencePrecision(torch.bfloat16, f"CPU has {feature}; --no-half for fp32")
