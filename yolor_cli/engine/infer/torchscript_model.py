"""A ``.torchscript`` file from ``yolor export`` run as an exported detector (eval, detect, benchmark).

The file carries its metadata as an extra file in the archive; its graph was traced on one device
type and in one precision, which the metadata names, so inputs are cast to match.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolor_cli.engine.errors import YolorError, first_line
from yolor_cli.engine.infer.detector_base import ExportedDetector, parse_metadata

METADATA_FILE = "yolor.json"  # the extra file inside a .torchscript archive
SUFFIX = ".torchscript"
INPUT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@contextlib.contextmanager
def quiet_torchscript() -> Iterator[None]:
    """torch 2.14 marks torch.jit deprecated on every call, and the tracer notes that channel counts
    are constants (they are: a Darknet model's widths are fixed); neither is news to the user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


@dataclass
class TorchScriptDetector(ExportedDetector):
    module: Any = None
    device: torch.device = torch.device("cpu")
    input_dtype: torch.dtype = torch.float32

    @property
    def runtime(self) -> str:
        return "torchscript"

    @classmethod
    def load(cls, path: Path, device: torch.device) -> TorchScriptDetector:
        if not path.is_file():
            raise YolorError(f"TorchScript file not found: {path}")
        extra = {METADATA_FILE: ""}
        try:
            with quiet_torchscript():
                module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        except Exception as error:  # torch.jit raises RuntimeError subclasses with C++ traces
            raise YolorError(f"{path} is not a TorchScript file torch can load ({first_line(error)})") from None
        try:
            metadata = {key: str(value) for key, value in json.loads(extra[METADATA_FILE] or "{}").items()}
        except ValueError:
            raise YolorError(f"{path} has unreadable metadata", hint="export it again with yolor export") from None
        if not metadata:
            raise YolorError(f"{path} was not written by yolor export (no {METADATA_FILE} inside)")
        traced_on = metadata.get("device", "cpu")
        if traced_on != device.type:
            raise YolorError(
                f"{path} was traced on {traced_on} and runs there only",
                hint=f"use --device {'cpu' if traced_on == 'cpu' else '0'}, or export it again on this device",
            )
        names, nc, stride = parse_metadata(path, metadata, None)
        precision = metadata.get("precision", "fp16" if metadata.get("half") == "true" else "fp32")
        size = int(metadata.get("img_size", 0))
        batch = int(metadata.get("batch", 1))
        dynamic = metadata.get("dynamic", "none")
        return cls(
            path=path,
            names=names,
            nc=nc,
            stride=stride,
            # a traced graph replays the shapes it was traced with, except where the exporter made axes dynamic
            fixed_batch=None if "batch" in dynamic else batch,
            fixed_size=None if "height" in dynamic or not size else (size, size),
            precision=precision,
            module=module,
            device=device,
            input_dtype=INPUT_DTYPES.get(precision, torch.float32),
        )

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            images = torch.from_numpy(batch).to(self.device, self.input_dtype)
            return self.module(images).float().cpu().numpy()
