"""Exported detectors (an ``.onnx`` file, an OpenVINO IR) as ``yolor detect``, ``yolor eval`` and
``yolor benchmark`` run them: float [0, 1] batches in, decoded (bs, N, 5+nc) boxes out, with the
class names, stride and input size the file's metadata records.

The runtime-specific part is one method, :meth:`ExportedDetector.run_batch`; what every exported
file shares (the metadata rules, a fixed batch padded in chunks) lives here once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.checkpoint import EXPORTED_SUFFIXES
from yolor_cli.engine.runtime import InferencePrecision, resolve_inference_precision

DEFAULT_STRIDE = 32  # YOLOR's largest stride, for files without our metadata
OPENVINO_SUFFIX = ".xml"  # an IR is NAME.xml (the graph) beside NAME.bin (the weights)
OPENVINO_FOLDER_SUFFIX = "_openvino_model"  # the folder ``yolor export --format openvino`` writes


@dataclass
class ExportedDetector:
    """What every exported runtime shares; subclasses load the file and run one batch."""

    path: Path
    names: list[str] | None
    nc: int
    stride: int
    fixed_batch: int | None  # None when the batch axis is dynamic
    fixed_size: tuple[int, int] | None  # (h, w); None when height and width are dynamic
    precision: str  # what the file computes in: "fp32", "fp16", "bf16", "int8" (int8 with float parts)
    notes: list[str] = field(default_factory=list)

    @property
    def runtime(self) -> str:
        raise NotImplementedError

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """One float32 (bs, 3, h, w) batch of the file's own batch size -> (bs, N, 5+nc)."""
        raise NotImplementedError

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.float().cpu().numpy()
        count = len(batch)
        if self.fixed_batch is None:
            outputs = [self.run_batch(batch)]
        else:  # a fixed batch: run in chunks of that size, padding the last one with blank images
            outputs = []
            for start in range(0, count, self.fixed_batch):
                chunk = batch[start : start + self.fixed_batch]
                padding = self.fixed_batch - len(chunk)
                if padding:
                    chunk = np.concatenate([chunk, np.zeros((padding, *chunk.shape[1:]), chunk.dtype)])
                outputs.append(self.run_batch(chunk))
        return torch.from_numpy(np.concatenate(outputs)[:count].astype(np.float32))


def parse_metadata(path: Path, metadata: dict[str, str], output_width: int | None) -> tuple[list[str] | None, int, int]:
    """``names``, ``nc`` and ``stride`` as ``yolor export`` records them; ``nc`` falls back to the
    output's width (5 + nc) for files made elsewhere."""
    try:
        if "nc" in metadata:
            nc = int(metadata["nc"])
        elif output_width is not None:
            nc = output_width - 5
        else:
            raise ValueError("no nc")
        stride = int(metadata.get("stride", DEFAULT_STRIDE))
        names = json.loads(metadata["names"]) if "names" in metadata else None
    except (TypeError, ValueError):
        raise YolorError(
            f"{path} has unreadable metadata (nc, stride or names)", hint="export it again with yolor export"
        ) from None
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise YolorError(
            f"{path}: its 'names' metadata is not a list of class names", hint="export it again with yolor export"
        )
    if nc < 1 or stride < 1:
        raise YolorError(f"{path} has nc={nc}, stride={stride}: not a detector's output")
    return names, nc, stride


def openvino_xml(path: Path) -> Path | None:
    """The IR's .xml when ``path`` names one (the .xml, or the folder export writes), else None."""
    if path.suffix.lower() == OPENVINO_SUFFIX:
        return path
    if path.is_dir():
        graphs = sorted(path.glob(f"*{OPENVINO_SUFFIX}"))
        if len(graphs) == 1:
            return graphs[0]
        if graphs:
            raise YolorError(
                f"{path} holds {len(graphs)} .xml files; name the one to run",
                hint=f"pass --weights {graphs[0]}",
            )
        if path.name.endswith(OPENVINO_FOLDER_SUFFIX):
            raise YolorError(f"{path} holds no OpenVINO .xml file", hint="export it again with yolor export")
    return None


def ir_stem(folder: Path) -> str:
    """``best_int8_openvino_model`` -> ``best_int8``: the IR files inside are named as the model."""
    suffix = OPENVINO_FOLDER_SUFFIX
    return folder.name[: -len(suffix)] if folder.name.endswith(suffix) and folder.name != suffix else folder.name


def is_exported(path: Path) -> bool:
    """Whether ``--weights`` names an exported file rather than a checkpoint."""
    return path.suffix.lower() in EXPORTED_SUFFIXES or openvino_xml(path) is not None


def load_exported(
    path: Path, device: torch.device, precision: str | None = None, *, back_to_back: bool = False
) -> ExportedDetector:
    """The runtime for ``path``: onnxruntime for .onnx, OpenVINO for an IR, torch.jit for .torchscript.
    ``precision`` ("bf16" or "fp32") is what OpenVINO computes the file's float parts in; the other
    runtimes run a file in its own precision. ``back_to_back``: runs follow each other with nothing
    between them (a latency measurement), so onnxruntime's worker threads may spin between runs, as
    they do by default; ``yolor detect`` turns that off, as its pre-processing runs in between."""
    xml = openvino_xml(path)
    if xml is not None:
        from yolor_cli.engine.infer.openvino_model import OpenVinoDetector

        return OpenVinoDetector.load(xml, device, precision)
    if path.suffix.lower() == ".torchscript":
        from yolor_cli.engine.infer.torchscript_model import TorchScriptDetector

        return TorchScriptDetector.load(path, device)
    from yolor_cli.engine.infer.onnx_model import OnnxDetector

    return OnnxDetector.load(path, device, spin=back_to_back)


FILE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def load_for_inference(
    path: Path, device: torch.device, half: bool | None
) -> tuple[ExportedDetector, InferencePrecision, list[str]]:
    """An exported file as eval and detect run it, the precision to report and the notes to show.

    OpenVINO computes an IR's float layers in whatever it is told: fp32 unless ``--half`` asks for bf16
    (not automatic, unlike a checkpoint: the IR was checked in fp32 when exported, INT8 ones by their
    mAP, and ``yolor eval`` must reproduce that figure). onnxruntime and TorchScript run a file in the
    type it was exported in; a ``--half``/``--no-half`` given with one is noted, not silently dropped."""
    notes: list[str] = []
    if openvino_xml(path) is not None:
        if half:
            chosen = resolve_inference_precision(torch.device("cpu"), True)
        else:
            chosen = InferencePrecision(torch.float32, "as it was checked at export; --half for bf16")
        detector = load_exported(path, device, chosen.name)
        notes.extend([chosen.note] if chosen.note else [])
        reason = f"OpenVINO, {chosen.reason}"
    else:
        detector = load_exported(path, device)
        if half is not None:
            flag = "--half" if half else "--no-half"
            notes.append(f"{flag} does not apply to {path.name}: it runs in the precision it was exported in")
        reason = f"{path.name} was exported so ({detector.runtime})"
    dtype = FILE_DTYPES.get(detector.precision, torch.float32)
    label = None if detector.precision in ("fp32", "fp16", "bf16") else detector.precision
    return detector, InferencePrecision(dtype, reason, label=label), notes + list(detector.notes)
