"""``yolor detect`` as an engine call: frames in, annotated images/videos and YOLO txt labels out."""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from yolor_cli.engine.boxes import xyxy_to_xywhn
from yolor_cli.engine.data.images import write_image
from yolor_cli.engine.data.sources import Frame, Unreadable, iter_frames, list_sources
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.files import atomic_write
from yolor_cli.engine.infer.drawing import class_name, draw_boxes
from yolor_cli.engine.infer.exported import ExportedDetector, is_exported, load_for_inference
from yolor_cli.engine.infer.predictor import Detections, Predictor
from yolor_cli.engine.infer.request import DetectRequest
from yolor_cli.engine.model.class_names import resolve_class_filter, resolve_names
from yolor_cli.engine.model.darknet.model import check_stride_multiple
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.reporting import Reporter, SilentReporter
from yolor_cli.engine.runs import new_run_dir
from yolor_cli.engine.runtime import InferencePrecision, resolve_inference_precision, select_device

VIDEO_CODEC = "mp4v"
MAX_SKIPPED_NAMED = 3  # unreadable inputs named in the error when every input was skipped


@dataclass
class DetectResult:
    save_dir: Path
    images: int = 0
    video_frames: int = 0
    detections: Counter[str] = field(default_factory=Counter)
    unreadable: list[Unreadable] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    speed_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    precision: InferencePrecision | None = None  # what the model ran in
    # Output stem per input file: inputs of one name from different folders must not overwrite each other.
    stems: dict[Path, str] = field(default_factory=dict)

    def stem_for(self, path: Path) -> str:
        if path not in self.stems:
            taken = set(self.stems.values())
            stem, number = path.stem, 2
            while stem in taken:
                stem, number = f"{path.stem}_{number}", number + 1
            self.stems[path] = stem
        return self.stems[path]


def draw(image: np.ndarray, detections: Detections, names: list[str] | None) -> np.ndarray:
    return draw_boxes(image, detections.boxes, detections.classes, names, scores=detections.scores)


def label_lines(detections: Detections, width: int, height: int, with_conf: bool) -> str:
    rows = xyxy_to_xywhn(detections.boxes, width, height) if len(detections) else np.zeros((0, 4))
    lines = []
    for (cx, cy, w, h), score, cls in zip(rows, detections.scores, detections.classes):
        line = f"{int(cls)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"
        lines.append(f"{line} {score:.5f}" if with_conf else line)
    return "".join(f"{line}\n" for line in lines)


def find_sources(source: str) -> list[Path]:
    """The files ``source`` names; none is an error, raised before any run folder is made."""
    paths = list_sources(source)
    if not paths:
        raise YolorError(f"{source} holds no image or video")
    return paths


def _all_skipped(unreadable: list[Unreadable]) -> YolorError:
    shown = "; ".join(f"{item.path}: {item.reason}" for item in unreadable[:MAX_SKIPPED_NAMED])
    more = len(unreadable) - MAX_SKIPPED_NAMED
    return YolorError(
        f"nothing to detect on: every input was skipped ({shown}{f'; and {more} more' if more > 0 else ''})",
        hint="pass images or videos that OpenCV can decode",
    )


def run_detect(
    predictor: Predictor,
    source: str | list[Path],
    save_dir: Path,
    *,
    img_size: int,
    names: list[str] | None,
    save_images: bool = True,
    save_txt: bool = False,
    save_conf: bool = False,
    reporter: Reporter | None = None,
) -> DetectResult:
    """Run on every frame of ``source`` (a source string or the files :func:`find_sources` found).
    Unreadable inputs are skipped with a warning; when every input is, that is an error."""
    reporter = reporter or SilentReporter()
    paths = find_sources(source) if isinstance(source, str) else source
    result = DetectResult(save_dir=save_dir)
    writers: dict[Path, cv2.VideoWriter] = {}
    try:
        for item in reporter.track(iter_frames(paths), "Detecting", total=None):
            if isinstance(item, Unreadable):
                result.unreadable.append(item)
                reporter.warning(f"skipped {item.path}: {item.reason}")
                continue
            _detect_one(
                predictor,
                item,
                result,
                writers,
                img_size=img_size,
                names=names,
                save_images=save_images,
                save_txt=save_txt,
                save_conf=save_conf,
            )
    finally:
        for writer in writers.values():
            writer.release()
    if result.unreadable and not (result.images or result.video_frames):
        raise _all_skipped(result.unreadable)
    return result


def _detect_one(
    predictor: Predictor,
    frame: Frame,
    result: DetectResult,
    writers: dict[Path, cv2.VideoWriter],
    *,
    img_size: int,
    names: list[str] | None,
    save_images: bool,
    save_txt: bool,
    save_conf: bool,
) -> None:
    tensor, geometry = predictor.prepare(frame.image, img_size)
    detections = predictor(tensor[None], [geometry])[0]
    for cls in detections.classes:
        result.detections[class_name(names, int(cls))] += 1
    height, width = frame.image.shape[:2]
    base = result.stem_for(frame.path)
    stem = base if frame.frame is None else f"{base}_frame{frame.frame}"
    if save_txt:
        label_file = result.save_dir / "labels" / f"{stem}.txt"
        text = label_lines(detections, width, height, save_conf).encode("utf-8")
        atomic_write(label_file, lambda stream: stream.write(text), sync=False)
        result.written.append(label_file)
    if frame.frame is None:
        result.images += 1
        if save_images:
            target = result.save_dir / f"{base}{frame.path.suffix}"
            write_image(target, draw(frame.image, detections, names))
            result.written.append(target)
        return
    result.video_frames += 1
    if save_images:
        target = result.save_dir / f"{base}.mp4"
        if target not in writers:
            writers[target] = cv2.VideoWriter(
                str(target), cv2.VideoWriter_fourcc(*VIDEO_CODEC), frame.fps, (width, height)
            )
            result.written.append(target)
        writers[target].write(draw(frame.image, detections, names))


def detect(request: DetectRequest, *, reporter: Reporter | None = None) -> DetectResult:
    """What ``yolor detect`` does: load, resolve names and filters, run, write."""
    predictor, names, notes = _predictor_for(request)
    paths = find_sources(request.source)  # before the run folder: a source with nothing in it makes none
    project = Path(request.project)
    # Folders this call is about to make, deepest first: removed again if the run writes nothing.
    missing = [folder for folder in (project, *project.parents) if not folder.exists()]
    reused = request.exist_ok and (project / request.name).exists()
    # Refused before any file is written: a run folder holding the source images would overwrite them.
    save_dir = new_run_dir(project, request.name, request.exist_ok, inputs=paths)
    try:
        result = run_detect(
            predictor,
            paths,
            save_dir,
            img_size=request.img_size,
            names=names,
            save_images=request.save_images,
            save_txt=request.save_txt,
            save_conf=request.save_conf,
            reporter=reporter,
        )
    except YolorError:
        _remove_if_empty([] if reused else [save_dir, *missing])
        raise
    result.speed_ms = predictor.timing.per_image_ms()
    result.notes = notes
    result.precision = predictor.precision
    return result


def _predictor_for(request: DetectRequest) -> tuple[Predictor, list[str] | None, list[str]]:
    """The model (a checkpoint or an exported .onnx file) with its thresholds, class names and notes."""
    weights = Path(request.weights)
    device = select_device(request.device)
    if is_exported(weights):
        model, precision, notes = _load_exported(weights, request.cfg, request.img_size, device, request.half)
        nc, checkpoint_names = model.nc, model.names
    else:
        loaded = load_model(cfg=request.cfg, weights=weights, trust_pickle=request.trust_pickle)
        loaded.model.check_img_size(request.img_size)
        model, nc, checkpoint_names, notes = loaded.model, loaded.nc, loaded.names, loaded.notes
        precision = resolve_inference_precision(device, request.half)
        notes = notes + ([precision.note] if precision.note else [])
    names = resolve_names(checkpoint_names, nc, names_file=request.names_file, data=request.data)
    keep = resolve_class_filter(list(request.classes) if request.classes else None, names, nc)
    predictor = Predictor(
        model,
        device=device,
        conf=request.conf,
        iou=request.iou,
        max_det=request.max_det,
        classes=keep,
        precision=precision,
    )
    if predictor.precision is None:  # an exported file: the predictor leaves naming its type to the caller
        predictor.precision = precision
    return predictor, names, notes


def _remove_if_empty(folders: list[Path]) -> None:
    """Folders this call made and wrote nothing to are not a result: leave no empty expN behind.
    Only empty folders go (``rmdir``), so nothing anyone wrote can be lost."""
    for folder in folders:
        with contextlib.suppress(OSError):  # not empty after all, or gone: either way nothing to tidy
            folder.rmdir()


def _load_exported(
    path: Path, cfg: str | None, img_size: int, device: torch.device, half: bool | None
) -> tuple[ExportedDetector, InferencePrecision, list[str]]:
    """An exported file runs on its runtime; its metadata replaces the checkpoint's cfg and names."""
    model, precision, notes = load_for_inference(path, device, half)
    if cfg:
        notes.append("--cfg is not used with an exported file (it carries its graph)")
    if model.fixed_size is not None:
        if model.fixed_size != (img_size, img_size):
            height, width = model.fixed_size
            notes.append(
                f"{model.path.name} takes {height}x{width} inputs only (exported without --dynamic-size); "
                f"using that instead of --img-size {img_size}"
            )
    else:
        check_stride_multiple(img_size, model.stride)
    return model, precision, notes
