"""Where ``yolor export`` writes each format, checked by the one writer guard before any work.

An OpenVINO IR is a folder replaced whole, so only a folder this tool wrote as an IR may ever be
replaced: it is recognised by what export writes into it (one NAME.xml beside its NAME.bin, the
.xml carrying yolor's metadata in its rt_info), never by file suffixes alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from lxml import etree

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.files import guard_output
from yolor_cli.engine.infer.exported import OPENVINO_FOLDER_SUFFIX, OPENVINO_SUFFIX

# An OpenVINO IR is two files (NAME.xml, NAME.bin), so it is written as one folder.
SUFFIXES = {"onnx": ".onnx", "openvino": OPENVINO_FOLDER_SUFFIX, "torchscript": ".torchscript", "pt": ".pt"}
# Names a file of another format: a checkpoint is never written under an ONNX name, nor the reverse.
FORMAT_FILE_SUFFIXES = {".onnx": "onnx", ".torchscript": "torchscript", ".pt": "pt", ".pth": "pt", ".xml": "openvino"}
DEPLOY_STEM_SUFFIX = "_deploy"  # best.pt -> best_deploy.pt, so the stripped file never shadows its source
INT8_STEM_SUFFIX = "_int8"  # best.pt -> best_int8.onnx, best_int8_openvino_model/
IR_WEIGHTS_SUFFIX = ".bin"
PRODUCER = "yolor-cli"  # how the metadata's "producer" value starts in everything export writes
METADATA_SECTION = "yolor"  # the IR's rt_info section export fills (openvino_model.METADATA_SECTION)
# Reading a folder's .xml to recognise it: no entities, no network, no huge documents.
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def producer(version: str) -> str:
    return f"{PRODUCER} {version}"


def foreign_ir(folder: Path) -> str | None:
    """Why ``folder`` is not an IR folder ``yolor export`` wrote (then it is never replaced), or None."""
    entries = sorted(folder.iterdir())
    graphs = [item for item in entries if item.suffix.lower() == OPENVINO_SUFFIX]
    expected = [graphs[0], graphs[0].with_suffix(IR_WEIGHTS_SUFFIX)] if len(graphs) == 1 else []
    if sorted(entries) != sorted(expected) or any(item.is_symlink() or not item.is_file() for item in entries):
        shown = ", ".join(item.name for item in entries[:3]) + (", ..." if len(entries) > 3 else "")
        return f"is not an OpenVINO folder written by yolor export (it holds {shown or 'nothing'})"
    try:
        root = etree.parse(str(graphs[0]), _SAFE_PARSER).getroot()
    except (OSError, etree.XMLSyntaxError):
        root = None
    mark = root.find(f"rt_info/{METADATA_SECTION}/producer") if root is not None and root.tag == "net" else None
    if mark is None or not str(mark.get("value", "")).startswith(PRODUCER):
        return f"holds {graphs[0].name}, which yolor export did not write"
    return None


def _with_suffix(path: Path, suffix: str) -> Path:
    """``model`` or ``model.onnx`` -> ``model.onnx``; a dotted stem (``model.v1.5``) keeps its dots;
    ``m_openvino_model`` stays as it is for the OpenVINO folder."""
    if path.name.endswith(OPENVINO_FOLDER_SUFFIX):
        path = path.with_name(path.name[: -len(OPENVINO_FOLDER_SUFFIX)] or "model")
    base = path.with_suffix("") if path.suffix.lower() in SUFFIXES.values() else path
    return base.with_name(base.name + suffix)


def _names_a_file(path: Path) -> bool:
    """``m.ts`` or ``model.onnx`` name the file; ``model.v2`` or ``model.v1.5`` are dotted stems (a
    version), which still get the format's suffix, so ``yolor detect`` recognises an .onnx file."""
    return bool(path.suffix) and re.fullmatch(r"\.v?\d+", path.suffix, flags=re.IGNORECASE) is None


def _check_format_suffix(name: str, path: Path) -> None:
    """A file named as another format (``-f pt -o m.onnx``) would be read as that format later."""
    named = FORMAT_FILE_SUFFIXES.get(path.suffix.lower())
    if named is not None and named != name:
        raise YolorError(
            f"--output {path} names a {named} file, but --format {name} is written there",
            hint=f"name it {_with_suffix(path, SUFFIXES[name]).name}",
        )


def output_paths(
    weights: Path, formats: list[str], output: Path | None, overwrite: bool = False, int8: bool = False
) -> dict[str, Path]:
    """Where each format goes: ``--output`` exactly as typed for one format and a name with a suffix
    (``m.ts``, ``model.onnx``: what people type; not a version such as ``model.v2``); else ``--output``
    with each format's suffix; by default NAME.onnx, NAME.torchscript and NAME_deploy.pt beside the
    weights, numbered together (NAME_2.onnx, NAME_2.torchscript...) rather than overwriting anything.
    Each path passes :func:`guard_output`: an existing file is replaced only with ``overwrite``, an IR
    folder only when export wrote it, the input weights never. INT8 files are NAME_int8.onnx and
    NAME_int8_openvino_model/ by default."""
    if output is not None and len(formats) == 1 and (_names_a_file(output) or formats == ["openvino"]):
        paths = {formats[0]: output}
        if formats != ["openvino"]:
            _check_format_suffix(formats[0], output)
    elif output is not None:
        paths = {name: _with_suffix(output, SUFFIXES[name]) for name in formats}
    else:

        def default(name: str, number: int) -> Path:
            stem = weights.stem + (DEPLOY_STEM_SUFFIX if name == "pt" else "") + (INT8_STEM_SUFFIX if int8 else "")
            stem += f"_{number}" if number > 1 else ""
            return weights.with_name(stem + SUFFIXES[name])

        number = 1
        while any(default(name, number).exists() for name in formats):
            number += 1
        paths = {name: default(name, number) for name in formats}
    for name, path in paths.items():
        folder = name == "openvino"
        guard_output(path, inputs=[weights], overwrite=overwrite, folder=folder, foreign=foreign_ir if folder else None)
    return paths
