"""What ``yolor export`` and ``yolor benchmark`` are asked to do.

Only the standard library here: the command line builds its options from these fields without
loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolor_cli.engine.infer.request import DEFAULT_IMG_SIZE
from yolor_cli.engine.options import (
    REQUIRED,
    Request,
    batch_option,
    cfg_option,
    complete_comma_list,
    data_option,
    img_size_option,
    names_file_option,
    option,
    output_option,
    overwrite_option,
    report_option,
    trust_pickle_option,
    weights_option,
)
from yolor_cli.engine.tracking.options import mlflow_experiment_option, mlflow_log_weights_option, mlflow_option

DEFAULT_OPSET = 17
DEFAULT_CALIB_IMAGES = 300  # training images INT8 ranges are calibrated on (NNCF's default subset size)
DEFAULT_MAX_DROP = 0.01  # absolute mAP50-95 an INT8 file may lose against fp32 and still be written
EXPORT_FORMATS = ("onnx", "openvino", "torchscript", "pt")  # the engine's FORMATS, without importing torch
# What a model's latency can be timed on (deploy/runtime_latency.py): PyTorch fp32, onnxruntime fp32,
# OpenVINO fp32 and OpenVINO INT8, all on the CPU at batch 1.
LATENCY_RUNTIMES = ("torch", "onnxruntime", "openvino", "openvino-int8")


def complete_export_formats(incomplete: str) -> list[str]:
    """Shell completion for --format, also after a comma (onnx,tor<TAB>)."""
    return complete_comma_list(incomplete, EXPORT_FORMATS)


@dataclass(frozen=True)
class ExportRequest(Request):
    """One ``yolor export`` run; the fields are the command's options, the defaults theirs."""

    weights: Path = weights_option(
        REQUIRED, "Checkpoint to export: ours (trained or pruned), or an official one with --cfg."
    )
    cfg: str | None = cfg_option()
    formats: str = option(
        "onnx",
        "--format",
        "-f",
        help="onnx, openvino, torchscript, pt, or several comma-separated (pt = stripped deployment "
        "checkpoint; openvino = an IR folder, needs the openvino extra).",
        complete=complete_export_formats,
    )
    img_size: int = img_size_option(DEFAULT_IMG_SIZE)
    batch: int = batch_option(1, "--batch", help="Batch size of the exported input.")
    dynamic: bool = option(False, "--dynamic", help="Dynamic batch axis.")
    dynamic_size: bool = option(False, "--dynamic-size", help="Dynamic batch, height and width.")
    simplify: bool = option(False, "--simplify", help="Simplify the ONNX graph with onnxslim.")
    opset: int = option(DEFAULT_OPSET, "--opset", help="ONNX opset (11 to the exporter's newest).")
    half: bool = option(
        False,
        "--half",
        help="fp16 weights and input (meant for GPU runtimes); on a CPU with AMX-BF16 or AVX-512 BF16 "
        "the TorchScript file is bf16 instead, which that CPU runs fast.",
    )
    output: Path | None = output_option(
        "File path (one format: written as named) or stem (each format adds its suffix). "
        "Default: NAME.onnx, NAME_openvino_model/, NAME.torchscript, NAME_deploy.pt (NAME_int8.onnx, "
        "NAME_int8_openvino_model/ with --int8) beside the weights, never overwriting."
    )
    overwrite: bool = overwrite_option("Replace existing files at --output.")
    device: str = option("cpu", "--device", help="Export on cpu, or a GPU: 0.")
    names_file: Path | None = names_file_option()
    data: Path | None = data_option()
    trust_pickle: bool = trust_pickle_option()
    int8: bool = option(
        False,
        "--int8",
        help="Post-training INT8 of the onnx / openvino file, calibrated on --data's training images and "
        "written only if its mAP50-95 on the val split stays within --max-drop of fp32.",
    )
    calib_images: int = option(
        DEFAULT_CALIB_IMAGES, "--calib-images", help="Training images to calibrate INT8 ranges on.", min=1
    )
    max_drop: float = option(
        DEFAULT_MAX_DROP, "--max-drop", help="Largest mAP50-95 loss (absolute) an INT8 file may have.", min=0.0
    )
    mlflow: bool = mlflow_option()
    mlflow_experiment: str | None = mlflow_experiment_option()
    mlflow_log_weights: bool = mlflow_log_weights_option()


BENCHMARK_FORMATS = ("pytorch", "onnx", "onnx-int8", "openvino", "openvino-int8", "torchscript")
# Asked for by name only: the same files computing in bf16 where the CPU has it.
EXTRA_BENCHMARK_FORMATS = ("pytorch-bf16", "openvino-bf16")
BENCHMARK_IMG_SIZE = 640  # what deployments run; the latency targets are quoted at it


def complete_benchmark_formats(incomplete: str) -> list[str]:
    """Shell completion for --formats, also after a comma (onnx,open<TAB>)."""
    return complete_comma_list(incomplete, BENCHMARK_FORMATS + EXTRA_BENCHMARK_FORMATS)


@dataclass(frozen=True)
class BenchmarkRequest(Request):
    """One ``yolor benchmark`` run: each format made from ``weights``, scored on ``data``'s val split
    and timed on the same images."""

    weights: Path = weights_option(REQUIRED, "Checkpoint to benchmark (ours, or an official one with --cfg).")
    data: Path = data_option(REQUIRED, "data.yaml: its val split is scored, its train split calibrates INT8.")
    cfg: str | None = cfg_option()
    formats: str = option(
        ",".join(BENCHMARK_FORMATS),
        "--formats",
        help="Comma-separated formats to make and measure; also pytorch-bf16 and openvino-bf16 (the same "
        "models computing in bf16, where the CPU has it).",
        complete=complete_benchmark_formats,
    )
    img_size: int = img_size_option(BENCHMARK_IMG_SIZE)
    batch: int = batch_option(1, "--batch", help="Images per timed run.")
    device: str = option("cpu", "--device", help="Where PyTorch and TorchScript run: cpu, or a GPU: 0.")
    min_map: float | None = option(
        None, "--min-map", help="Exit 1 when a format that ran scores mAP50-95 below this.", min=0.0, max=1.0
    )
    output: Path | None = output_option("Where benchmark.csv goes (a file, or a folder). Default: beside the weights.")
    overwrite: bool = overwrite_option("Replace an --output file that is not an earlier benchmark table.")
    calib_images: int = option(DEFAULT_CALIB_IMAGES, "--calib-images", min=1, cli=False)
    trust_pickle: bool = trust_pickle_option()
    mlflow: bool = mlflow_option()
    mlflow_experiment: str | None = mlflow_experiment_option()
    report: bool = report_option()


TRACKING_FIELDS = ("mlflow", "mlflow_experiment", "mlflow_log_weights")  # how a command is logged, not what it does
