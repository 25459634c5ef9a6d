"""``yolor export --int8``: quantize, then keep the file only if its mAP held.

INT8 files cannot be verified the way float exports are (outputs equal to PyTorch's within 1e-3):
they differ by design. What matters is detection accuracy, so the quantized file and the fp32 file it
came from are both scored on the val split by the shared evaluator, with the same pre-processing, and
the INT8 file takes its place on disk only when mAP50-95 fell by at most ``--max-drop``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from yolor_cli.engine.config import DataConfig
from yolor_cli.engine.deploy import quantize
from yolor_cli.engine.deploy.latency import median_latency_ms
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.evaluate.compare import ImageChange, image_changes
from yolor_cli.engine.evaluate.evaluator import EvalResult, evaluate_exported
from yolor_cli.engine.files import atomic_folder, atomic_write
from yolor_cli.engine.infer import onnx_model, openvino_model
from yolor_cli.engine.infer.exported import OPENVINO_SUFFIX, ExportedDetector, ir_stem, load_exported
from yolor_cli.engine.reporting import Reporter, SilentReporter

INT8_FORMATS = ("onnx", "openvino")
CPU = torch.device("cpu")  # both INT8 runtimes run on the CPU
METHODS = {
    "onnx": "onnxruntime QDQ: uint8 activations, int8 per-channel weights, MinMax ranges",
    "openvino": "NNCF post-training: mixed preset, fast bias correction",
}


class AccuracyGateError(YolorError):
    """A quantized file whose mAP fell further than ``--max-drop`` allows; it was not written."""


@dataclass
class Int8Report:
    """What one INT8 file was measured at before it was kept (or refused)."""

    format: str
    runtime: str
    method: str
    calib_images: int
    max_drop: float
    map_fp32: float
    map50_fp32: float
    map_int8: float
    map50_int8: float
    latency_ms_fp32: float  # the fp32 .onnx on onnxruntime, the baseline every INT8 file is compared with
    latency_ms_int8: float
    written: bool = False
    # Val images whose detections changed from fp32 to INT8, worst first (engine.evaluate.compare).
    changes: list[ImageChange] = field(default_factory=list)

    @property
    def drop(self) -> float:
        return self.map_fp32 - self.map_int8

    @property
    def passed(self) -> bool:
        # a hair of tolerance, so a drop printed as 0.010 against --max-drop 0.01 is not refused
        return self.drop <= self.max_drop + 1e-9

    @property
    def speedup(self) -> float:
        return self.latency_ms_fp32 / self.latency_ms_int8 if self.latency_ms_int8 else float("nan")


def _score(detector: ExportedDetector, data: DataConfig, img_size: int, reporter: Reporter) -> EvalResult:
    return evaluate_exported(detector, data, img_size=img_size, reporter=reporter)[0]


def _latency(detector: ExportedDetector, batches: list[np.ndarray]) -> float:
    return median_latency_ms(detector.run_batch, batches)


class Int8Maker:
    """Quantizes one verified fp32 ONNX file into INT8 files and checks each against it.

    The calibration images and the fp32 file's score are worked out once, at first need, and shared
    by every INT8 file made from it (``yolor export --format onnx,openvino --int8``, the two INT8
    rows of ``yolor benchmark``)."""

    def __init__(
        self,
        fp32_onnx: Path,
        metadata: dict[str, str],
        *,
        data: DataConfig,
        img_size: int,
        batch: int,
        calib_images: int,
        max_drop: float,
        reporter: Reporter | None = None,
    ) -> None:
        self.fp32_onnx, self.metadata, self.data = fp32_onnx, metadata, data
        self.img_size, self.batch, self.calib_images, self.max_drop = img_size, batch, calib_images, max_drop
        self.reporter = reporter or SilentReporter()
        self.notes: list[str] = []
        self._batches: list[np.ndarray] | None = None
        self.images_used = 0
        self._reference: tuple[EvalResult, float] | None = None

    @property
    def batches(self) -> list[np.ndarray]:
        if self._batches is None:
            self._batches, self.images_used = quantize.calibration_batches(
                self.data, self.img_size, self.calib_images, self.batch, self.reporter
            )
            self.notes.extend(quantize.calibration_note(self.calib_images, self.images_used))
        return self._batches

    def reference(self) -> tuple[EvalResult, float]:
        """The fp32 file's score, and its latency on the first calibration batch."""
        if self._reference is None:
            fp32 = load_exported(self.fp32_onnx, CPU, back_to_back=True)
            self._reference = (_score(fp32, self.data, self.img_size, self.reporter), _latency(fp32, self.batches[:1]))
        return self._reference

    def make(self, name: str, target: Path) -> Int8Report:
        """Quantize into ``name``'s format, score, and write ``target`` only if the gate passed; the
        report says which (``written``)."""
        batches = self.batches
        used = self.images_used
        self.reporter.info(f"INT8 {name}: calibrating on {used} {quantize.CALIB_SPLIT} images, checking on val")
        reference, fp32_latency = self.reference()
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".yolor-int8-", dir=target.parent) as scratch:
            candidate, write = _quantized(name, self.fp32_onnx, Path(scratch), target, self.metadata, batches)
            detector = load_exported(candidate, CPU, back_to_back=True)
            scored = _score(detector, self.data, self.img_size, self.reporter)
            report = Int8Report(
                format=name,
                runtime=detector.runtime,
                method=METHODS[name],
                calib_images=used,
                max_drop=self.max_drop,
                map_fp32=reference.metrics.map,
                map50_fp32=reference.metrics.map50,
                map_int8=scored.metrics.map,
                map50_int8=scored.metrics.map50,
                latency_ms_fp32=fp32_latency,
                latency_ms_int8=_latency(detector, batches[:1]),
                changes=image_changes(
                    reference.detections, reference.image_names, scored.detections, scored.image_names
                ),
            )
            if report.passed:
                write(_with_figures(self.metadata, report))
                report.written = True
        return report


def export_int8(maker: Int8Maker, formats: list[str], paths: dict[str, Path]) -> list[Int8Report]:
    """Each of ``formats`` made by ``maker``; those that pass are written. Raises
    :class:`AccuracyGateError` naming both figures when any failed (after writing those that passed)."""
    reports: list[Int8Report] = []
    for name in formats:
        try:
            reports.append(maker.make(name, paths[name]))
        except YolorError as error:
            done = [str(paths[report.format]) for report in reports if report.written]
            if done:  # say what an earlier format did write, so nobody thinks it is all gone
                raise type(error)(f"{error.message} (already written: {', '.join(done)})", error.hint) from None
            raise
    written = [report for report in reports if report.written]
    refused = [report for report in reports if not report.written]
    if refused:
        raise _gate_error(refused, written)
    return written


def _with_figures(metadata: dict[str, str], report: Int8Report) -> dict[str, str]:
    """The file records how it was made and what it scored, for whoever finds it later."""
    return {
        **metadata,
        "precision": "int8",
        "quantization": report.method,
        "calib_images": str(report.calib_images),
        "int8_check": json.dumps(
            {"map_fp32": round(report.map_fp32, 5), "map_int8": round(report.map_int8, 5), "split": "val"}
        ),
    }


def _quantized(
    name: str,
    fp32_onnx: Path,
    scratch: Path,
    target: Path,
    metadata: dict[str, str],
    batches: list[np.ndarray],
) -> tuple[Path, Callable[[dict[str, str]], None]]:
    """The quantized file in ``scratch`` (what the gate scores) and how to write it to ``target``."""
    if name == "onnx":
        candidate = scratch / target.name
        quantize.quantize_onnx(fp32_onnx, candidate, batches)

        def write_onnx(final: dict[str, str]) -> None:
            data = onnx_model.finish_onnx(candidate.read_bytes(), final, simplify=False)
            atomic_write(target, lambda stream: stream.write(data))

        return candidate, write_onnx
    model = quantize.quantize_openvino(openvino_model.onnx_to_ir(fp32_onnx, metadata), batches)
    openvino_model.write_metadata(model, {**metadata, "precision": "int8"})
    xml = scratch / f"{ir_stem(target)}{OPENVINO_SUFFIX}"
    openvino_model.save_ir(model, xml)

    def write_ir(final: dict[str, str]) -> None:
        openvino_model.write_metadata(model, final)
        atomic_folder(target, lambda folder: openvino_model.save_ir(model, folder / xml.name))

    return xml, write_ir


MAP_DIGITS = 4  # how a refused file's figures are shown, unless its drop needs more to be seen
MAX_MAP_DIGITS = 9


def _digits(drop: float) -> int:
    """Enough decimals that a refused drop never reads as 0.0000 (a drop of 3e-05 against --max-drop 0)."""
    digits = MAP_DIGITS
    while digits < MAX_MAP_DIGITS and drop != 0 and round(drop, digits) == 0:
        digits += 1
    return digits


def _gate_error(refused: list[Int8Report], written: list[Int8Report]) -> AccuracyGateError:
    worst = refused[0]
    figures = "; ".join(
        f"{r.format}: mAP50-95 {r.map_int8:.{d}f} INT8 against {r.map_fp32:.{d}f} fp32, a drop of {r.drop:.{d}f}"
        for r in refused
        for d in [_digits(r.drop)]
    )
    kept = f" (written: {', '.join(r.format for r in written)})" if written else ""
    return AccuracyGateError(
        f"INT8 accuracy check failed, {figures}, more than --max-drop {worst.max_drop:g}; "
        f"the INT8 file was not written{kept}",
        hint="calibrate on more images (--calib-images), try the other --format, or accept more with --max-drop",
    )
