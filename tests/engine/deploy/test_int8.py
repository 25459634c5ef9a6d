"""``yolor export --int8``: quantized files, the mAP gate, and eval / detect running them.

The val labels are the fp32 file's own best boxes (``pseudo_labels``): a formula-weight model scores
mAP 0 on real labels, which would make any gate pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from tests.conftest import fill_deterministic, make_shapes_dataset
from tests.engine.deploy.pseudo_labels import write_pseudo_labels
from tests.test_cli import invoke
from yolor_cli.engine.data.labels import label_path_for
from yolor_cli.engine.deploy import quantize
from yolor_cli.engine.deploy.export import ExportRequest, export
from yolor_cli.engine.deploy.int8 import AccuracyGateError
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.infer.exported import is_exported, load_exported, openvino_xml
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

IMG = 64
pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = ["circle", "rectangle", "triangle"]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Weights, a data.yaml with pseudo-labelled val images, and one whose only training image
    (what calibration reads) is flat gray: ranges calibrated on it clip every real image."""
    root = tmp_path_factory.mktemp("int8")
    voc = make_shapes_dataset(root / "voc", images=12, seed=7, val=0.5)
    torch.manual_seed(0)
    model = fill_deterministic(build_model(load_cfg("yolor_csp_tiny"), nc=len(NAMES)))
    weights = root / "tiny.pt"
    save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=NAMES), weights)
    fp32 = export(ExportRequest(weights=weights, formats="onnx", img_size=IMG, output=root / "fp32.onnx"))
    data_yaml = voc / "data.yaml"
    write_pseudo_labels(data_yaml, fp32.files[0].path, IMG)
    gray = voc / "images" / "gray_calibration.jpg"
    cv2.imwrite(str(gray), np.full((IMG, IMG, 3), 114, np.uint8))
    label_path_for(gray).write_text("")
    (voc / "gray.txt").write_text(f"{gray}\n")
    gray_yaml = voc / "gray.yaml"
    config = yaml.safe_load(data_yaml.read_text())
    gray_yaml.write_text(yaml.safe_dump({**config, "train": "gray.txt"}))
    return {"root": root, "weights": weights, "data": data_yaml, "gray": gray_yaml, "voc": voc}


def _export_json(*args: str) -> tuple[int, dict, str]:
    result = invoke("export", *args, "--json")
    payload = json.loads(result.stdout) if result.exit_code == 0 else {}
    return result.exit_code, payload, " ".join(result.stderr.split())


def test_the_head_is_found_from_the_graph_and_left_in_float(project: dict[str, Path]) -> None:
    proto = onnx.load(str(project["root"] / "fp32.onnx"))
    excluded = set(quantize.onnx_decode_nodes(proto))
    kinds = {node.op_type for node in proto.graph.node if node.name in excluded}
    assert {"Sigmoid", "Pow", "Concat", "Conv"} <= kinds
    convs = [node for node in proto.graph.node if node.op_type == "Conv"]
    # the three head convolutions (one per [yolo] level), and no backbone or neck conv
    assert len(excluded & {node.name for node in convs}) == 3 < len(convs)


def test_onnx_int8_is_written_within_the_gate_and_eval_reproduces_its_figure(project: dict[str, Path]) -> None:
    output = project["root"] / "model_int8.onnx"
    code, payload, stderr = _export_json(
        "-w", str(project["weights"]), "--int8", "--data", str(project["data"]), "--img-size", str(IMG),
        "--max-drop", "1", "-o", str(output),
    )  # fmt: skip
    assert code == 0, stderr
    for key in ("map_fp32", "map_int8", "latency_ms_fp32", "latency_ms_int8"):
        assert isinstance(payload[key], float) and payload[key] >= 0
    assert payload["map_fp32"] > 0.8  # the pseudo labels are the fp32 file's own boxes
    assert payload["files"][0]["path"] == str(output) and payload["files"][0]["int8"]["calib_images"] == 6
    changes = payload["files"][0]["int8"]["largest_changes"]  # val images whose detections INT8 changed
    assert len(changes) <= 3 and [c["change"] for c in changes] == sorted(c["change"] for c in changes)
    assert all(set(c) == {"image", "a", "b", "change"} and c["a"] != c["b"] for c in changes)
    proto = onnx.load(str(output))
    kinds = [node.op_type for node in proto.graph.node]
    assert "QuantizeLinear" in kinds and "DequantizeLinear" in kinds and "Sigmoid" in kinds
    # the head convolutions keep float weights (an initializer, not a DequantizeLinear output)
    head = set(quantize.onnx_decode_nodes(onnx.load(str(project["root"] / "fp32.onnx"))))
    floats = {initializer.name for initializer in proto.graph.initializer}
    convs = [node for node in proto.graph.node if node.op_type == "Conv"]
    assert sorted(node.input[1] in floats for node in convs).count(True) == 3
    assert all(node.input[1] in floats for node in convs if node.name in head)
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert metadata["precision"] == "int8" and json.loads(metadata["names"]) == NAMES
    assert json.loads(metadata["int8_check"])["map_int8"] == payload["map_int8"]
    # the INT8 file runs in yolor eval as any exported file, and scores what the export measured
    result = invoke("eval", "-w", str(output), "--data", str(project["data"]), "--img-size", str(IMG), "--json")
    assert result.exit_code == 0, result.output
    assert round(json.loads(result.stdout)["map"], 5) == payload["map_int8"]
    detected = invoke(
        "detect", "-w", str(output), "--source", str(project["voc"] / "images"), "--img-size", str(IMG),
        "--project", str(project["root"] / "det"), "--conf", "0.01", "--json",
    )  # fmt: skip
    assert detected.exit_code == 0, detected.output
    assert json.loads(detected.stdout)["images"] == 13


def test_the_gate_refuses_a_file_calibrated_on_one_gray_image(project: dict[str, Path]) -> None:
    output = project["root"] / "refused_int8.onnx"
    code, _, stderr = _export_json(
        "-w", str(project["weights"]), "--int8", "--data", str(project["gray"]), "--img-size", str(IMG),
        "--calib-images", "1", "-o", str(output),
    )  # fmt: skip
    assert code == 1
    assert "INT8 accuracy check failed" in stderr and "--max-drop 0.01" in stderr
    figures = [float(word.rstrip(",")) for word in stderr.split() if word.rstrip(",").replace(".", "", 1).isdigit()]
    assert len(figures) >= 3  # the INT8 figure, the fp32 figure and the drop
    assert not output.exists() and not list(output.parent.glob(".yolor-int8-*"))
    with pytest.raises(AccuracyGateError, match=r"mAP50-95 \d\.\d{4} INT8 against \d\.\d{4} fp32"):
        export(
            ExportRequest(
                weights=project["weights"], formats="onnx", img_size=IMG, output=output, data=project["gray"],
                int8=True, calib_images=1,
            )
        )  # fmt: skip


def test_int8_option_errors_are_one_message(project: dict[str, Path]) -> None:
    weights = str(project["weights"])
    cases = [
        (["--int8"], "--int8 needs --data"),
        (["--int8", "--data", str(project["data"]), "--format", "torchscript"], "--int8 applies to onnx and openvino"),
        (["--int8", "--data", str(project["data"]), "--half"], "--int8 and --half exclude each other"),
        (["--int8", "--data", str(project["data"]), "--dynamic-size"], "one input size"),
    ]
    for extra, message in cases:
        result = invoke("export", "-w", weights, "--img-size", str(IMG), *extra)
        assert result.exit_code == 1 and message in " ".join(result.stderr.split()), (extra, result.output)
        assert "Traceback" not in result.output


def test_exported_paths_are_recognised() -> None:
    assert is_exported(Path("m.onnx")) and is_exported(Path("m.torchscript")) and is_exported(Path("m.xml"))
    assert not is_exported(Path("m.pt"))


def test_an_openvino_folder_with_two_graphs_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m_openvino_model"
    folder.mkdir()
    with pytest.raises(YolorError, match="holds no OpenVINO .xml"):
        openvino_xml(folder)
    (folder / "a.xml").write_text("")
    (folder / "b.xml").write_text("")
    with pytest.raises(YolorError, match="holds 2 .xml files"):
        load_exported(folder, CPU)


def test_torchscript_files_run_in_eval(project: dict[str, Path]) -> None:
    output = project["root"] / "model.torchscript"
    export(ExportRequest(weights=project["weights"], formats="torchscript", img_size=IMG, output=output))
    from_file = invoke("eval", "-w", str(output), "--data", str(project["data"]), "--img-size", str(IMG), "--json")
    assert from_file.exit_code == 0, from_file.output
    payload = json.loads(from_file.stdout)
    # the labels are the fp32 ONNX file's boxes; the TorchScript file agrees with it to 1e-3, and the
    # formula weights' near-equal scores let NMS break a few ties differently, so not exactly 1
    assert payload["images"] == 6 and payload["map"] > 0.5


def _report(map_int8: float, max_drop: float, fp32: float = 0.51234) -> object:
    from yolor_cli.engine.deploy.int8 import Int8Report

    return Int8Report("openvino", "openvino", "nncf", 8, max_drop, fp32, 0.8, map_int8, 0.8, 10.0, 5.0)


def test_max_drop_0_passes_no_drop_and_shows_a_tiny_drop_with_its_digits() -> None:
    from yolor_cli.engine.deploy.int8 import _gate_error

    assert _report(0.51234, 0.0).passed and _report(0.6, 0.0).passed  # no drop, or a gain, passes --max-drop 0
    tiny = _report(0.51231, 0.0)
    assert not tiny.passed
    message = _gate_error([tiny], []).message
    assert "mAP50-95 0.51231 INT8 against 0.51234 fp32, a drop of 0.00003, more than --max-drop 0;" in message
    assert "0.0000," not in message and "0.0;" not in message
    usual = _gate_error([_report(0.49, 0.01)], []).message
    assert "mAP50-95 0.4900 INT8 against 0.5123 fp32, a drop of 0.0223, more than --max-drop 0.01;" in usual
