"""``yolor export``: ONNX / TorchScript / stripped .pt files that runtimes run and that agree with
PyTorch, for plain and pruned models, with their metadata, dynamic axes and clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import fill_deterministic, make_shapes_dataset
from yolor_cli.engine import runtime
from yolor_cli.engine.deploy.export import (
    BF16_RELATIVE_TOLERANCE,
    HALF_RELATIVE_TOLERANCE,
    DeployModel,
    ExportRequest,
    VerificationError,
    export,
    output_paths,
)
from yolor_cli.engine.errors import MissingDependencyError, YolorError
from yolor_cli.engine.infer import onnx_model
from yolor_cli.engine.infer.onnx_model import OnnxDetector
from yolor_cli.engine.infer.torchscript_model import METADATA_FILE as TORCHSCRIPT_METADATA
from yolor_cli.engine.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import count_parameters
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.prune.request import GlobalTarget, PruneRequest
from yolor_cli.engine.prune.run import prune

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

IMG = 64
FP32_TOLERANCE = 1e-3  # the limit, restated here so that loosening the module's constant fails a test
BF16_TOLERANCE = 5e-2  # bf16's, restated likewise (measured in the module's comment)
NAMES = ["circle", "rectangle", "triangle"]


@pytest.fixture
def trained_like(tiny_model: torch.nn.Module, tmp_path: Path) -> Path:
    """A checkpoint with varied (formula) weights, so outputs differ across boxes and classes."""
    fill_deterministic(tiny_model)
    path = tmp_path / "tiny.pt"
    save_checkpoint(
        Checkpoint(
            cfg=tiny_model.cfg,
            model_state=tiny_model.state_dict(),
            names=NAMES,
            optimizer_state={"state": {}, "param_groups": []},
            epoch=3,
        ),
        path,
    )
    return path


def _reference(weights: Path, images: np.ndarray) -> np.ndarray:
    model = DeployModel(load_model(weights=weights).model.eval().fuse()).eval()
    with torch.no_grad():
        return model(torch.from_numpy(images)).numpy()


def test_onnx_runs_on_onnxruntime_and_opencv_with_metadata_and_no_scatter(trained_like: Path) -> None:
    result = export(ExportRequest(weights=trained_like, formats="onnx", img_size=IMG))
    (exported,) = result.files
    assert exported.path == trained_like.with_name("tiny.onnx") and exported.path.is_file()
    runtimes = {check.runtime: check for check in exported.checks}
    assert runtimes["onnxruntime"].agrees and runtimes["onnxruntime"].max_abs_diff <= FP32_TOLERANCE
    assert runtimes["opencv-dnn"].ran and runtimes["opencv-dnn"].agrees
    assert result.max_abs_diff == runtimes["onnxruntime"].max_abs_diff
    data = exported.path.read_bytes()
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto)
    assert "ScatterND" not in {node.op_type for node in proto.graph.node}
    assert [i.name for i in proto.graph.input] == ["images"] and [o.name for o in proto.graph.output] == ["output"]
    metadata = onnx_model.read_metadata(data)
    assert json.loads(metadata["names"]) == NAMES and metadata["nc"] == "3"
    assert metadata["stride"] == "32" and metadata["img_size"] == str(IMG)
    # An independent run on a new input agrees with PyTorch: boxes in input pixels, scores in [0, 1].
    images = np.random.default_rng(1).random((1, 3, IMG, IMG), dtype=np.float32)
    output = ort.InferenceSession(str(exported.path)).run(None, {"images": images})[0]
    reference = _reference(trained_like, images)
    assert output.shape == (1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 8)
    assert np.abs(output - reference).max() <= FP32_TOLERANCE
    assert output[..., 4:].min() >= 0 and output[..., 4:].max() <= 1


def test_dynamic_batch_and_size(trained_like: Path, tmp_path: Path) -> None:
    result = export(
        ExportRequest(
            weights=trained_like,
            formats="onnx,torchscript",
            img_size=IMG,
            dynamic_size=True,
            output=tmp_path / "out" / "model",
        )
    )
    assert result.dynamic == "batch,height,width"
    for exported in result.files:
        shapes = {check.input_shape for check in exported.checks if check.required}
        assert {(1, 3, IMG, IMG), (2, 3, IMG, IMG), (1, 3, IMG + 32, IMG)} <= shapes
        assert all(check.agrees for check in exported.checks if check.required)
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    assert session.get_inputs()[0].shape[0] == "batch"
    images = np.random.default_rng(2).random((3, 3, 96, 128), dtype=np.float32)
    output = session.run(None, {"images": images})[0]
    assert np.abs(output - _reference(trained_like, images)).max() <= FP32_TOLERANCE


def test_static_export_keeps_its_batch(trained_like: Path, tmp_path: Path) -> None:
    export(ExportRequest(weights=trained_like, formats="onnx", img_size=IMG, batch=2, output=tmp_path / "b2.onnx"))
    shape = ort.InferenceSession(str(tmp_path / "b2.onnx")).get_inputs()[0].shape
    assert shape == [2, 3, IMG, IMG]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_reloads_with_metadata_and_agrees(trained_like: Path) -> None:
    result = export(ExportRequest(weights=trained_like, formats="torchscript", img_size=IMG))
    (exported,) = result.files
    assert exported.path.suffix == ".torchscript" and exported.checks[0].agrees
    extra = {TORCHSCRIPT_METADATA: ""}
    module = torch.jit.load(str(exported.path), _extra_files=extra)
    assert json.loads(json.loads(extra[TORCHSCRIPT_METADATA])["names"]) == NAMES
    images = np.random.default_rng(3).random((2, 3, IMG, IMG), dtype=np.float32)
    with torch.no_grad():
        output = module(torch.from_numpy(images)).numpy()
    assert np.abs(output - _reference(trained_like, images)).max() <= FP32_TOLERANCE


def test_pt_is_stripped_loads_safely_and_half_halves_it(trained_like: Path, tmp_path: Path) -> None:
    result = export(ExportRequest(weights=trained_like, formats="pt", img_size=IMG))
    (exported,) = result.files
    assert exported.path.name == "tiny_deploy.pt" and exported.checks[0].agrees
    raw = torch.load(exported.path, weights_only=True)
    assert raw["optimizer"] is None and raw["ema"] is None and raw["names"] == NAMES
    half = export(
        ExportRequest(weights=trained_like, formats="pt", img_size=IMG, half=True, output=tmp_path / "half.pt")
    ).files[0]
    assert half.size_bytes < 0.6 * exported.size_bytes
    assert torch.load(half.path, weights_only=True)["model"]["module_list.0.Conv2d.weight"].dtype == torch.float16
    assert load_checkpoint(half.path).names == NAMES
    # Defaults never overwrite: a second export gets a numbered name.
    again = export(ExportRequest(weights=trained_like, formats="pt", img_size=IMG)).files[0]
    assert again.path.name == "tiny_deploy_2.pt"


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_half_files_are_fp16_and_agree_within_fp16_precision(
    trained_like: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "_torch_cpu_flags", lambda: {"avx2"})  # a CPU without bf16: all fp16
    result = export(
        ExportRequest(weights=trained_like, formats="onnx,torchscript", img_size=IMG, half=True, output=tmp_path / "h")
    )
    assert {f.format for f in result.files} == {"onnx", "torchscript"}
    assert result.tolerance == {"kind": "relative", "value": HALF_RELATIVE_TOLERANCE}
    assert result.precision == {"onnx": "fp16", "torchscript": "fp16"}
    assert all(check.agrees for f in result.files for check in f.checks if check.required)
    assert any("fp16 ONNX and TorchScript files are made" in note for note in result.notes)
    session = ort.InferenceSession(str(tmp_path / "h.onnx"))
    assert session.get_inputs()[0].type == "tensor(float16)"
    extra = {TORCHSCRIPT_METADATA: ""}
    module = torch.jit.load(str(tmp_path / "h.torchscript"), _extra_files=extra)
    assert {p.dtype for p in module.parameters()} == {torch.float16}
    assert json.loads(extra[TORCHSCRIPT_METADATA])["precision"] == "fp16"


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_half_on_a_cpu_with_bf16_writes_bf16_torchscript_beside_fp16_onnx(
    trained_like: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if runtime.cpu_bf16_feature() is None:
        pytest.skip("this CPU has no bf16 hardware: --half writes fp16 TorchScript here")
    from tests.test_cli import invoke

    output = tmp_path / "h"
    result = invoke(
        "export", "-w", str(trained_like), "--img-size", str(IMG), "--half", "--format", "onnx,torchscript",
        "-o", str(output), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["precision"] == {"onnx": "fp16", "torchscript": "bf16"}
    assert payload["tolerance"] == {"kind": "relative", "value": BF16_RELATIVE_TOLERANCE}  # the loosest file's
    by_format = {f["format"]: f for f in payload["files"]}
    assert by_format["onnx"]["tolerance"]["value"] == HALF_RELATIVE_TOLERANCE
    checks = by_format["torchscript"]["checks"]
    assert checks and all(c["ran"] and c["agrees"] and c["max_rel_diff"] <= BF16_TOLERANCE for c in checks)
    notes = " ".join(result.stderr.split())
    assert "the TorchScript file is bf16" in notes and "the fp16 ONNX file is made" in notes
    extra = {TORCHSCRIPT_METADATA: ""}
    module = torch.jit.load(str(output.with_suffix(".torchscript")), _extra_files=extra)
    assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    assert json.loads(extra[TORCHSCRIPT_METADATA])["precision"] == "bf16"
    # An independent run on a new input: float32 boxes (decoded in float32) within bf16's limit.
    images = np.random.default_rng(4).random((1, 3, IMG, IMG), dtype=np.float32)
    with torch.no_grad():
        output_tensor = module(torch.from_numpy(images).bfloat16())
    assert output_tensor.dtype == torch.float32
    reference = _reference(trained_like, images)
    relative = np.abs(output_tensor.numpy() - reference) / (1 + np.abs(reference))
    assert relative.max() <= BF16_TOLERANCE
    assert ort.InferenceSession(str(output.with_suffix(".onnx"))).get_inputs()[0].type == "tensor(float16)"


def test_pruned_model_exports_and_agrees_everywhere(trained_like: Path, tmp_path: Path) -> None:
    target = GlobalTarget(target_macs=0.5)
    pruned = prune(
        PruneRequest(trained_like, target, img_size=IMG, latency=False, output=tmp_path / "pruned.pt")
    ).output
    assert pruned == tmp_path / "pruned.pt"  # written where asked (and narrows the Optional for the call below)
    result = export(
        ExportRequest(weights=pruned, formats="onnx,torchscript,pt", img_size=IMG, dynamic=True, simplify=True)
    )
    assert result.params < count_parameters(load_model(weights=trained_like).model)
    for exported in result.files:
        assert exported.checks and all(check.ran and check.agrees for check in exported.checks), exported
    runtimes = {check.runtime for exported in result.files for check in exported.checks}
    assert runtimes == {"onnxruntime", "opencv-dnn", "torchscript", "yolor-cli"}
    unpruned = export(ExportRequest(weights=trained_like, formats="onnx", img_size=IMG)).files[0]
    assert result.files[0].size_bytes < 0.7 * unpruned.size_bytes  # the pruned widths are in the graph


def test_failed_verification_writes_nothing(trained_like: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = trained_like.with_name("tiny.onnx")
    target.write_bytes(b"a previous export")
    monkeypatch.setattr(onnx_model, "onnxruntime_runner", lambda path: lambda images: np.zeros((1, 1, 8), np.float32))
    with pytest.raises(VerificationError, match="the ONNX file was not written"):
        export(ExportRequest(weights=trained_like, formats="onnx", img_size=IMG, output=target, overwrite=True))
    assert target.read_bytes() == b"a previous export"
    assert [p.name for p in trained_like.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_output_paths_never_replace_files_unasked(trained_like: Path, tmp_path: Path) -> None:
    folder = trained_like.parent
    (folder / "tiny.onnx").write_bytes(b"mine")
    defaults = output_paths(trained_like, ["onnx", "torchscript", "pt"], None)
    assert [p.name for p in defaults.values()] == ["tiny_2.onnx", "tiny_2.torchscript", "tiny_deploy_2.pt"]
    last = folder / "last.pt"
    last.write_bytes(b"a checkpoint")
    with pytest.raises(YolorError, match="already exist"):
        output_paths(trained_like, ["onnx", "pt"], folder / "last")
    assert output_paths(trained_like, ["onnx", "pt"], folder / "last", overwrite=True)["pt"] == last
    dotted = output_paths(trained_like, ["onnx", "pt"], tmp_path / "model.v1.5")
    assert [p.name for p in dotted.values()] == ["model.v1.5.onnx", "model.v1.5.pt"]
    assert output_paths(trained_like, ["onnx"], tmp_path / "model")["onnx"].name == "model.onnx"
    assert output_paths(trained_like, ["onnx", "pt"], tmp_path / "m.onnx")["pt"].name == "m.pt"
    with pytest.raises(YolorError, match="is the input"):
        output_paths(trained_like, ["pt"], trained_like, overwrite=True)


@pytest.mark.parametrize("package", ["onnx", "onnxruntime", "onnxslim"])
def test_a_missing_optional_package_names_the_extra(
    trained_like: Path, monkeypatch: pytest.MonkeyPatch, package: str
) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # what an environment without it looks like to import
    with pytest.raises(MissingDependencyError) as caught:
        export(ExportRequest(weights=trained_like, formats="onnx", img_size=IMG, simplify=True))
    assert package in caught.value.message and "yolor-cli[export]" in (caught.value.hint or "")
    assert not trained_like.with_name("tiny.onnx").exists()


def test_errors(trained_like: Path) -> None:
    with pytest.raises(YolorError, match="unknown export format"):
        export(ExportRequest(weights=trained_like, formats="onnx,tflite"))
    with pytest.raises(YolorError, match="not a multiple"):
        export(ExportRequest(weights=trained_like, formats="onnx", img_size=100))
    with pytest.raises(YolorError, match="outside what the exporter writes"):
        export(ExportRequest(weights=trained_like, formats="onnx", img_size=IMG, opset=30))


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")
def test_cli_export_errors_are_one_message(trained_like: Path, tmp_path: Path) -> None:
    from tests.test_cli import invoke

    for args, message in (
        (["--opset", "30"], "outside what the exporter writes"),
        (["--format", "tflite"], "unknown export format"),
        (["--device", "7"], "--device 7"),
    ):
        result = invoke("export", "-w", str(trained_like), "--img-size", str(IMG), *args)
        assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.output, args
    assert invoke("export", "-w", str(trained_like), "--img-size", str(IMG), "-o", str(tmp_path / "m")).exit_code == 0
    result = invoke("export", "-w", str(trained_like), "--img-size", str(IMG), "-o", str(tmp_path / "m"))
    assert result.exit_code == 1 and "--overwrite" in result.stderr
    foreign = tmp_path / "foreign.onnx"  # an ONNX file that is not one of ours: one input named x
    torch.onnx.export(torch.nn.Conv2d(3, 4, 1), (torch.zeros(1, 3, 8, 8),), foreign, dynamo=False, input_names=["x"])
    result = invoke("detect", "-w", str(foreign), "--source", str(tmp_path))
    assert result.exit_code == 1 and "not a detector exported by yolor export" in result.stderr


def test_detect_runs_the_onnx_file_with_its_names(trained_like: Path, tmp_path: Path) -> None:
    from tests.test_cli import invoke

    shapes = make_shapes_dataset(tmp_path / "voc", images=4, seed=5, val=0.5)
    for extra in ([], ["--dynamic-size"]):
        output = tmp_path / f"model{len(extra)}.onnx"
        result = invoke("export", "-w", str(trained_like), "--img-size", str(IMG), "-o", str(output), "--json", *extra)
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert payload["max_abs_diff"] <= FP32_TOLERANCE and payload["opencv_dnn"]["ran"]
        assert payload["files"][0]["path"] == str(output)
        runs = {}
        for weights in (trained_like, output):
            result = invoke(
                "detect",
                "-w",
                str(weights),
                "--source",
                str(shapes / "images"),
                "--img-size",
                str(IMG),
                "--project",
                str(tmp_path / "det"),
                "--json",
                *(["--no-half"] if weights.suffix == ".pt" else []),  # fp32, as the file: the same detections
            )
            assert result.exit_code == 0, result.output
            runs[weights.suffix] = json.loads(result.stdout)
        assert runs[".onnx"]["images"] == runs[".pt"]["images"] == 4
        assert sum(runs[".onnx"]["detections"].values()) > 0
        assert set(runs[".onnx"]["detections"]) <= set(NAMES)  # names from the file's metadata
        if extra:  # same letterboxed inputs as PyTorch (a fixed-size file gets square ones): same detections,
            # up to NMS tie-breaks: formula weights give hundreds of near-equal scores (outputs agree to 1e-3 above)
            onnx_count, pt_count = (sum(runs[k]["detections"].values()) for k in (".onnx", ".pt"))
            assert pt_count > 0 and abs(onnx_count - pt_count) <= 0.02 * pt_count
    result = invoke(
        "detect",
        "-w",
        str(tmp_path / "model0.onnx"),
        "--source",
        str(shapes / "images"),
        "--project",
        str(tmp_path / "det"),
    )
    assert result.exit_code == 0 and "64x64 inputs only" in " ".join(result.stderr.split())
    # yolor eval runs the exported file too, at the one size it takes (it says so)
    result = invoke("eval", "-w", str(tmp_path / "model0.onnx"), "--data", str(shapes / "data.yaml"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 2 and "64x64 inputs only" in " ".join(result.stderr.split())


def test_onnx_detector_pads_a_fixed_batch(trained_like: Path, tmp_path: Path) -> None:
    export(ExportRequest(weights=trained_like, formats="onnx", img_size=IMG, batch=2, output=tmp_path / "b2.onnx"))
    detector = OnnxDetector.load(tmp_path / "b2.onnx", torch.device("cpu"))
    assert detector.fixed_batch == 2 and detector.fixed_size == (IMG, IMG) and detector.names == NAMES
    images = torch.rand(3, 3, IMG, IMG)
    output = detector(images).numpy()
    assert output.shape[0] == 3
    assert np.abs(output - _reference(trained_like, images.numpy())).max() <= FP32_TOLERANCE


def test_official_state_dict_exports_with_cfg_and_index_names(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    official = tmp_path / "official.pt"
    torch.save({"epoch": 5, "model": fill_deterministic(tiny_model).state_dict()}, official)  # the official layout
    with pytest.raises(YolorError, match="does not record its cfg"):
        export(ExportRequest(weights=official, formats="onnx", img_size=IMG))
    result = export(ExportRequest(weights=official, cfg="yolor_csp_tiny", formats="onnx,pt", img_size=IMG))
    assert result.names is None and result.nc == 3
    assert all(check.agrees for exported in result.files for check in exported.checks if check.required)
    metadata = onnx_model.read_metadata(result.files[0].path.read_bytes())
    assert "names" not in metadata and metadata["nc"] == "3"  # no made-up names that would hide --names later
    detector = OnnxDetector.load(result.files[0].path, torch.device("cpu"))
    assert detector.names is None and detector.nc == 3
    deployed = load_model(weights=result.files[1].path)  # the deploy .pt needs no --cfg any more
    assert deployed.nc == 3 and deployed.names is None  # so --names / --data can still name the classes
