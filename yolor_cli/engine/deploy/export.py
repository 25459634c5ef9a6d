"""``yolor export`` as an engine call: ONNX, TorchScript and stripped ``.pt`` files, each verified
on its runtime before it takes its place on disk.

Every file is written to a temporary name beside its destination, read back by the runtime that
will deploy it and compared with the PyTorch model on a fixed input; only a file that agrees is
renamed into place. A failed export therefore never leaves a bad file behind or replaces a good one.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from yolor_cli import __version__
from yolor_cli.engine.config import DataConfig, load_data_config
from yolor_cli.engine.deploy import quantize
from yolor_cli.engine.deploy.int8 import INT8_FORMATS, Int8Maker, Int8Report, export_int8
from yolor_cli.engine.deploy.outputs import output_paths, producer
from yolor_cli.engine.deploy.request import DEFAULT_OPSET, TRACKING_FIELDS, ExportRequest
from yolor_cli.engine.errors import YolorError, first_line
from yolor_cli.engine.files import atomic_folder, atomic_write, path_size
from yolor_cli.engine.infer import onnx_model, openvino_model
from yolor_cli.engine.infer.exported import OPENVINO_SUFFIX, ir_stem
from yolor_cli.engine.infer.torchscript_model import METADATA_FILE as TORCHSCRIPT_METADATA_FILE
from yolor_cli.engine.infer.torchscript_model import quiet_torchscript
from yolor_cli.engine.model.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
from yolor_cli.engine.model.class_names import resolve_names
from yolor_cli.engine.model.darknet import DarknetModel, count_parameters
from yolor_cli.engine.model.loading import LoadedModel, load_model
from yolor_cli.engine.model.memory import check_batch_fits
from yolor_cli.engine.reporting import Reporter, SilentReporter
from yolor_cli.engine.runtime import PRECISION_NAMES, cpu_bf16_feature, select_device
from yolor_cli.engine.tracking.options import tracking_settings
from yolor_cli.engine.tracking.tracker import INPUT_RUN_TAG, Tracker, start_tracking

FORMATS = ("onnx", "openvino", "torchscript", "pt")
INT8_TOLERANCE_KIND = "map50_95_drop"  # INT8 files are judged by accuracy, not by output differences
FP32_TOLERANCE = 1e-3  # max |runtime - PyTorch| for fp32 files (outputs are in input pixels)
# fp16 keeps ~3 significant digits: box coordinates of hundreds of pixels differ by tenths, so half
# files are judged on |diff| / (1 + |reference|).
HALF_RELATIVE_TOLERANCE = 1e-2
# bf16 keeps 8 significant bits to fp16's 11, so its differences are about 8x larger; trained models
# differ more than random-init ones. The limit leaves a margin over the worst difference measured on
# trained and random models (benchmarks/README.md#export).
BF16_RELATIVE_TOLERANCE = 5e-2
VERIFY_SEED = 0


@dataclass(frozen=True)
class Tolerance:
    """The limit a file's checks must meet: ``absolute`` |diff| for fp32 files, ``relative``
    |diff| / (1 + |reference|) for fp16 and bf16 ones."""

    kind: str
    value: float

    def as_dict(self) -> dict[str, float | str]:
        return {"kind": self.kind, "value": self.value}


TOLERANCES = {
    torch.float32: Tolerance("absolute", FP32_TOLERANCE),
    torch.float16: Tolerance("relative", HALF_RELATIVE_TOLERANCE),
    torch.bfloat16: Tolerance("relative", BF16_RELATIVE_TOLERANCE),
}


class DeployModel(nn.Module):
    """The fused model with the one output deployments use: decoded (bs, N, 5+nc) boxes."""

    def __init__(self, model: DarknetModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)[0]


@dataclass
class Check:
    """One runtime's run of an exported file against PyTorch."""

    runtime: str  # "onnxruntime", "opencv-dnn", "torchscript", "yolor-cli"
    input_shape: tuple[int, ...]
    ran: bool
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None  # |diff| / (1 + |reference|): what fp16 files are judged on
    agrees: bool | None = None
    required: bool = True  # a required check that fails stops the export
    detail: str = ""


@dataclass
class ExportedFile:
    format: str
    path: Path
    size_bytes: int
    seconds: float
    checks: list[Check]
    precision: str = "fp32"  # fp32, fp16, bf16 or int8: the type of the file's weights and input
    tolerance: Tolerance = TOLERANCES[torch.float32]
    int8: Int8Report | None = None


@dataclass
class ExportResult:
    weights: Path
    weights_bytes: int
    img_size: int
    batch: int
    dynamic: str  # "none", "batch" or "batch,height,width"
    half: bool
    opset: int
    params: int
    nc: int
    names: list[str] | None  # None when neither the checkpoint nor --names / --data name the classes
    files: list[ExportedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    int8: list[Int8Report] = field(default_factory=list)  # the accuracy checks of the INT8 files written
    input_run_id: str | None = None  # the MLflow run that wrote the weights, when it was tracked

    @property
    def max_abs_diff(self) -> float | None:
        """The worst difference any required check measured (what the export is judged on)."""
        diffs = [
            check.max_abs_diff
            for exported in self.files
            for check in exported.checks
            if check.required and check.max_abs_diff is not None
        ]
        return max(diffs) if diffs else None

    def opencv_dnn(self) -> dict[str, Any] | None:
        """Whether OpenCV DNN ran the ONNX file on every input and agreed; None without an ONNX file."""
        checks = [check for exported in self.files for check in exported.checks if check.runtime == "opencv-dnn"]
        if not checks:
            return None
        diffs = [c.max_abs_diff for c in checks if c.max_abs_diff is not None]
        return {
            "ran": all(c.ran for c in checks),
            "agrees": all(bool(c.agrees) for c in checks),
            "max_abs_diff": max(diffs) if diffs else None,
            "detail": "; ".join(c.detail for c in checks if c.detail),
        }

    @property
    def tolerance(self) -> dict[str, float | str]:
        """The limit every required check met: absolute for fp32 files, relative for fp16 and bf16
        ones (the loosest, when a bf16 TorchScript file sits beside fp16 ones); for INT8 files the
        mAP50-95 drop they were allowed."""
        if self.int8:
            return Tolerance(INT8_TOLERANCE_KIND, self.int8[0].max_drop).as_dict()
        if not self.half:
            return TOLERANCES[torch.float32].as_dict()
        relative = [f.tolerance.value for f in self.files if f.tolerance.kind == "relative"]
        return Tolerance("relative", max(relative, default=HALF_RELATIVE_TOLERANCE)).as_dict()

    @property
    def precision(self) -> dict[str, str]:
        """Each written format's precision: fp16 ONNX beside bf16 TorchScript, say."""
        return {f.format: f.precision for f in self.files}


class VerificationError(YolorError):
    """An exported file that does not reproduce the PyTorch model."""


def parse_formats(text: str, known: tuple[str, ...] = FORMATS, what: str = "export") -> list[str]:
    """``onnx, TorchScript`` -> ["onnx", "torchscript"]: known names only, each once, in order."""
    formats = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in formats if name not in known]
    if unknown or not formats:
        raise YolorError(
            f"unknown {what} format {', '.join(unknown) or repr(text)}",
            hint=f"use one or more of {', '.join(known)}, comma-separated",
        )
    return list(dict.fromkeys(formats))


def compare(check: Check, reference: np.ndarray, output: np.ndarray, tolerance: Tolerance) -> None:
    """Fill ``check`` with the differences and the verdict (fp32: absolute, fp16 and bf16: relative)."""
    if output.shape != reference.shape:
        check.agrees = False
        check.detail = f"output shape {tuple(output.shape)}, expected {tuple(reference.shape)}"
        return
    difference = np.abs(output.astype(np.float64) - reference.astype(np.float64))
    check.max_abs_diff = float(difference.max()) if difference.size else 0.0
    check.max_rel_diff = float((difference / (1.0 + np.abs(reference))).max()) if difference.size else 0.0
    measured = check.max_rel_diff if tolerance.kind == "relative" else check.max_abs_diff
    check.agrees = measured <= tolerance.value


class _Verifier:
    """Fixed inputs and the fp32 PyTorch outputs every exported file is compared with."""

    def __init__(self, reference_model: nn.Module, shapes: list[tuple[int, ...]]) -> None:
        generator = torch.Generator().manual_seed(VERIFY_SEED)
        self.inputs = [torch.rand(shape, generator=generator) for shape in shapes]
        parameter = next(reference_model.parameters())
        with torch.no_grad():
            self.references = [reference_model(x.to(parameter.device)).float().cpu().numpy() for x in self.inputs]

    def run(
        self,
        runtime: str,
        call: Callable[[torch.Tensor], np.ndarray],
        tolerance: Tolerance,
        *,
        required: bool = True,
        first_only: bool = False,
    ) -> list[Check]:
        checks = []
        for x, reference in list(zip(self.inputs, self.references))[: 1 if first_only else None]:
            check = Check(runtime=runtime, input_shape=tuple(x.shape), ran=False, required=required)
            try:
                output = call(x)
            except Exception as error:  # any runtime failure is a finding to report, not a crash
                check.detail = f"{type(error).__name__}: {first_line(error)}"
                checks.append(check)
                if required:
                    break
                continue
            check.ran = True
            compare(check, reference, output, tolerance)
            checks.append(check)
        return checks


def _raise_on_failure(name: str, checks: list[Check], tolerance: Tolerance) -> None:
    for check in checks:
        if not check.required or check.agrees:
            continue
        shape = "x".join(map(str, check.input_shape))
        if check.ran and check.max_abs_diff is not None:
            if tolerance.kind == "relative":
                what = f"differs from PyTorch by {check.max_rel_diff:.3g} relative (limit {tolerance.value})"
            else:
                what = f"differs from PyTorch by {check.max_abs_diff:.3g} (limit {tolerance.value})"
        else:
            what = f"failed ({check.detail})"
        raise VerificationError(
            f"the {name} export run by {check.runtime} on a {shape} input {what}; the {name} file was not written",
            hint="rerun with --debug and report it; for ONNX, another --opset may help",
        )


def _metadata(
    model: DarknetModel, names: list[str] | None, img_size: int, batch: int, dynamic: str, half: bool
) -> dict[str, str]:
    """What a deployment needs to know about the file. ``names`` only when known, so that a runtime
    (and ``yolor detect --names``) can still name the classes of an official checkpoint's export."""
    return {
        "producer": producer(__version__),  # how export recognises an IR folder it may replace
        **({"names": json.dumps(names)} if names is not None else {}),
        "nc": str(model.nc),
        "stride": str(model.max_stride),
        "strides": json.dumps([int(s) for s in model.strides]),
        "img_size": str(img_size),
        "batch": str(batch),
        "dynamic": dynamic,
        "half": json.dumps(half),
        "input": "images: (batch, 3, H, W) RGB float in [0, 1], letterboxed",
        "output": "output: (batch, N, 5 + nc) = cx, cy, w, h in input pixels, objectness, class scores",
    }


def _export_onnx(
    deploy: nn.Module,
    example: torch.Tensor,
    path: Path,
    verifier: _Verifier,
    metadata: dict[str, str],
    *,
    opset: int,
    dynamic_batch: bool,
    dynamic_size: bool,
    simplify: bool,
    dtype: torch.dtype,
) -> list[Check]:
    tolerance, half = TOLERANCES[dtype], dtype == torch.float16
    data = onnx_model.model_to_onnx(
        deploy, example, opset=opset, dynamic_batch=dynamic_batch, dynamic_size=dynamic_size
    )
    data = onnx_model.finish_onnx(data, metadata, simplify=simplify)
    checks: list[Check] = []

    def check(written: Path) -> None:
        run = onnx_model.onnxruntime_runner(written)
        checks.extend(verifier.run("onnxruntime", lambda x: run(x.numpy()), tolerance))
        _raise_on_failure("ONNX", checks, tolerance)
        # OpenCV DNN is reported, not required: its ONNX importer lags behind onnxruntime.
        run_cv = onnx_model.opencv_runner(written, half)
        checks.extend(
            verifier.run(
                "opencv-dnn", lambda x: run_cv(x.numpy()), tolerance, required=False, first_only=not dynamic_batch
            )
        )

    atomic_write(path, lambda stream: stream.write(data), check)
    return checks


def _export_openvino(
    onnx_file: Path, path: Path, verifier: _Verifier, metadata: dict[str, str], dynamic_batch: bool
) -> list[Check]:
    """An fp32 IR converted from the verified ONNX file, verified again on OpenVINO in fp32 (the CPU
    plugin would otherwise compute in bf16 where the CPU has it, and differ by more than 1e-3)."""
    model = openvino_model.onnx_to_ir(onnx_file, {**metadata, "precision": "fp32"})
    xml_name = ir_stem(path) + OPENVINO_SUFFIX
    checks: list[Check] = []

    def check(folder: Path) -> None:
        run = openvino_model.ir_runner(folder / xml_name, "fp32")
        tolerance = TOLERANCES[torch.float32]
        checks.extend(verifier.run("openvino", lambda x: run(x.numpy()), tolerance, first_only=not dynamic_batch))
        _raise_on_failure("OpenVINO", checks, tolerance)

    atomic_folder(path, lambda folder: openvino_model.save_ir(model, folder / xml_name), check)
    return checks


def _export_torchscript(
    deploy: nn.Module,
    example: torch.Tensor,
    path: Path,
    verifier: _Verifier,
    metadata: dict[str, str],
    device: torch.device,
    dtype: torch.dtype,
) -> list[Check]:
    # The grid is made on the trace's device, which TorchScript records: the file runs on that device type.
    extra = {**metadata, "device": device.type, "precision": PRECISION_NAMES[dtype]}
    tolerance = TOLERANCES[dtype]
    with torch.no_grad(), quiet_torchscript():
        traced = torch.jit.trace(deploy, example, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_METADATA_FILE: json.dumps(extra)})
    data = buffer.getvalue()
    checks: list[Check] = []

    def check(written: Path) -> None:
        with quiet_torchscript():
            loaded = torch.jit.load(str(written), map_location=device)

        def call(x: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return loaded(x.to(device=device, dtype=dtype)).float().cpu().numpy()

        checks.extend(verifier.run("torchscript", call, tolerance))
        _raise_on_failure("TorchScript", checks, tolerance)

    atomic_write(path, lambda stream: stream.write(data), check)
    return checks


def _export_pt(
    source: Checkpoint | None, model: DarknetModel, names: list[str] | None, path: Path, verifier: _Verifier, half: bool
) -> list[Check]:
    """The weights the model was loaded with (EMA when there was one), without optimizer, EMA copy or
    training state: what a deployment needs to rebuild and run it."""
    state = {
        key: (value.half() if half and value.is_floating_point() else value).cpu()
        for key, value in model.state_dict().items()
    }
    stripped = Checkpoint(
        cfg=model.cfg,
        model_state=state,
        names=names,
        epoch=source.epoch if source else -1,
        fitness=source.fitness if source else None,
    )
    checks: list[Check] = []

    def check(written: Path) -> None:
        rebuilt = DeployModel(model_from_checkpoint(load_checkpoint(written), source=str(written))).eval()

        def call(x: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return rebuilt(x).numpy()

        tolerance = TOLERANCES[torch.float16 if half else torch.float32]
        checks.extend(verifier.run("yolor-cli", call, tolerance, first_only=True))
        _raise_on_failure("pt", checks, tolerance)

    save_checkpoint(stripped, path, check)
    return checks


def _check_request(request: ExportRequest, chosen: list[str]) -> None:
    """Refuse option combinations that cannot work, before any file is made."""
    if request.batch < 1:
        raise YolorError(f"--batch {request.batch} must be at least 1")
    if {"onnx", "openvino"} & set(chosen):
        onnx_model.check_available(request.simplify)
        onnx_model.check_opset(request.opset)
    if "openvino" in chosen:
        openvino_model.require_openvino()
        if request.int8:
            quantize.require_nncf()
        if request.half:
            raise YolorError(
                "--half does not apply to --format openvino",
                hint="export fp32; OpenVINO computes it in bf16 at run time where the CPU has it "
                "(yolor eval / detect --half)",
            )
    if not request.int8:
        return
    others = [name for name in chosen if name not in INT8_FORMATS]
    if others:
        raise YolorError(f"--int8 applies to onnx and openvino, not {', '.join(others)}", hint="--format onnx,openvino")
    if request.data is None:
        raise YolorError(
            "--int8 needs --data: INT8 ranges are calibrated on its training images and the file is "
            "checked on its val split"
        )
    if request.half:
        raise YolorError("--int8 and --half exclude each other", hint="drop --half")
    if request.calib_images < 1:
        raise YolorError(f"--calib-images {request.calib_images} must be at least 1")
    if request.max_drop < 0:
        raise YolorError(f"--max-drop {request.max_drop} must be 0 or more (an absolute mAP50-95 drop)")
    if request.dynamic_size:
        raise YolorError("--int8 files are calibrated and checked at one input size", hint="drop --dynamic-size")


@dataclass
class _Job:
    """What every format's writer reads: the request and the model, names, metadata and fixed
    verification inputs export made of it, once for all formats."""

    request: ExportRequest
    loaded: LoadedModel
    unfused: DarknetModel  # the .pt keeps BatchNorm layers, so it still matches its cfg and can train
    fused: nn.Module
    names: list[str] | None
    verifier: _Verifier
    metadata: dict[str, str]
    target: torch.device
    dtypes: dict[str, torch.dtype]
    fp32_onnx: Path  # the fp32 ONNX file OpenVINO converts and INT8 quantizes (verified)
    deployed: dict[torch.dtype, nn.Module] = field(default_factory=dict)

    @property
    def dynamic_batch(self) -> bool:
        return self.request.dynamic or self.request.dynamic_size

    def deploy(self, dtype: torch.dtype) -> nn.Module:
        if dtype not in self.deployed:
            self.deployed[dtype] = copy.deepcopy(self.fused).to(device=self.target, dtype=dtype)
        return self.deployed[dtype]

    def example(self, dtype: torch.dtype) -> torch.Tensor:
        return self.verifier.inputs[0].to(device=self.target, dtype=dtype)


def _write_onnx(job: _Job, path: Path, dtype: torch.dtype) -> list[Check]:
    request = job.request
    return _export_onnx(
        job.deploy(dtype),
        job.example(dtype),
        path,
        job.verifier,
        job.metadata,
        opset=request.opset,
        dynamic_batch=job.dynamic_batch,
        dynamic_size=request.dynamic_size,
        simplify=request.simplify,
        dtype=dtype,
    )


def _write_openvino(job: _Job, path: Path, dtype: torch.dtype) -> list[Check]:
    return _export_openvino(job.fp32_onnx, path, job.verifier, job.metadata, job.dynamic_batch)


def _write_torchscript(job: _Job, path: Path, dtype: torch.dtype) -> list[Check]:
    return _export_torchscript(
        job.deploy(dtype), job.example(dtype), path, job.verifier, job.metadata, job.target, dtype
    )


def _write_pt(job: _Job, path: Path, dtype: torch.dtype) -> list[Check]:
    return _export_pt(job.loaded.checkpoint, job.unfused, job.names, path, job.verifier, job.request.half)


# One writer per format: each writes its file at a path, verified, and returns the checks it ran.
WRITERS: dict[str, Callable[[_Job, Path, torch.dtype], list[Check]]] = {
    "onnx": _write_onnx,
    "openvino": _write_openvino,
    "torchscript": _write_torchscript,
    "pt": _write_pt,
}


def export(request: ExportRequest, *, reporter: Reporter | None = None, tracker: Tracker | None = None) -> ExportResult:
    """What ``yolor export`` does: load, fuse, write each format, verify each on its runtime; with
    ``int8``, quantize the onnx / openvino files and keep those whose mAP held. Every output path is
    checked before the model is even loaded. Logged to MLflow as the request says (one run), or to
    ``tracker`` when given (a caller's run; benchmark gives the no-op one for its own exports)."""
    reporter = reporter or SilentReporter()
    if tracker is not None:
        return _export(request, reporter)
    settings = tracking_settings(
        mlflow=request.mlflow,
        experiment=request.mlflow_experiment,
        log_weights=request.mlflow_log_weights,
        default_experiment="export",
    )
    with start_tracking(settings, reporter, command="export") as run:  # before the files: a .pt records the run
        result = _export(request, reporter)
        _log_export(run, request, result)
        return result


def _log_export(tracker: Tracker, request: ExportRequest, result: ExportResult) -> None:
    """The export's run: its options, the input's run (lineage), each file's size and verification, and
    with --mlflow-log-weights the files themselves."""
    tracker.tags(
        {
            "mlflow.runName": f"export {result.weights.name}",
            "yolor.weights": str(result.weights.resolve()),
            "yolor.cfg": request.cfg or f"from {result.weights}",
            "yolor.data": request.data,
            INPUT_RUN_TAG: result.input_run_id,
        }
    )
    params = {k: v for k, v in dataclasses.asdict(request).items() if k not in TRACKING_FIELDS}
    tracker.params(params)
    metrics: dict[str, float | None] = {"params": float(result.params), "max_abs_diff": result.max_abs_diff}
    for exported in result.files:
        metrics[f"{exported.format}/size_mb"] = exported.size_bytes / 2**20
        metrics[f"{exported.format}/seconds"] = exported.seconds
    for report in result.int8:
        for key in ("map_fp32", "map50_fp32", "map_int8", "map50_int8", "latency_ms_fp32", "latency_ms_int8"):
            metrics[f"{report.format}_int8/{key}"] = getattr(report, key)
    tracker.metrics(metrics)
    if tracker.log_weights:
        for exported in result.files:
            tracker.artifact(exported.path, "exported")


def _export(request: ExportRequest, reporter: Reporter) -> ExportResult:
    chosen = parse_formats(request.formats)
    _check_request(request, chosen)
    weights = Path(request.weights)
    paths = output_paths(
        weights, chosen, Path(request.output) if request.output else None, request.overwrite, request.int8
    )
    data_config = load_data_config(request.data) if request.int8 and request.data is not None else None
    with tempfile.TemporaryDirectory(prefix="yolor-export-") as scratch:
        job, result = _prepare(request, chosen, Path(scratch) / "fp32.onnx", data_config)
        if request.int8 or "openvino" in chosen:
            _write_onnx(job, job.fp32_onnx, torch.float32)
        if data_config is not None:
            _write_int8(job, chosen, paths, data_config, result, reporter)
            return result
        for name in reporter.track(chosen, "Exporting", total=len(chosen)):
            result.files.append(_write_format(job, name, paths[name], result))
    return result


def _prepare(
    request: ExportRequest, chosen: list[str], fp32_onnx: Path, data_config: DataConfig | None
) -> tuple[_Job, ExportResult]:
    """The model loaded, fused and checked; the result's header; what every writer needs."""
    weights = Path(request.weights)
    target = select_device(request.device)
    loaded = load_model(cfg=request.cfg, weights=weights, trust_pickle=request.trust_pickle)
    model = loaded.model.eval()
    model.check_img_size(request.img_size)
    check_batch_fits(model, batch=request.batch, img_size=request.img_size, device=target, batch_option="--batch")
    if data_config is not None and data_config.nc != model.nc:
        raise YolorError(f"{data_config.source} has nc={data_config.nc} but the model has nc={model.nc}")
    names = resolve_names(loaded.names, loaded.nc, names_file=request.names_file, data=request.data)
    half, img_size, batch = request.half, request.img_size, request.batch
    dynamic_batch = request.dynamic or request.dynamic_size
    dynamic_axes = "batch,height,width" if request.dynamic_size else "batch" if dynamic_batch else "none"
    result = ExportResult(
        weights=weights,
        weights_bytes=weights.stat().st_size,
        img_size=img_size,
        batch=batch,
        dynamic=dynamic_axes,
        half=half,
        opset=request.opset,
        params=count_parameters(model),
        nc=model.nc,
        names=names,
        notes=list(loaded.notes) + _ignored_options(chosen, request.simplify, request.opset, dynamic_batch),
        input_run_id=loaded.checkpoint.mlflow_run_id if loaded.checkpoint is not None else None,
    )
    unfused = copy.deepcopy(model)
    fused = DeployModel(model.fuse()).eval()
    shapes = [(batch, model.input_channels, img_size, img_size)]
    if dynamic_batch:
        shapes.append((batch + 1, model.input_channels, img_size, img_size))
    if request.dynamic_size:
        shapes.append((batch, model.input_channels, img_size + model.max_stride, img_size))
    verifier = _Verifier(fused, shapes)  # fp32 references, before any cast to half
    bf16_feature = cpu_bf16_feature() if half and target.type == "cpu" else None
    dtypes = _file_dtypes(half, bf16_feature is not None)
    result.notes.extend(_device_notes(chosen, target, dtypes, bf16_feature))
    job = _Job(
        request=request,
        loaded=loaded,
        unfused=unfused,
        fused=fused,
        names=names,
        verifier=verifier,
        metadata=_metadata(model, names, img_size, batch, dynamic_axes, half),
        target=target,
        dtypes=dtypes,
        fp32_onnx=fp32_onnx,
    )
    return job, result


def _write_format(job: _Job, name: str, path: Path, result: ExportResult) -> ExportedFile:
    """One format written and verified by its writer; a failure names what was already written."""
    start = time.perf_counter()
    dtype = job.dtypes[name]
    try:
        checks = WRITERS[name](job, path, dtype)
    except YolorError as error:
        if result.files:  # say what the earlier formats did write, so nobody thinks it is all gone
            written = ", ".join(str(f.path) for f in result.files)
            message = f"{error.message} (already written and verified: {written})"
            raise type(error)(message, error.hint) from None
        raise
    return ExportedFile(
        format=name,
        path=path,
        size_bytes=path_size(path),
        seconds=time.perf_counter() - start,
        checks=checks,
        precision=PRECISION_NAMES[dtype],
        tolerance=TOLERANCES[dtype],
    )


def _write_int8(
    job: _Job,
    chosen: list[str],
    paths: dict[str, Path],
    data_config: DataConfig,
    result: ExportResult,
    reporter: Reporter,
) -> None:
    """The INT8 files, quantized from the verified fp32 ONNX file and judged by mAP, not by outputs."""
    request = job.request
    start = time.perf_counter()
    maker = Int8Maker(
        job.fp32_onnx,
        job.metadata,
        data=data_config,
        img_size=request.img_size,
        batch=request.batch,
        calib_images=request.calib_images,
        max_drop=request.max_drop,
        reporter=reporter,
    )
    reports = export_int8(maker, chosen, paths)
    result.notes.extend(maker.notes)
    result.int8 = reports
    seconds = (time.perf_counter() - start) / max(len(reports), 1)
    for report in reports:
        path = paths[report.format]
        result.files.append(
            ExportedFile(
                format=report.format,
                path=path,
                size_bytes=path_size(path),
                seconds=seconds,
                checks=[],  # the fp32 file was verified against PyTorch; this one is judged by mAP
                precision="int8",
                tolerance=Tolerance(INT8_TOLERANCE_KIND, report.max_drop),
                int8=report,
            )
        )


def _file_dtypes(half: bool, cpu_bf16: bool) -> dict[str, torch.dtype]:
    """The type of each format's weights and input. ``--half`` means fp16, except for TorchScript
    traced on a CPU with bf16 hardware, which runs bf16 convolutions fast and fp16 ones slowly. ONNX
    stays fp16, as onnxruntime has no bf16 convolutions on CPU; the .pt keeps its fp16 weights."""
    reduced = torch.float16 if half else torch.float32
    torchscript = torch.bfloat16 if half and cpu_bf16 else reduced
    return {"onnx": reduced, "openvino": torch.float32, "torchscript": torchscript, "pt": reduced}


def _device_notes(
    formats: list[str], target: torch.device, dtypes: dict[str, torch.dtype], bf16_feature: str | None
) -> list[str]:
    notes = []
    if target.type == "cpu" and "torchscript" in formats and dtypes["torchscript"] == torch.bfloat16:
        notes.append(
            f"--half on a CPU with {bf16_feature}: the TorchScript file is bf16, which this CPU runs in "
            "hardware (boxes are decoded in float32)"
        )
    fp16_files = [
        label
        for name, label in (("onnx", "ONNX"), ("torchscript", "TorchScript"))
        if name in formats and dtypes[name] == torch.float16
    ]
    if target.type == "cpu" and fp16_files:
        notes.append(
            f"--half on CPU: the fp16 {' and '.join(fp16_files)} {'files are' if len(fp16_files) > 1 else 'file is'} "
            "made and checked here, but CPU "
            "runtimes gain little or nothing from fp16; it is meant for GPUs"
            + ("" if bf16_feature is None else " (onnxruntime has no bf16 convolutions on CPU)")
        )
    if target.type == "cuda" and "torchscript" in formats:
        notes.append("the TorchScript file is traced on the GPU and runs on CUDA devices only")
    return notes


def _ignored_options(formats: list[str], simplify: bool, opset: int, dynamic: bool) -> list[str]:
    notes = []
    if "onnx" not in formats:
        ignored = [flag for flag, given in (("--simplify", simplify), ("--opset", opset != DEFAULT_OPSET)) if given]
        if ignored:
            notes.append(f"{' and '.join(ignored)} only apply to ONNX; ignored")
    if dynamic and formats == ["pt"]:
        notes.append("--dynamic / --dynamic-size do not apply to a .pt checkpoint; ignored")
    return notes
