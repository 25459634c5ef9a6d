"""Refusing a batch that cannot fit before anything of its size is allocated.

A typo such as ``--batch 100000`` would otherwise allocate until the kernel's OOM killer ends the
process, with no word of why. The estimate is a lower bound: the largest single layer's input and
output for the whole batch, which must both be alive at once whatever the framework does. Real runs
need more (training keeps every layer's activations), so a batch this check refuses can never run,
and every batch that could run passes.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.model.summary import ConvMacs

MEMINFO = Path("/proc/meminfo")
GIB = 1 << 30


def largest_layer_bytes(model: DarknetModel, img_size: int, bytes_per_value: int = 4) -> int:
    """Bytes of the largest conv's input plus its output for one square image of ``img_size``."""
    macs = ConvMacs(model)
    scale = (img_size / macs.probe) ** 2
    largest = 0
    for conv in macs.convs:
        assert isinstance(conv, nn.Conv2d)
        out_area = macs.areas[conv] * scale
        stride = conv.stride[0] * conv.stride[1]
        values = conv.out_channels * out_area + conv.in_channels * out_area * stride
        largest = max(largest, int(values))
    return largest * bytes_per_value


def available_bytes(device: torch.device) -> int | None:
    """Memory a new allocation can take on ``device``: the GPU's free memory, or the host's
    MemAvailable (free plus reclaimable caches); None where it cannot be read."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def check_batch_fits(
    model: DarknetModel, *, batch: int, img_size: int, device: torch.device, batch_option: str = "--batch-size"
) -> None:
    """Refuse ``batch`` images of ``img_size`` when even their largest layer cannot fit on ``device``."""
    available = available_bytes(device)
    if available is None:
        return
    needed = batch * largest_layer_bytes(model, img_size)
    if needed > available:
        raise YolorError(
            f"{batch_option} {batch} at --img-size {img_size} needs at least {needed / GIB:.1f} GiB for one "
            f"layer's activations, but {available / GIB:.1f} GiB is free on {device}",
            hint=f"lower {batch_option} or --img-size",
        )
