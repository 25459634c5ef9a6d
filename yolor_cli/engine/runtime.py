"""Devices: the one place that turns ``--device`` into a torch device."""

from __future__ import annotations

import torch

from yolor_cli.engine.errors import YolorError


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
