"""Exported detectors (an ``.onnx`` file, an OpenVINO IR) as ``yolor detect``, ``yolor eval`` and
``yolor benchmark`` run them: float [0, 1] batches in, decoded (bs, N, 5+nc) boxes out, with the
class names, stride and input size the file's metadata records.

The runtime-specific part is one method, :meth:`ExportedDetector.run_batch`; what every exported
file shares (the metadata rules, a fixed batch padded in chunks) lives in
:mod:`~yolor_cli.engine.infer.detector_base`, which the runtime modules import; this module picks
the runtime for a file and imports them, so imports go one way.
"""

from __future__ import annotations

from pathlib import Path

import torch

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.infer.detector_base import ExportedDetector as ExportedDetector  # re-exported
from yolor_cli.engine.model.checkpoint import EXPORTED_SUFFIXES
from yolor_cli.engine.runtime import InferencePrecision, resolve_inference_precision

OPENVINO_SUFFIX = ".xml"  # an IR is NAME.xml (the graph) beside NAME.bin (the weights)
OPENVINO_FOLDER_SUFFIX = "_openvino_model"  # the folder ``yolor export --format openvino`` writes


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
