"""``yolor benchmark``: every deployment format of one model, made here, scored and timed alike.

Each format is made by ``yolor export``'s engine (so it is verified, and INT8 files are calibrated as
the export calibrates them), then scored on the val split and timed, all on the same letterboxed
images: square at ``--img-size``, because exported files take one input size. A format that cannot be
made or run here becomes a row that says why, not a failed run.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolor_cli.engine.config import DataConfig, load_data_config
from yolor_cli.engine.data.loader import build_dataset
from yolor_cli.engine.deploy.export import ExportRequest, export, parse_formats
from yolor_cli.engine.deploy.int8 import Int8Maker
from yolor_cli.engine.deploy.latency import median_latency_ms
from yolor_cli.engine.deploy.outputs import SUFFIXES
from yolor_cli.engine.deploy.quantize import float_batches
from yolor_cli.engine.deploy.request import BENCHMARK_FORMATS, EXTRA_BENCHMARK_FORMATS, BenchmarkRequest
from yolor_cli.engine.errors import YolorError, first_line
from yolor_cli.engine.evaluate.evaluator import check_model_classes, evaluate_predictor
from yolor_cli.engine.evaluate.request import EVAL_CONF, EVAL_IOU
from yolor_cli.engine.files import atomic_write, guard_output, path_size
from yolor_cli.engine.infer import onnx_model, openvino_model
from yolor_cli.engine.infer.exported import load_exported
from yolor_cli.engine.infer.predictor import Predictor
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.model.memory import check_batch_fits
from yolor_cli.engine.reporting import Reporter, SilentReporter
from yolor_cli.engine.runtime import resolve_inference_precision, select_device
from yolor_cli.engine.tracking.options import tracking_settings
from yolor_cli.engine.tracking.tracker import INPUT_RUN_TAG, NO_TRACKING, Tracker, start_tracking

CSV_NAME = "benchmark.csv"
TIMED_IMAGES = 20  # val images each format is timed on, one batch at a time, in the same order
TIMED_RUNS = 20
# benchmark name: the export --format it is made with (openvino-bf16 runs the fp32 IR in bf16)
EXPORTS = {"onnx": "onnx", "openvino": "openvino", "openvino-bf16": "openvino", "torchscript": "torchscript"}
INT8_NAMES = {"onnx-int8": "onnx", "openvino-int8": "openvino"}
PRECISIONS = {"onnx-int8": "int8", "openvino-int8": "int8", "pytorch-bf16": "bf16", "openvino-bf16": "bf16"}
CSV_COLUMNS = (
    "format",
    "status",
    "precision",
    "size_mb",
    "map50_95",
    "map50",
    "latency_ms",
    "fps",
    "speedup",
    "reason",
)
MEGABYTE = 1024 * 1024
HEADER = ",".join(CSV_COLUMNS).encode()  # the first line of every table written: how it is recognised


@dataclass
class BenchmarkRow:
    format: str
    ok: bool = False
    precision: str = "fp32"
    size_bytes: int | None = None
    map: float | None = None  # mAP50-95
    map50: float | None = None
    latency_ms: float | None = None  # median per batch
    fps: float | None = None  # images per second at that latency
    speedup: float | None = None  # against PyTorch fp32; None without a PyTorch row
    reason: str = ""  # why the format could not be made or run


@dataclass
class BenchmarkResult:
    weights: Path
    data: Path
    img_size: int
    batch: int
    device: str
    images: int  # val images scored
    rows: list[BenchmarkRow] = field(default_factory=list)
    csv: Path | None = None
    min_map: float | None = None
    seconds: float = 0.0
    input_run_id: str | None = None  # the MLflow run that wrote the weights, when it was tracked

    @property
    def below_min_map(self) -> list[BenchmarkRow]:
        """Formats that ran and scored below ``--min-map``."""
        if self.min_map is None:
            return []
        return [row for row in self.rows if row.ok and row.map is not None and row.map < self.min_map]


class _Bench:
    """The shared images, the fp32 ONNX file the INT8 formats are made from, and the steps every
    format goes through."""

    def __init__(self, request: BenchmarkRequest, data: DataConfig, scratch: Path, reporter: Reporter) -> None:
        self.request, self.data, self.scratch, self.reporter = request, data, scratch, reporter
        self.dataset = build_dataset(data, "val", img_size=request.img_size, batch_size=1, reporter=reporter)
        self.batches = float_batches(self.dataset, list(range(min(TIMED_IMAGES, len(self.dataset)))), request.batch)
        self._fp32_onnx: Path | None = None
        self._maker: Int8Maker | None = None

    def export(self, name: str, device: torch.device) -> Path:
        """The file of one non-INT8 format, made by the export engine (and so verified) in scratch."""
        export_format = EXPORTS[name]
        exported = export(
            ExportRequest(
                weights=self.request.weights,
                cfg=self.request.cfg,
                formats=export_format,
                img_size=self.request.img_size,
                batch=self.request.batch,
                output=self.scratch / name,
                overwrite=True,
                device=str(device) if export_format == "torchscript" else "cpu",
                data=self.request.data,
                trust_pickle=self.request.trust_pickle,
            ),
            tracker=NO_TRACKING,  # the benchmark's own run says what was measured; its scratch files are not runs
        )
        return exported.files[0].path

    def fp32_onnx(self) -> Path:
        if self._fp32_onnx is None:
            self._fp32_onnx = self.export("onnx", torch.device("cpu"))
        return self._fp32_onnx

    def maker(self) -> Int8Maker:
        """One INT8 maker for both INT8 formats: one calibration set, one fp32 reference score."""
        if self._maker is None:
            source = self.fp32_onnx()
            self._maker = Int8Maker(
                source,
                onnx_model.read_metadata(source.read_bytes()),
                data=self.data,
                img_size=self.request.img_size,
                batch=self.request.batch,
                calib_images=self.request.calib_images,
                max_drop=float("inf"),  # the benchmark reports the INT8 mAP; it does not refuse the file
                reporter=self.reporter,
            )
        return self._maker

    def time(self, row: BenchmarkRow, run: Callable[[np.ndarray], Any]) -> None:
        row.latency_ms = median_latency_ms(run, self.batches, runs=TIMED_RUNS)
        row.fps = 1000.0 * self.request.batch / row.latency_ms
        row.ok = True

    def measure(self, row: BenchmarkRow, predictor: Predictor, run: Callable[[np.ndarray], Any]) -> None:
        scored, _ = evaluate_predictor(predictor, self.dataset, self.data, batch_size=self.request.batch)
        row.map, row.map50 = scored.metrics.map, scored.metrics.map50
        self.time(row, run)


def run_benchmark(request: BenchmarkRequest, *, reporter: Reporter | None = None) -> BenchmarkResult:
    """What ``yolor benchmark`` does: each format made, scored and timed; the CSV written; logged to
    MLflow (one run) when the request or MLFLOW_TRACKING_URI says so."""
    reporter = reporter or SilentReporter()
    settings = tracking_settings(
        mlflow=request.mlflow, experiment=request.mlflow_experiment, log_weights=False, default_experiment="benchmark"
    )
    with start_tracking(settings, reporter, command="benchmark") as tracker:
        result = _run_benchmark(request, reporter)
        _log_benchmark(tracker, request, result)
        return result


def _log_benchmark(tracker: Tracker, request: BenchmarkRequest, result: BenchmarkResult) -> None:
    """The benchmark's run: its options, the input's run (lineage), each format's figures, benchmark.csv."""
    tracker.tags(
        {
            "mlflow.runName": f"benchmark {result.weights.name}",
            "yolor.weights": str(result.weights.resolve()),
            "yolor.cfg": request.cfg or f"from {result.weights}",
            "yolor.data": str(result.data.resolve()),
            INPUT_RUN_TAG: result.input_run_id,
        }
    )
    tracker.params({k: v for k, v in dataclasses.asdict(request).items() if k not in ("mlflow", "mlflow_experiment")})
    metrics: dict[str, float | None] = {}
    for row in result.rows:
        if row.ok:
            for key in ("map", "map50", "latency_ms", "fps", "speedup"):
                metrics[f"{row.format}/{key}"] = getattr(row, key)
    tracker.metrics(metrics)
    if result.csv is not None:
        tracker.artifact(result.csv)


def _run_benchmark(request: BenchmarkRequest, reporter: Reporter) -> BenchmarkResult:
    start = time.perf_counter()
    formats = parse_formats(request.formats, BENCHMARK_FORMATS + EXTRA_BENCHMARK_FORMATS, "benchmark")
    if request.batch < 1:
        raise YolorError(f"--batch {request.batch} must be at least 1")
    weights = Path(request.weights)
    csv_path = _csv_path(request, weights)
    data = load_data_config(request.data)
    device = select_device(request.device)
    loaded = load_model(cfg=request.cfg, weights=weights, trust_pickle=request.trust_pickle)
    loaded.model.check_img_size(request.img_size)
    check_batch_fits(
        loaded.model, batch=request.batch, img_size=request.img_size, device=device, batch_option="--batch"
    )
    check_model_classes(loaded.model, data)
    scratch_folder = tempfile.TemporaryDirectory(prefix="yolor-benchmark-")
    bench = _Bench(request, data, Path(scratch_folder.name), reporter)
    result = BenchmarkResult(
        weights=weights,
        data=Path(request.data),
        img_size=request.img_size,
        batch=request.batch,
        device=str(device),
        images=len(bench.dataset),
        min_map=request.min_map,
        input_run_id=loaded.checkpoint.mlflow_run_id if loaded.checkpoint is not None else None,
    )
    with scratch_folder:
        for name in reporter.track(formats, "Benchmarking", total=len(formats)):
            row = BenchmarkRow(format=name, precision=PRECISIONS.get(name, "fp32"))
            try:
                if name in ("pytorch", "pytorch-bf16"):
                    _pytorch(row, bench, loaded.model, weights, device)
                elif name in INT8_NAMES:
                    _int8(row, bench)
                else:
                    _exported(row, bench, device)
            except YolorError as error:
                row.reason = error.message
            except Exception as error:  # a runtime's own failure is this format's finding, not the run's end
                row.reason = f"{type(error).__name__}: {first_line(error)}"
            if not row.ok:
                reporter.warning(f"{name}: {row.reason}")
            result.rows.append(row)
    baseline = next((row for row in result.rows if row.format == "pytorch" and row.ok), None)
    for row in result.rows:
        if row.ok and baseline is not None and baseline.latency_ms and row.latency_ms:
            row.speedup = baseline.latency_ms / row.latency_ms
    result.csv = write_csv(result, csv_path)
    result.seconds = time.perf_counter() - start
    return result


def _csv_path(request: BenchmarkRequest, weights: Path) -> Path:
    """``benchmark.csv`` beside the weights, in an ``--output`` folder, or an ``--output`` .csv file.
    A folder is one that exists, ends in a slash, or does not exist and has no .csv suffix. Checked
    by the one writer guard before any work: an earlier benchmark table is rewritten by each run;
    any other file (a training run's results.csv) only with ``overwrite``; the inputs never."""
    if request.output is None:
        path = weights.parent / CSV_NAME
    else:
        path = Path(request.output)
        named_folder = str(request.output).endswith(("/", os.sep)) or path.is_dir()
        if named_folder or (not path.exists() and path.suffix.lower() != ".csv"):
            path = path / CSV_NAME
        elif path.suffix.lower() != ".csv":
            raise YolorError(f"--output {path} is not a .csv file", hint="name a folder, or a file ending in .csv")
    return guard_output(
        path,
        inputs=[weights, Path(request.data)],
        overwrite=request.overwrite,
        foreign=foreign_table,
        rewrite_own=True,
    )


def foreign_table(path: Path) -> str | None:
    """Why ``path`` is not a table an earlier benchmark wrote (recognised by its header), or None."""
    try:
        with path.open("rb") as stream:
            first = stream.readline(len(HEADER) + 2)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if first.rstrip(b"\r\n") == HEADER:
        return None
    return "is not a table yolor benchmark wrote"


def _pytorch(row: BenchmarkRow, bench: _Bench, model: Any, weights: Path, device: torch.device) -> None:
    row.size_bytes = weights.stat().st_size
    precision = None
    if row.format == "pytorch-bf16":
        precision = resolve_inference_precision(device, True)
        if precision.dtype != torch.bfloat16:
            raise YolorError(precision.note or f"no bf16 here: {precision.reason}")
    predictor = Predictor(model, device=device, conf=EVAL_CONF, iou=EVAL_IOU, precision=precision)

    def run(batch: np.ndarray) -> None:
        predictor.forward(torch.from_numpy(batch))
        if device.type == "cuda":  # CUDA runs asynchronously: time the work, not its launch
            torch.cuda.synchronize(device)

    bench.measure(row, predictor, run)


def _exported(row: BenchmarkRow, bench: _Bench, device: torch.device) -> None:
    compute = "fp32"
    if row.format == "openvino-bf16":
        if not openvino_model.bf16_supported():
            raise YolorError("OpenVINO's CPU plugin reports no bf16 support on this CPU")
        compute = "bf16"
    path = bench.fp32_onnx() if row.format == "onnx" else bench.export(row.format, device)
    row.size_bytes = path_size(path)
    runtime_device = device if row.format == "torchscript" else torch.device("cpu")
    detector = load_exported(path, runtime_device, compute, back_to_back=True)
    row.precision = PRECISIONS.get(row.format, detector.precision)
    bench.measure(row, Predictor(detector, conf=EVAL_CONF, iou=EVAL_IOU), detector.run_batch)


def _int8(row: BenchmarkRow, bench: _Bench) -> None:
    """Made and scored by the INT8 maker, with the export's own protocol (same square val images);
    timed here, on the images every format is timed on."""
    export_format = INT8_NAMES[row.format]
    target = bench.scratch / (row.format + SUFFIXES[export_format])
    report = bench.maker().make(export_format, target)
    row.size_bytes = path_size(target)
    row.map, row.map50 = report.map_int8, report.map50_int8
    detector = load_exported(target, torch.device("cpu"), "fp32", back_to_back=True)
    bench.time(row, detector.run_batch)


def write_csv(result: BenchmarkResult, path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in result.rows:
        writer.writerow(
            [
                row.format,
                "ok" if row.ok else "failed",
                row.precision,
                _round(row.size_bytes / MEGABYTE if row.size_bytes is not None else None, 2),
                _round(row.map, 4),
                _round(row.map50, 4),
                _round(row.latency_ms, 2),
                _round(row.fps, 1),
                _round(row.speedup, 2),
                row.reason,
            ]
        )
    data = buffer.getvalue().encode()
    return atomic_write(path, lambda stream: stream.write(data))


def _round(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"
