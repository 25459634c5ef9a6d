"""Post-training static INT8 quantization of exported files, calibrated on training images.

Two libraries: onnxruntime's QDQ quantization writes an ``.onnx`` file any ONNX runtime reads, and
OpenVINO + NNCF writes an IR that runs fastest on a CPU (benchmarks/README.md#deploy).

In both, the detection head stays in float: its decoding (sigmoid, grid offsets, anchor powers, the
final concat), whose outputs are box coordinates in pixels and scores near 0 and 1 at once, which one
8-bit scale cannot hold (quantizing it costs all of the mAP: onnxruntime issue 14233, for YOLOv5's
head), and the convolutions that feed it, whose raw logits become those boxes and scores. Keeping
those three small 1x1 convolutions in float cut the INT8 file's mAP loss substantially
(benchmarks/README.md#deploy). The head is found from the graph itself,
walking back from the output to the last convolutions, so it needs no layer names and holds for any
cfg.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from yolor_cli.engine.config import DataConfig
from yolor_cli.engine.data.dataset import DetectionDataset
from yolor_cli.engine.data.loader import build_dataset
from yolor_cli.engine.errors import MissingDependencyError, YolorError, first_line
from yolor_cli.engine.infer import onnx_model
from yolor_cli.engine.infer.openvino_model import require_openvino
from yolor_cli.engine.quiet_libs import import_quiet
from yolor_cli.engine.reporting import Reporter

CALIB_SPLIT = "train"
LAST_FLOAT_OPS = {"onnx": "Conv", "openvino": "Convolution"}  # where the walk back from the output stops


def calibration_batches(
    data: DataConfig, img_size: int, count: int, batch: int, reporter: Reporter | None = None
) -> tuple[list[np.ndarray], int]:
    """``count`` training images spread evenly over the split, letterboxed to ``img_size`` squares as
    the evaluation of a fixed-size file letterboxes them, as float [0, 1] batches of the file's size;
    and how many distinct images that is (the last batch is filled up with the first images)."""
    dataset = build_dataset(data, CALIB_SPLIT, img_size=img_size, batch_size=1, reporter=reporter)
    total = len(dataset)
    chosen = np.unique(np.linspace(0, total - 1, num=min(count, total)).round().astype(int))
    return float_batches(dataset, [int(index) for index in chosen], batch), len(chosen)


def float_batches(dataset: DetectionDataset, indices: list[int], batch: int) -> list[np.ndarray]:
    """The letterboxed images at ``indices`` as float [0, 1] batches of ``batch`` images, the last one
    filled up with the first images (a file with a fixed batch takes nothing smaller)."""
    images = [dataset[index].image.numpy().astype(np.float32) / 255.0 for index in indices]
    filled = -(-len(images) // batch) * batch
    padded = [images[i % len(images)] for i in range(filled)]
    return [np.stack(padded[start : start + batch]) for start in range(0, filled, batch)]


def calibration_note(requested: int, used: int) -> list[str]:
    if used >= requested:
        return []
    return [f"--calib-images {requested}: the {CALIB_SPLIT} split has {used}, all of them used"]


def onnx_decode_nodes(proto: Any) -> list[str]:
    """Names of the ONNX nodes of the head kept in float: the last convolutions and everything
    between them and the output (the decoding)."""
    producer = {output: node for node in proto.graph.node for output in node.output}
    return _walk_back(
        [output.name for output in proto.graph.output],
        lambda name: producer.get(name),
        lambda node: node.op_type,
        lambda node: list(node.input),
        lambda node: node.name,
        LAST_FLOAT_OPS["onnx"],
    )


def openvino_decode_ops(model: Any) -> list[str]:
    """Friendly names of the OpenVINO ops kept in float: the last convolutions and everything
    between them and the results."""
    ops = {op.get_friendly_name(): op for op in model.get_ops()}

    def inputs(op: Any) -> list[str]:
        return [value.get_node().get_friendly_name() for value in op.input_values()]

    results = [result.get_friendly_name() for result in model.get_results()]
    return _walk_back(
        results,
        lambda name: ops.get(name),
        lambda op: op.get_type_name(),
        inputs,
        lambda op: op.get_friendly_name(),
        LAST_FLOAT_OPS["openvino"],
        skip={"Result", "Parameter", "Constant"},
    )


def _walk_back(
    starts: list[str],
    find: Any,
    kind: Any,
    inputs: Any,
    name: Any,
    stop: str,
    skip: frozenset[str] | set[str] = frozenset(),
) -> list[str]:
    """Every node reachable backwards from ``starts``, up to and including the first ``stop`` node on
    each path (the head convolutions), not past it."""
    seen: set[str] = set()
    found: list[str] = []
    pending = list(starts)
    while pending:
        node = find(pending.pop())
        if node is None or name(node) in seen:
            continue
        seen.add(name(node))
        if kind(node) not in skip:
            found.append(name(node))
        if kind(node) != stop:
            pending.extend(inputs(node))
    return found


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The quantizers log each step and print progress bars of their own; the Reporter speaks instead."""
    loggers = [logging.getLogger(name) for name in ("nncf", "onnxruntime", "root")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def quantize_onnx(fp32: Path, output: Path, batches: list[np.ndarray]) -> None:
    """QDQ INT8: uint8 activations and int8 per-channel weights, the pair VNNI multiplies fast (int8
    activations were slower than fp32, benchmarks/README.md#deploy), MinMax ranges over ``batches`` (its calibration
    keeps only a min and a max per tensor and image, so memory stays small). Not its
    ``CalibMaxIntermediateOutputs``: in onnxruntime 1.32 that option discards the collected images
    instead of merging them, so only the last few calibrated (and a multiple of it, none: "No data
    is collected")."""
    onnx = onnx_model.require("onnx")
    quantization = onnx_model.require("onnxruntime.quantization")
    excluded = onnx_decode_nodes(onnx.load(str(fp32), load_external_data=False))
    feed = iter(batches)

    class Reader(quantization.CalibrationDataReader):  # type: ignore[name-defined,misc]
        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(feed, None)
            return None if batch is None else {onnx_model.INPUT_NAME: batch}

    try:
        with _quiet():
            quantization.quantize_static(
                str(fp32),
                str(output),
                Reader(),
                quant_format=quantization.QuantFormat.QDQ,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                per_channel=True,
                calibrate_method=quantization.CalibrationMethod.MinMax,
                nodes_to_exclude=excluded,
            )
    except Exception as error:  # the quantizer's own failures, e.g. an op it cannot calibrate
        raise YolorError(f"onnxruntime could not quantize the model: {first_line(error)}") from error


def require_nncf() -> ModuleType:
    """NNCF, or stop with the install hint (checked before any work, as the export's first step)."""
    require_openvino()
    try:
        return import_quiet("nncf")  # with its telemetry off
    except ImportError:
        raise MissingDependencyError(
            "INT8 OpenVINO files need the Python package nncf, which is not installed",
            hint="pip install 'yolor-cli[openvino]'",
        ) from None


def quantize_openvino(model: Any, batches: list[np.ndarray]) -> Any:
    """NNCF INT8 of an IR in memory: the mixed preset (symmetric weights, asymmetric activations, for
    activations such as SiLU/Mish outputs that are mostly positive), fast bias correction."""
    nncf = require_nncf()
    ignored = nncf.IgnoredScope(names=openvino_decode_ops(model), validate=False)
    try:
        with _quiet():
            return nncf.quantize(
                model,
                nncf.Dataset(batches),
                subset_size=len(batches),
                preset=nncf.QuantizationPreset.MIXED,
                ignored_scope=ignored,
            )
    except Exception as error:
        raise YolorError(f"NNCF could not quantize the model: {first_line(error)}") from error
