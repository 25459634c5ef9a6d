"""A model's latency on the runtime it will deploy on: PyTorch, onnxruntime, OpenVINO fp32 or INT8.

Each model is exported the way ``yolor export`` writes it (the fused model, decoded boxes out, the
TorchScript-based ONNX exporter, OpenVINO's IR converted from that ONNX graph, NNCF INT8 with the
head kept in float), at one fixed size and batch 1, into a temporary folder, and timed with
:func:`median_latency_ms` on the CPU in this process. Nothing is verified against PyTorch: the file is
thrown away after timing; ``yolor export`` checks the file that ships.

The INT8 file is calibrated on random images: its ranges would not hold up in a detection, but the
graph (which layers are quantized, where the quantize/dequantize pairs sit) and so its latency are the
same as a file calibrated on real images.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from yolor_cli.engine.deploy import quantize
from yolor_cli.engine.deploy.export import DeployModel
from yolor_cli.engine.deploy.latency import median_latency_ms
from yolor_cli.engine.deploy.request import LATENCY_RUNTIMES
from yolor_cli.engine.errors import MissingDependencyError, YolorError
from yolor_cli.engine.infer import onnx_model, openvino_model
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.quiet_libs import import_quiet

LATENCY_OPSET = 17  # export's default opset: the graph a deployment runs
CALIB_BATCHES = 2  # random images NNCF calibrates the timing-only INT8 file on (ranges do not change the graph)
CALIB_SEED = 0
# The Python packages each runtime needs, and the extra that installs them (named in the error).
RUNTIME_PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "torch": ((), ""),
    "onnxruntime": (("onnx", "onnxruntime"), "export"),
    "openvino": (("openvino",), "openvino"),
    "openvino-int8": (("openvino", "nncf"), "openvino"),
}


def check_runtime(runtime: str) -> None:
    """Refuse an unknown runtime, or one whose packages are missing, naming the extra that installs them
    (before any slow work)."""
    if runtime not in LATENCY_RUNTIMES:
        raise YolorError(f"unknown --runtime {runtime!r}", hint=f"choose one of {', '.join(LATENCY_RUNTIMES)}")
    packages, extra = RUNTIME_PACKAGES[runtime]
    for package in packages:
        try:
            import_quiet(package)
        except ImportError:
            raise MissingDependencyError(
                f"--runtime {runtime} needs the Python package {package}, which is not installed",
                hint=f"pip install 'yolor-cli[{extra}]', or time another --runtime (torch needs nothing)",
            ) from None


def _example(model: DarknetModel, img_size: int) -> torch.Tensor:
    # Mid-grey: the timing does not depend on the pixels, and an all-zero image could meet shortcuts.
    return torch.full((1, model.input_channels, img_size, img_size), 0.5)


def _onnx_file(model: DarknetModel, img_size: int, folder: Path) -> Path:
    deploy = DeployModel(copy.deepcopy(model).eval().fuse()).eval()
    with torch.no_grad():
        data = onnx_model.model_to_onnx(
            deploy, _example(model, img_size), opset=LATENCY_OPSET, dynamic_batch=False, dynamic_size=False
        )
    path = folder / "model.onnx"
    path.write_bytes(data)
    return path


def _torch_runner(model: DarknetModel, img_size: int, folder: Path) -> Callable[[np.ndarray], object]:
    fused = copy.deepcopy(model).eval().fuse()

    def run(images: np.ndarray) -> object:
        with torch.no_grad():
            return fused(torch.from_numpy(images))

    return run


def _onnxruntime_runner(model: DarknetModel, img_size: int, folder: Path) -> Callable[[np.ndarray], object]:
    return onnx_model.onnxruntime_runner(_onnx_file(model, img_size, folder))


def _compiled(ir: object) -> Callable[[np.ndarray], object]:
    compiled = openvino_model.compile_model(ir, "fp32")  # float layers in fp32, as export verifies them
    return lambda images: compiled(images)[0]


def _openvino_runner(model: DarknetModel, img_size: int, folder: Path) -> Callable[[np.ndarray], object]:
    return _compiled(openvino_model.onnx_to_ir(_onnx_file(model, img_size, folder), {}))


def _openvino_int8_runner(model: DarknetModel, img_size: int, folder: Path) -> Callable[[np.ndarray], object]:
    ir = openvino_model.onnx_to_ir(_onnx_file(model, img_size, folder), {})
    generator = np.random.default_rng(CALIB_SEED)
    shape = (1, model.input_channels, img_size, img_size)
    batches = [generator.random(shape, dtype=np.float32) for _ in range(CALIB_BATCHES)]
    return _compiled(quantize.quantize_openvino(ir, batches))


RUNNERS: dict[str, Callable[[DarknetModel, int, Path], Callable[[np.ndarray], object]]] = {
    "torch": _torch_runner,
    "onnxruntime": _onnxruntime_runner,
    "openvino": _openvino_runner,
    "openvino-int8": _openvino_int8_runner,
}


def runtime_latency_ms(model: DarknetModel, img_size: int, runtime: str) -> float:
    """The median milliseconds of one ``img_size`` image (batch 1, CPU) through ``model`` exported for
    ``runtime`` (see the module docstring); ``model`` itself is left as it was."""
    check_runtime(runtime)
    image = _example(model, img_size).numpy()
    with tempfile.TemporaryDirectory(prefix="yolor-latency-") as folder:
        run = RUNNERS[runtime](model, img_size, Path(folder))
        return median_latency_ms(run, [image])
