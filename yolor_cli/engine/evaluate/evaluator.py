"""Evaluation on a data.yaml split: of a model (``yolor eval``, validation while training) or of a
COCO-style predictions file made elsewhere."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolor_cli.engine.boxes import xywhn_to_xyxy
from yolor_cli.engine.config import DataConfig, load_data_config
from yolor_cli.engine.data.dataset import DetectionDataset
from yolor_cli.engine.data.labels import ImageRecord, collect_image_files
from yolor_cli.engine.data.loader import build_dataloader, build_dataset
from yolor_cli.engine.errors import DataError, YolorError
from yolor_cli.engine.evaluate.compare import Comparison, image_changes
from yolor_cli.engine.evaluate.errors import ErrorBreakdown, error_breakdown
from yolor_cli.engine.evaluate.metrics import ImageDetections, Metrics, confusion_matrix, evaluate_detections
from yolor_cli.engine.evaluate.plots import (
    plot_confusion_matrix,
    plot_errors,
    plot_metrics,
    plots_available,
    require_matplotlib,
)
from yolor_cli.engine.evaluate.request import EVAL_BATCH_SIZE, EVAL_CONF, EVAL_IOU, EvalRequest
from yolor_cli.engine.files import atomic_write, check_regular_file
from yolor_cli.engine.infer.exported import ExportedDetector, is_exported, load_for_inference
from yolor_cli.engine.infer.predictor import Detections, Predictor
from yolor_cli.engine.infer.request import DEFAULT_IMG_SIZE
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.model.darknet.model import check_stride_multiple
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.model.memory import check_batch_fits
from yolor_cli.engine.reporting import Reporter, SilentReporter
from yolor_cli.engine.runs import new_run_dir
from yolor_cli.engine.runtime import InferencePrecision, resolve_inference_precision, select_device

EVAL_PAD = 0.5  # extra half stride around rectangular batches, as the official test.py uses
JSON_BOX_DECIMALS = 3
JSON_SCORE_DECIMALS = 5


SPEED_STAGES = ("preprocess", "inference", "nms")


@dataclass
class EvalResult:
    metrics: Metrics
    names: list[str]
    images: int
    instances: int
    # Milliseconds per image and stage; None when no model ran (scoring a predictions file).
    speed_ms: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(SPEED_STAGES))
    confusion: np.ndarray | None = None
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    losses: np.ndarray | None = None  # box, obj, cls, total of the training loss, when asked for
    precision: InferencePrecision | None = None  # what the model ran in; None when no model ran
    # Each image's detections and ground truth as scored, and the image's file stem (for --errors, --compare).
    detections: list[ImageDetections] = field(default_factory=list)
    image_names: list[str] = field(default_factory=list)
    errors: ErrorBreakdown | None = None  # TIDE's breakdown, with --errors or --compare
    comparison: Comparison | None = None  # with --compare


def ground_truth(record: ImageRecord) -> tuple[np.ndarray, np.ndarray]:
    """Label rows of a record as xyxy pixels of its original image, and their classes."""
    boxes = xywhn_to_xyxy(record.labels[:, 1:5].astype(np.float64), record.width, record.height)
    return boxes, record.labels[:, 0].astype(int)


def _with_truth(record: ImageRecord, detections: Detections) -> ImageDetections:
    gt_boxes, gt_classes = ground_truth(record)
    return ImageDetections(detections.boxes, detections.scores, detections.classes, gt_boxes, gt_classes)


LossFunction = Callable[[list[torch.Tensor], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def predict_dataset(
    predictor: Predictor,
    dataset: DetectionDataset,
    *,
    batch_size: int,
    workers: int = 0,
    reporter: Reporter | None = None,
    loss: LossFunction | None = None,
) -> tuple[list[tuple[ImageRecord, Detections]], np.ndarray | None]:
    """Detections per image, and with ``loss`` (the training loss) its mean items over the batches."""
    reporter = reporter or SilentReporter()
    loader = build_dataloader(dataset, batch_size=batch_size, workers=workers)
    by_path = {str(record.image): record for record in dataset.records}
    results = []
    loss_sum = np.zeros(4)
    for images, targets, paths, geometries in reporter.track(loader, "Evaluating", total=len(loader)):
        for path, detections in zip(paths, predictor(images, geometries)):
            results.append((by_path[path], detections))
        if loss is not None:
            raw = [p.float() for p in predictor.last_raw]
            loss_sum += loss(raw, targets.to(predictor.device))[1].cpu().numpy()
    return results, (loss_sum / max(len(loader), 1) if loss is not None else None)


def predictions_json(results: list[tuple[ImageRecord, Detections]]) -> list[dict[str, Any]]:
    """COCO results list: image_id = the image file's stem, category_id = 0-based class, bbox xywh."""
    rows = []
    for record, det in results:
        for (x1, y1, x2, y2), score, cls in zip(det.boxes, det.scores, det.classes):
            box = [round(float(v), JSON_BOX_DECIMALS) for v in (x1, y1, x2 - x1, y2 - y1)]
            rows.append(
                {
                    "image_id": record.image.stem,
                    "category_id": int(cls),
                    "bbox": box,
                    "score": round(float(score), JSON_SCORE_DECIMALS),
                }
            )
    return rows


def _score(results: list[tuple[ImageRecord, Detections]], names: list[str], metric: str, task: str) -> EvalResult:
    images = [_with_truth(record, det) for record, det in results]
    metrics = evaluate_detections(images, len(names), metric)
    instances = sum(len(image.gt_classes) for image in images)
    # A split of background images is legal (mAP 0), but a user reading "0" should know it is not the model.
    notes = [f"no labelled objects in the {task} split: mAP is 0 by definition"] if not instances else []
    return EvalResult(
        metrics=metrics,
        names=names,
        images=len(images),
        instances=instances,
        confusion=confusion_matrix(images, len(names)),
        notes=notes,
        detections=images,
        image_names=[record.image.stem for record, _ in results],
    )


def check_model_classes(
    model: DarknetModel | ExportedDetector,
    data: DataConfig,
    hint: str = "evaluate with the data the model was trained on, or fix names in the data file",
) -> None:
    """A model scored on data with another class count would be scored against the wrong classes."""
    if model.nc != data.nc:
        raise YolorError(f"{data.source} has nc={data.nc} but the model was built for nc={model.nc}", hint=hint)


def evaluation_dataset(
    data: DataConfig, task: str, img_size: int, batch_size: int, stride: int, reporter: Reporter | None
) -> DetectionDataset:
    """A split as every evaluation reads it: rectangular batches with the evaluation padding, so that
    each way of scoring a model (here, preloaded, during training) sees the same pixels."""
    return build_dataset(
        data, task, img_size=img_size, batch_size=batch_size, rect=True, stride=stride, pad=EVAL_PAD, reporter=reporter
    )


def evaluate_model(
    model: DarknetModel,
    data: DataConfig,
    *,
    task: str = "val",
    img_size: int = DEFAULT_IMG_SIZE,
    batch_size: int = EVAL_BATCH_SIZE,
    conf: float = EVAL_CONF,
    iou: float = EVAL_IOU,
    metric: str = "coco",
    device: Any = "cpu",
    workers: int = 0,
    half: bool = False,
    fuse: bool = True,
    loss: LossFunction | None = None,
    reporter: Reporter | None = None,
    precision: InferencePrecision | None = None,
) -> tuple[EvalResult, list[tuple[ImageRecord, Detections]]]:
    """Score ``model`` on a split. It runs in fp32 unless ``precision`` (or ``half``, fp16 on CUDA)
    says otherwise: validation and pruning compare figures across calls, so only ``yolor eval``
    resolves the automatic precision (:func:`resolve_inference_precision`)."""
    model.check_img_size(img_size)
    check_model_classes(model, data)
    dataset = evaluation_dataset(data, task, img_size, batch_size, model.max_stride, reporter)
    predictor = Predictor(model, device=device, conf=conf, iou=iou, half=half, fuse=fuse, precision=precision)
    results, losses = predict_dataset(
        predictor, dataset, batch_size=batch_size, workers=workers, reporter=reporter, loss=loss
    )
    evaluated = _score(results, list(data.names), metric, task)
    evaluated.speed_ms = predictor.timing.per_image_ms()
    evaluated.losses = losses
    evaluated.precision = predictor.precision
    return evaluated, results


def evaluate_exported(
    detector: ExportedDetector,
    data: DataConfig,
    *,
    task: str = "val",
    img_size: int = DEFAULT_IMG_SIZE,
    batch_size: int = EVAL_BATCH_SIZE,
    conf: float = EVAL_CONF,
    iou: float = EVAL_IOU,
    metric: str = "coco",
    reporter: Reporter | None = None,
) -> tuple[EvalResult, list[tuple[ImageRecord, Detections]]]:
    """An exported file scored as :func:`evaluate_model` scores a checkpoint. A file of one input size
    sees every image letterboxed to that square (rectangular batches would not fit it); a file with
    dynamic height and width gets the same rectangular batches as PyTorch."""
    check_model_classes(detector, data, hint="evaluate with the data the model was exported for")
    if detector.fixed_size is not None:
        height, width = detector.fixed_size
        if height != width:
            raise YolorError(f"{detector.path} takes {height}x{width} inputs; yolor eval scores square inputs only")
        dataset = build_dataset(data, task, img_size=height, batch_size=batch_size, reporter=reporter)
    else:
        check_stride_multiple(img_size, detector.stride)
        dataset = evaluation_dataset(data, task, img_size, batch_size, detector.stride, reporter)
    predictor = Predictor(detector, conf=conf, iou=iou)
    return evaluate_predictor(
        predictor, dataset, data, task=task, batch_size=batch_size, metric=metric, reporter=reporter
    )


def evaluate_predictor(
    predictor: Predictor,
    dataset: DetectionDataset,
    data: DataConfig,
    *,
    task: str = "val",
    batch_size: int = EVAL_BATCH_SIZE,
    metric: str = "coco",
    reporter: Reporter | None = None,
) -> tuple[EvalResult, list[tuple[ImageRecord, Detections]]]:
    """Any model behind a :class:`Predictor` on a dataset already built, so that several models
    (``yolor benchmark``'s formats) are scored on the very same letterboxed images."""
    results, _ = predict_dataset(predictor, dataset, batch_size=batch_size, reporter=reporter)
    evaluated = _score(results, list(data.names), metric, task)
    evaluated.speed_ms = predictor.timing.per_image_ms()
    return evaluated, results


def _read_predictions(path: Path) -> list[dict[str, Any]]:
    check_regular_file(path, "predictions file")  # a FIFO would block the read forever
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"predictions file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read predictions {path}: {exc}") from None
    if not isinstance(rows, list):
        raise DataError(f"{path} is not a COCO results list (a JSON list of detections)")
    return rows


def evaluate_predictions(
    path: Path, data: DataConfig, *, task: str = "val", metric: str = "coco", reporter: Reporter | None = None
) -> EvalResult:
    """Score detections made elsewhere: ``image_id`` = image stem, ``category_id`` = 0-based class,
    ``bbox`` = [x, y, w, h] in pixels of the original image, ``score``."""
    reporter = reporter or SilentReporter()
    dataset = build_dataset(data, task, img_size=32, batch_size=1, reporter=reporter)
    by_stem = {record.image.stem: record for record in dataset.records}
    grouped: dict[str, list[tuple[list[float], float, int]]] = {stem: [] for stem in by_stem}
    # Images the split lists but the label scan skipped were warned about already, with the reason;
    # their detections are dropped without a second warning that would call them unknown.
    listed = {image.stem for image in collect_image_files(data.split(task))}
    unknown_images: set[str] = set()
    for number, row in enumerate(_read_predictions(path)):
        try:
            stem, cls, score = str(row["image_id"]), int(row["category_id"]), float(row["score"])
            x, y, w, h = (float(v) for v in row["bbox"])
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"{path}: entry {number} is not {{image_id, category_id, bbox: [x, y, w, h], score}}"
            ) from None
        if not 0 <= cls < data.nc:
            raise DataError(f"{path}: entry {number} has category_id {cls}, but the data has classes 0..{data.nc - 1}")
        if stem not in grouped:
            if stem not in listed:
                unknown_images.add(stem)
            continue
        grouped[stem].append(([x, y, x + w, y + h], score, cls))
    if unknown_images:
        reporter.warning(
            f"{len(unknown_images)} image_id values name no {task} image and were ignored "
            f"(e.g. {sorted(unknown_images)[0]!r})"
        )
    results = []
    for stem, record in by_stem.items():
        rows = grouped[stem]
        results.append(
            (
                record,
                Detections(
                    boxes=np.array([r[0] for r in rows], dtype=np.float64).reshape(-1, 4),
                    scores=np.array([r[1] for r in rows], dtype=np.float64),
                    classes=np.array([r[2] for r in rows], dtype=int),
                ),
            )
        )
    return _score(results, list(data.names), metric, task)


def write_predictions(results: list[tuple[ImageRecord, Detections]], path: Path) -> Path:
    payload = json.dumps(predictions_json(results)).encode()
    return atomic_write(path, lambda stream: stream.write(payload))


def run_eval(request: EvalRequest, *, reporter: Reporter | None = None) -> EvalResult:
    """What ``yolor eval`` does: score a checkpoint or a predictions file (and with ``--compare`` a
    second one on the same split), then write the extras."""
    if (request.weights is None) == (request.predictions is None):
        raise YolorError("pass --weights (a model to evaluate) or --predictions (a results file), one of them")
    if request.save_json and request.predictions is not None:
        raise YolorError("--save-json writes a model's predictions; with --predictions there is no model")
    if request.compare is not None and request.compare in (request.weights, request.predictions):
        raise YolorError(f"--compare {request.compare} is the model being evaluated", hint="compare with another one")
    if request.plots:
        require_matplotlib()  # fail before a long evaluation, not after it
    data_config = load_data_config(request.data)
    if request.single_cls:
        data_config = data_config.as_single_class()
    source = request.weights if request.weights is not None else request.predictions
    assert source is not None
    result, results = _evaluate_source(request, data_config, source, reporter)
    if request.errors or request.compare is not None:
        result.errors = error_breakdown(result.detections, len(result.names))
    if request.compare is not None:
        other, _ = _evaluate_source(request, data_config, request.compare, reporter)
        other.errors = error_breakdown(other.detections, len(other.names))
        result.comparison = Comparison(
            a_label=str(source),
            b_label=str(request.compare),
            a=result.metrics,
            b=other.metrics,
            a_errors=result.errors,
            b_errors=other.errors,
            names=result.names,
            changes=image_changes(result.detections, result.image_names, other.detections, other.image_names),
        )
        result.notes.extend(f"{request.compare.name}: {note}" for note in other.notes)
    if request.save_json or request.plots or request.errors or request.compare is not None:
        _write_extras(request, result, results)
    return result


def _evaluate_source(
    request: EvalRequest, data_config: DataConfig, source: Path, reporter: Reporter | None
) -> tuple[EvalResult, list[tuple[ImageRecord, Detections]] | None]:
    """One model or predictions file (``source``) scored as the request says; the detections of a model."""
    if source == request.predictions or (source == request.compare and source.suffix.lower() == ".json"):
        result = evaluate_predictions(source, data_config, task=request.task, metric=request.metric, reporter=reporter)
        return result, None
    result, results, notes = _evaluate_weights(replace(request, weights=source), data_config, reporter)
    result.notes = notes + result.notes
    return result, results


def _evaluate_weights(
    request: EvalRequest, data_config: DataConfig, reporter: Reporter | None
) -> tuple[EvalResult, list[tuple[ImageRecord, Detections]], list[str]]:
    """Load ``request.weights`` and evaluate it; also returns the detections and the loader's notes."""
    assert request.weights is not None
    if is_exported(request.weights):
        return _evaluate_exported_file(request, data_config, reporter)
    loaded = load_model(cfg=request.cfg, weights=request.weights, trust_pickle=request.trust_pickle)
    if request.single_cls and loaded.nc != 1:  # the data file is not at fault: the flag made it one class
        raise YolorError(
            f"--single-cls makes the data one class but the model has {loaded.nc}",
            hint="drop --single-cls or evaluate a model trained with it",
        )
    device = select_device(request.device)
    check_batch_fits(loaded.model, batch=request.batch_size, img_size=request.img_size, device=device)
    precision = resolve_inference_precision(device, request.half)
    result, results = evaluate_model(
        loaded.model,
        data_config,
        task=request.task,
        img_size=request.img_size,
        batch_size=request.batch_size,
        conf=request.conf,
        iou=request.iou,
        metric=request.metric,
        device=device,
        workers=request.workers,
        reporter=reporter,
        precision=precision,
    )
    return result, results, loaded.notes + ([precision.note] if precision.note else [])


def _evaluate_exported_file(
    request: EvalRequest, data_config: DataConfig, reporter: Reporter | None
) -> tuple[EvalResult, list[tuple[ImageRecord, Detections]], list[str]]:
    """An .onnx file, OpenVINO IR or .torchscript file from ``yolor export``, INT8 ones included, on
    its own runtime."""
    assert request.weights is not None
    detector, precision, notes = load_for_inference(request.weights, select_device(request.device), request.half)
    if request.single_cls and detector.nc != 1:
        raise YolorError(f"--single-cls makes the data one class but the exported model has {detector.nc}")
    if request.cfg:
        notes.append("--cfg is not used with an exported file (it carries its graph)")
    if detector.fixed_size is not None and detector.fixed_size != (request.img_size, request.img_size):
        notes.append(
            f"{detector.path.name} takes {detector.fixed_size[0]}x{detector.fixed_size[1]} inputs only; "
            f"evaluating at that size instead of --img-size {request.img_size}"
        )
    result, results = evaluate_exported(
        detector,
        data_config,
        task=request.task,
        img_size=request.img_size,
        batch_size=request.batch_size,
        conf=request.conf,
        iou=request.iou,
        metric=request.metric,
        reporter=reporter,
    )
    result.precision = precision
    return result, results, notes


def _write_extras(
    request: EvalRequest, result: EvalResult, results: list[tuple[ImageRecord, Detections]] | None
) -> None:
    """predictions.json, the plots, errors.json (+ errors.png) and compare.json, in a new run folder;
    their paths go to ``result.files``."""
    run_dir = new_run_dir(request.project, request.name, request.exist_ok)
    if results is not None and request.save_json:
        result.files.append(write_predictions(results, run_dir / "predictions.json"))
    if request.plots:
        result.files.extend(plot_metrics(result.metrics, result.names, run_dir))
        if result.confusion is not None:
            result.files.append(plot_confusion_matrix(result.confusion, result.names, run_dir))
    if request.errors and result.errors is not None:
        result.files.append(write_json(result.errors.payload(result.names), run_dir / "errors.json"))
        if plots_available():
            result.files.append(plot_errors(result.errors, result.names, run_dir / "errors.png"))
        else:
            result.notes.append("errors.png needs matplotlib: pip install 'yolor-cli[plots]'")
    if result.comparison is not None:
        result.files.append(write_json(result.comparison.payload(), run_dir / "compare.json"))


def write_json(payload: dict[str, Any], path: Path) -> Path:
    """One JSON object, written atomically (errors.json, compare.json)."""
    text = (json.dumps(payload, indent=2) + "\n").encode()
    return atomic_write(path, lambda stream: stream.write(text))
