"""The whole flow through the command line, as a user runs it: a VOC folder -> prepared dataset ->
train -> eval -> prune -> fine-tune -> export -> detect with the exported file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import invoke

pytest.importorskip("onnxruntime")

IMG = "64"


def _ok(*args: str) -> dict:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_voc_folder_to_a_verified_onnx_detector(tmp_path: Path) -> None:
    voc = tmp_path / "voc"
    _ok("dataset", "synth", "--out", str(voc), "--images", "16", "--seed", "3")
    _ok("dataset", "prepare", "--root", str(voc), "--val", "0.25", "--test", "0")
    data = str(voc / "data.yaml")
    common = [
        "--data",
        data,
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--img-size",
        IMG,
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    trained = _ok("train", "--cfg", "yolor_csp_tiny", *common, "--project", str(tmp_path / "runs"), "--name", "base")
    best = Path(trained["save_dir"]) / "weights" / "best.pt"
    evaluated = _ok(
        "eval", "-w", str(best), "--data", data, "--img-size", IMG, "--save-json", "--project", str(tmp_path / "ev")
    )
    val_objects = sum(
        len((voc / "labels" / f"{Path(line).stem}.txt").read_text().splitlines())
        for line in (voc / "val.txt").read_text().split()
    )
    assert (evaluated["images"], evaluated["instances"]) == (4, val_objects) and val_objects > 0
    # The same detections rescored from the written predictions.json give the same mAP (boxes rounded to 1e-3 px).
    rescored = _ok("eval", "--data", data, "--predictions", str(tmp_path / "ev" / "exp" / "predictions.json"))
    assert rescored["instances"] == val_objects
    assert rescored["map50"] == pytest.approx(evaluated["map50"], abs=1e-3)
    assert rescored["map"] == pytest.approx(evaluated["map"], abs=1e-3)
    pruned = _ok("prune", "global", "-w", str(best), "--target-macs", "0.5", "--img-size", IMG, "--no-latency")
    assert pruned["params_after"] < pruned["params_before"]
    tuned = _ok("train", "--weights", pruned["output"], *common, "--project", str(tmp_path / "runs"), "--name", "ft")
    tuned_best = Path(tuned["save_dir"]) / "weights" / "best.pt"
    exported = _ok("export", "-w", str(tuned_best), "--img-size", IMG, "--format", "onnx,pt")
    assert exported["params"] == pruned["params_after"] and exported["max_abs_diff"] <= 1e-3
    onnx_file = next(f["path"] for f in exported["files"] if f["format"] == "onnx")
    detected = _ok(
        "detect",
        "-w",
        onnx_file,
        "--source",
        str(voc / "images"),
        "--img-size",
        IMG,
        "--project",
        str(tmp_path / "detect"),
    )
    assert detected["images"] == 16
