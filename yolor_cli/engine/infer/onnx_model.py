"""ONNX files: writing them from a fused model, checking the graph, running them with onnxruntime
and OpenCV DNN, and reading their metadata back for ``yolor detect``.

The only module that imports ``onnx``, ``onnxruntime`` and ``onnxslim`` (the ``export`` extra), so a
missing package is reported in one place with the install hint.

Why the TorchScript-based exporter (``dynamo=False``): torch 2.14's default dynamo exporter needs
``onnxscript`` and takes far longer on a 100-layer Darknet graph, while the TorchScript-based one
writes plain Conv/Resize/Concat graphs that onnxruntime, OpenCV DNN and TensorRT all read.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from yolor_cli.engine.errors import MissingDependencyError, YolorError, first_line
from yolor_cli.engine.infer.detector_base import ExportedDetector, parse_metadata
from yolor_cli.engine.quiet_libs import import_quiet

INSTALL_HINT = "pip install 'yolor-cli[export]'"
INPUT_NAME = "images"
OUTPUT_NAME = "output"
# Ops some runtimes reject; in-place slice assignment in the official YOLO layer produced ScatterND,
# which TensorRT refuses. Our layers never emit them, and an export that does is refused.
REJECTED_OPS = frozenset({"ScatterND"})


def require(module: str) -> ModuleType:
    """Import an ``export`` extra's package, or stop with the install hint."""
    try:
        return import_quiet(module)  # with the runtime's telemetry off
    except ImportError:
        raise MissingDependencyError(
            f"this needs the Python package {module}, which is not installed", hint=INSTALL_HINT
        ) from None


def check_available(simplify: bool = False) -> None:
    """Fail before any work when a needed package is missing."""
    for module in ("onnx", "onnxruntime") + (("onnxslim",) if simplify else ()):
        require(module)


MIN_OPSET = 11  # Range (the YOLO layer's grid) and Resize as the upsample layers use them
FALLBACK_MAX_OPSET = 17


def max_opset() -> int:
    """The newest opset torch's TorchScript-based exporter writes (20 in torch 2.14)."""
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except (ImportError, AttributeError):  # a private constant: if it moves, stay on the safe side
        return FALLBACK_MAX_OPSET


def check_opset(opset: int) -> None:
    newest = max_opset()
    if not MIN_OPSET <= opset <= newest:
        raise YolorError(
            f"--opset {opset} is outside what the exporter writes ({MIN_OPSET}..{newest})",
            hint="the default, 17, is read by onnxruntime, OpenCV DNN and TensorRT",
        )


def model_to_onnx(
    model: nn.Module, example: torch.Tensor, *, opset: int, dynamic_batch: bool, dynamic_size: bool
) -> bytes:
    """Trace ``model`` (one tensor in, one out) into ONNX bytes."""
    axes: dict[str, dict[int, str]] = {}
    if dynamic_batch or dynamic_size:
        axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
        if dynamic_size:
            axes[INPUT_NAME].update({2: "height", 3: "width"})
            axes[OUTPUT_NAME][1] = "boxes"
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # tracer notes about static channel counts and the exporter's own deprecation
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes or None,
                do_constant_folding=True,
            )
        except Exception as error:  # the exporter's own errors carry a graph dump; the first line says it all
            raise YolorError(
                f"the ONNX exporter failed: {first_line(error)}",
                hint="rerun with --debug for the details; another --opset may help",
            ) from error
    return buffer.getvalue()


def finish_onnx(data: bytes, metadata: dict[str, str], *, simplify: bool) -> bytes:
    """Simplify (optional), attach metadata, run the ONNX checker and refuse rejected ops."""
    onnx = require("onnx")
    proto = onnx.load_from_string(data)
    if simplify:
        proto = require("onnxslim").slim(proto)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        raise YolorError(
            f"the exported ONNX graph fails the ONNX checker: {str(error).splitlines()[0]}",
            hint="try another --opset; this is a bug in yolor-cli if the default fails",
        ) from None
    rejected = sorted({node.op_type for node in proto.graph.node} & REJECTED_OPS)
    if rejected:
        raise YolorError(
            f"the exported graph contains {', '.join(rejected)}, which TensorRT rejects",
            hint="this is a bug in yolor-cli; please report it",
        )
    return proto.SerializeToString()


def read_metadata(data: bytes) -> dict[str, str]:
    return {entry.key: entry.value for entry in require("onnx").load_from_string(data).metadata_props}


def _session(source: bytes | str, providers: list[str] | None = None, spin: bool = True) -> Any:
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the runtime's own notices are not the user's concern
    if not spin:  # idle worker threads otherwise busy-wait and slow the pre-processing between runs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(source, sess_options=options, providers=providers or ["CPUExecutionProvider"])


def _input_dtype(session: Any) -> np.dtype:
    return np.dtype(np.float16) if session.get_inputs()[0].type == "tensor(float16)" else np.dtype(np.float32)


def onnxruntime_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Runs of one ONNX file on CPU with one session; ``images`` float (bs, 3, h, w) are cast to the
    model's input type. The session is made at the first run, so a file onnxruntime cannot load is
    reported as that run's failure."""
    session = functools.cache(lambda: _session(str(path)))

    def run(images: np.ndarray) -> np.ndarray:
        loaded = session()
        output = loaded.run([OUTPUT_NAME], {INPUT_NAME: images.astype(_input_dtype(loaded))})[0]
        return output.astype(np.float32)

    return run


def opencv_runner(path: Path, half: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Runs of one ONNX file with OpenCV's DNN module (``cv2.error`` when OpenCV cannot), the network
    read at the first run."""
    import cv2

    net = functools.cache(lambda: cv2.dnn.readNetFromONNX(str(path)))

    def run(images: np.ndarray) -> np.ndarray:
        loaded = net()
        loaded.setInput(images.astype(np.float16 if half else np.float32))
        return np.asarray(loaded.forward(), dtype=np.float32)

    return run


@dataclass
class OnnxDetector(ExportedDetector):
    """An exported ``.onnx`` file run by onnxruntime (CPU, or CUDA with onnxruntime-gpu)."""

    session: Any = None
    input_dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))

    @property
    def runtime(self) -> str:
        return "onnxruntime"

    @classmethod
    def load(cls, path: Path, device: torch.device, spin: bool = False) -> OnnxDetector:
        if not path.is_file():
            raise YolorError(f"ONNX file not found: {path}")
        ort = require("onnxruntime")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            session = _session(str(path), providers, spin=spin)
        except Exception as error:  # onnxruntime raises its own exception types for unreadable graphs
            raise YolorError(f"{path} is not an ONNX model onnxruntime can run ({first_line(error)})") from None
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if (
            [i.name for i in inputs] != [INPUT_NAME]
            or len(inputs[0].shape) != 4
            or OUTPUT_NAME not in [o.name for o in outputs]
            or len(outputs[0].shape) != 3
        ):
            found = ", ".join(f"{i.name}{list(i.shape)}" for i in inputs)
            raise YolorError(
                f"{path} is not a detector exported by yolor export (inputs: {found})",
                hint="yolor detect runs ONNX files with one 'images' input (batch, 3, H, W) and an "
                "'output' (batch, N, 5 + nc)",
            )
        metadata = session.get_modelmeta().custom_metadata_map
        width = outputs[0].shape[-1]
        names, nc, stride = parse_metadata(path, metadata, width if isinstance(width, int) else None)
        shape = inputs[0].shape
        input_dtype = _input_dtype(session)
        return cls(
            path=path,
            names=names,
            nc=nc,
            stride=stride,
            fixed_batch=shape[0] if isinstance(shape[0], int) else None,
            fixed_size=(shape[2], shape[3]) if isinstance(shape[2], int) and isinstance(shape[3], int) else None,
            precision=metadata.get("precision", "fp16" if input_dtype == np.float16 else "fp32"),
            notes=[]
            if providers[0] == "CUDAExecutionProvider" or device.type != "cuda"
            else ["this onnxruntime has no CUDA provider (pip install onnxruntime-gpu); running on CPU"],
            session=session,
            input_dtype=input_dtype,
        )

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch.astype(self.input_dtype)})[0]
