"""OpenVINO IR files: made from our ONNX graphs, carrying the same metadata, run on the CPU.

The only module that imports ``openvino`` (the ``openvino`` extra), so a missing package is reported
in one place with the install hint. OpenVINO's INT8 runs faster on a CPU than onnxruntime's
(benchmarks/README.md#deploy), which is why the IR exists beside the ONNX file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from yolor_cli.engine.errors import MissingDependencyError, YolorError, first_line
from yolor_cli.engine.infer.detector_base import ExportedDetector, parse_metadata
from yolor_cli.engine.quiet_libs import import_quiet, telemetry_off

INSTALL_HINT = "pip install 'yolor-cli[openvino]'"
METADATA_SECTION = "yolor"  # rt_info section of the IR that holds the same keys as the ONNX metadata
# OpenVINO's own names for the precision its CPU plugin computes float layers in. Left unset, the
# plugin picks bf16 on CPUs that have it, so an "fp32" file would not run in fp32: it is always set.
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}


def require_openvino() -> ModuleType:
    try:
        return import_quiet("openvino")  # with its telemetry off
    except ImportError:
        raise MissingDependencyError(
            "this needs the Python package openvino, which is not installed", hint=INSTALL_HINT
        ) from None


def onnx_to_ir(onnx_path: Path, metadata: dict[str, str]) -> Any:
    """The IR of an ONNX file, in memory, with ``metadata`` in its rt_info."""
    ov = require_openvino()
    try:
        with telemetry_off():  # the converter sets OpenVINO's telemetry up again on each call
            model = ov.convert_model(str(onnx_path))
    except Exception as error:  # the converter's own exception types
        raise YolorError(f"OpenVINO could not convert the ONNX graph: {first_line(error)}") from None
    write_metadata(model, metadata)
    return model


def write_metadata(model: Any, metadata: dict[str, str]) -> None:
    for key, value in metadata.items():
        model.set_rt_info(value, [METADATA_SECTION, key])


def read_metadata(model: Any) -> dict[str, str]:
    info = model.get_rt_info()
    if METADATA_SECTION not in info:
        return {}
    return {str(key): str(value.astype(str)) for key, value in info[METADATA_SECTION].items()}


def save_ir(model: Any, xml: Path) -> None:
    """NAME.xml and NAME.bin, weights kept in their own precision (fp32 stays fp32, int8 stays int8)."""
    require_openvino().save_model(model, str(xml), compress_to_fp16=False)


def compile_model(model: Any, precision: str) -> Any:
    """Compiled for low latency on the CPU, computing float layers in ``precision`` ("fp32", "bf16")."""
    ov = require_openvino()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision]}
    return ov.Core().compile_model(model, "CPU", config)


def ir_runner(xml: Path, precision: str = "fp32") -> Callable[[np.ndarray], np.ndarray]:
    """Runs of one IR: float (bs, 3, h, w) in, the output out; compiled at the first run, so an IR
    OpenVINO cannot load is reported as that run's failure."""
    compiled: list[Any] = []

    def run(images: np.ndarray) -> np.ndarray:
        if not compiled:
            compiled.append(compile_model(require_openvino().Core().read_model(str(xml)), precision))
        return np.asarray(compiled[0](images.astype(np.float32))[0], dtype=np.float32)

    return run


def bf16_supported() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 in hardware here (it reports BF16 among its capabilities)."""
    ov = require_openvino()
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@dataclass
class OpenVinoDetector(ExportedDetector):
    """An OpenVINO IR run on the CPU plugin."""

    compiled: Any = None

    @property
    def runtime(self) -> str:
        return "openvino"

    @classmethod
    def load(cls, xml: Path, device: torch.device, precision: str | None = None) -> OpenVinoDetector:
        """``precision``: what float layers compute in ("fp32", "bf16"); None: fp32. An INT8 IR keeps
        its quantized layers in int8 either way."""
        if not xml.is_file():
            raise YolorError(f"OpenVINO file not found: {xml}")
        weights = xml.with_suffix(".bin")
        if not weights.is_file():  # OpenVINO's own text names only its source line (core.cpp)
            raise YolorError(
                f"{xml} has no weights file beside it: {weights} is missing",
                hint="an OpenVINO model is the .xml and the .bin of the same name, in one folder; export it again",
            )
        ov = require_openvino()
        try:
            model = ov.Core().read_model(str(xml))
        except Exception as error:
            raise YolorError(f"{xml} is not an OpenVINO model ({first_line(error)})") from None
        inputs, outputs = model.inputs, model.outputs
        input_shape = inputs[0].get_partial_shape() if len(inputs) == 1 else None
        output_shape = outputs[0].get_partial_shape() if outputs else None
        if (
            input_shape is None
            or output_shape is None
            or input_shape.rank.is_dynamic
            or output_shape.rank.is_dynamic
            or input_shape.rank.get_length() != 4
            or output_shape.rank.get_length() != 3
        ):
            raise YolorError(
                f"{xml} is not a detector exported by yolor export",
                hint="yolor runs OpenVINO files with one (batch, 3, H, W) input and a (batch, N, 5 + nc) output",
            )
        metadata = read_metadata(model)
        width = output_shape[2].get_length() if output_shape[2].is_static else None
        names, nc, stride = parse_metadata(xml, metadata, width)
        dims = [input_shape[i].get_length() if input_shape[i].is_static else None for i in range(4)]
        compute = precision or "fp32"
        notes = [] if device.type == "cpu" else [f"OpenVINO runs on the CPU here, not on {device}"]
        try:
            compiled = compile_model(model, compute)
        except Exception as error:
            raise YolorError(f"OpenVINO cannot compile {xml} for the CPU ({first_line(error)})") from None
        return cls(
            path=xml,
            names=names,
            nc=nc,
            stride=stride,
            fixed_batch=dims[0],
            fixed_size=(dims[2], dims[3]) if dims[2] is not None and dims[3] is not None else None,
            precision=_runs_in(metadata.get("precision", "fp32"), compute),
            notes=notes,
            compiled=compiled,
        )

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.compiled(batch.astype(np.float32))[0])


def _runs_in(file_precision: str, compute: str) -> str:
    """How a file runs: "int8", or "int8+bf16" for an int8 file computing its float layers in bf16."""
    if file_precision == "int8":
        return "int8" if compute == "fp32" else f"int8+{compute}"
    return compute
