"""What every exported detector shares, whatever runs it: the metadata rules and a fixed batch run in
padded chunks. The runtime modules (onnx_model, openvino_model, torchscript_model) subclass
:class:`ExportedDetector`; :mod:`~yolor_cli.engine.infer.exported` chooses among them. This module
imports neither, so the runtimes and the chooser never import each other in a circle."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from yolor_cli.engine.errors import YolorError

DEFAULT_STRIDE = 32  # YOLOR's largest stride, for files without our metadata


@dataclass
class ExportedDetector:
    """What every exported runtime shares; subclasses load the file and run one batch."""

    path: Path
    names: list[str] | None
    nc: int
    stride: int
    fixed_batch: int | None  # None when the batch axis is dynamic
    fixed_size: tuple[int, int] | None  # (h, w); None when height and width are dynamic
    precision: str  # what the file computes in: "fp32", "fp16", "bf16", "int8" (int8 with float parts)
    notes: list[str] = field(default_factory=list)

    @property
    def runtime(self) -> str:
        raise NotImplementedError

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """One float32 (bs, 3, h, w) batch of the file's own batch size -> (bs, N, 5+nc)."""
        raise NotImplementedError

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.float().cpu().numpy()
        count = len(batch)
        if self.fixed_batch is None:
            outputs = [self.run_batch(batch)]
        else:  # a fixed batch: run in chunks of that size, padding the last one with blank images
            outputs = []
            for start in range(0, count, self.fixed_batch):
                chunk = batch[start : start + self.fixed_batch]
                padding = self.fixed_batch - len(chunk)
                if padding:
                    chunk = np.concatenate([chunk, np.zeros((padding, *chunk.shape[1:]), chunk.dtype)])
                outputs.append(self.run_batch(chunk))
        return torch.from_numpy(np.concatenate(outputs)[:count].astype(np.float32))


def parse_metadata(path: Path, metadata: dict[str, str], output_width: int | None) -> tuple[list[str] | None, int, int]:
    """``names``, ``nc`` and ``stride`` as ``yolor export`` records them; ``nc`` falls back to the
    output's width (5 + nc) for files made elsewhere."""
    try:
        if "nc" in metadata:
            nc = int(metadata["nc"])
        elif output_width is not None:
            nc = output_width - 5
        else:
            raise ValueError("no nc")
        stride = int(metadata.get("stride", DEFAULT_STRIDE))
        names = json.loads(metadata["names"]) if "names" in metadata else None
    except (TypeError, ValueError):
        raise YolorError(
            f"{path} has unreadable metadata (nc, stride or names)", hint="export it again with yolor export"
        ) from None
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise YolorError(
            f"{path}: its 'names' metadata is not a list of class names", hint="export it again with yolor export"
        )
    if nc < 1 or stride < 1:
        raise YolorError(f"{path} has nc={nc}, stride={stride}: not a detector's output")
    return names, nc, stride
