"""``yolor export --output``: one format and a file name with a suffix writes exactly that name;
several formats, or a stem without a suffix, get each format's suffix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import fill_deterministic
from tests.test_cli import invoke
from yolor_cli.engine.deploy.export import output_paths
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint

IMG = "64"


@pytest.fixture
def weights(tiny_model: torch.nn.Module, tmp_path: Path) -> Path:
    fill_deterministic(tiny_model)
    path = tmp_path / "tiny.pt"
    save_checkpoint(Checkpoint(cfg=tiny_model.cfg, model_state=tiny_model.state_dict(), names=["a", "b", "c"]), path)
    return path


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_one_format_with_a_named_file_writes_exactly_that_file(weights: Path, tmp_path: Path) -> None:
    target = tmp_path / "m.ts"
    result = invoke(
        "export", "-w", str(weights), "--img-size", IMG, "--format", "torchscript", "-o", str(target), "--json"
    )
    assert result.exit_code == 0, result.output
    assert [f["path"] for f in json.loads(result.stdout)["files"]] == [str(target)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ts", "tiny.pt"]
    loaded = torch.jit.load(str(target))
    assert loaded(torch.zeros(1, 3, 64, 64)).shape[-1] == 8  # 5 + 3 classes: the traced detector itself


def test_output_names_for_one_format_and_for_several(weights: Path, tmp_path: Path) -> None:
    def names(formats: list[str], output: str) -> list[str]:
        return [path.name for path in output_paths(weights, formats, tmp_path / output).values()]

    assert names(["onnx"], "model.onnx") == ["model.onnx"]
    assert names(["torchscript"], "model.torchscript") == ["model.torchscript"]
    assert names(["pt"], "deploy.bin") == ["deploy.bin"]
    assert names(["torchscript"], "model") == ["model.torchscript"]  # no suffix: the format's is added
    assert names(["onnx"], "model.v2") == ["model.v2.onnx"]  # a version is part of the stem
    assert names(["onnx"], "model.v1.5") == ["model.v1.5.onnx"]
    assert names(["onnx", "torchscript"], "m.ts") == ["m.ts.onnx", "m.ts.torchscript"]
    assert names(["onnx", "pt"], "m.onnx") == ["m.onnx", "m.pt"]


# --- the one writer guard on export, benchmark and prune outputs (issue 20 #1, #2, #17) ---

IR_XML = """<?xml version="1.0"?>
<net name="m" version="11"><layers/><edges/>
<rt_info><yolor><producer value="yolor-cli 0.1.0"/></yolor></rt_info></net>
"""


def test_only_an_ir_folder_export_wrote_is_ever_replaced(weights: Path, tmp_path: Path) -> None:
    annotations = tmp_path / "Annotations"  # a VOC copy: nothing but .xml (and a .bin) files
    annotations.mkdir()
    for stem in ("000001", "000002"):
        (annotations / f"{stem}.xml").write_text("<annotation><object><name>a</name></object></annotation>")
    (annotations / "000001.bin").write_bytes(b"user data")
    pair = tmp_path / "pair_openvino_model"  # exactly one .xml and its .bin, but not an IR of ours
    pair.mkdir()
    (pair / "pair.xml").write_text("<annotation/>")
    (pair / "pair.bin").write_bytes(b"user data")
    plain = tmp_path / "notes.xml"
    plain.write_text("<notes/>")
    for mistaken, message in (
        (annotations, "not an OpenVINO folder written by yolor export"),
        (pair, "pair.xml, which yolor export did not write"),
        (plain, "is a file; a folder is written there"),
    ):
        with pytest.raises(YolorError, match=message):
            output_paths(weights, ["openvino"], mistaken, overwrite=True)
    assert sorted(p.name for p in annotations.iterdir()) == ["000001.bin", "000001.xml", "000002.xml"]
    assert plain.read_text() == "<notes/>" and (pair / "pair.bin").read_bytes() == b"user data"
    ours = tmp_path / "m_openvino_model"
    ours.mkdir()
    (ours / "m.xml").write_text(IR_XML)
    (ours / "m.bin").write_bytes(b"weights")
    with pytest.raises(YolorError, match="already exists"):
        output_paths(weights, ["openvino"], ours)
    assert output_paths(weights, ["openvino"], ours, overwrite=True) == {"openvino": ours}


def test_a_users_xml_folder_survives_export_overwrite_on_the_command_line(weights: Path, tmp_path: Path) -> None:
    annotations = tmp_path / "Annotations"
    annotations.mkdir()
    (annotations / "000001.xml").write_text("<annotation/>")
    result = invoke("export", "-w", str(weights), "-f", "openvino", "-o", str(annotations), "--overwrite")
    assert result.exit_code == 1 and "not an OpenVINO folder written by yolor export" in " ".join(result.stderr.split())
    assert (annotations / "000001.xml").read_text() == "<annotation/>"


def test_outputs_are_checked_before_any_work(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from yolor_cli.engine.deploy import export as export_module
    from yolor_cli.engine.deploy.benchmark import BenchmarkRequest, _csv_path
    from yolor_cli.engine.deploy.export import ExportRequest, export

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(export_module, "load_model", no_work)
    afile = tmp_path / "afile"
    afile.write_text("a file")
    with pytest.raises(YolorError, match="which is a file"):
        export(ExportRequest(weights=weights, formats="onnx", output=afile / "x"))
    with pytest.raises(YolorError, match="which is a file"):
        _csv_path(BenchmarkRequest(weights=weights, data=tmp_path / "d.yaml", output=afile / "x"), weights)
    with pytest.raises(YolorError, match="names a onnx file, but --format pt"):
        export(ExportRequest(weights=weights, formats="pt", output=tmp_path / "m.onnx"))


def test_benchmark_never_replaces_a_file_it_did_not_write(weights: Path, tmp_path: Path) -> None:
    from yolor_cli.engine.deploy.benchmark import CSV_NAME, BenchmarkRequest, BenchmarkResult, _csv_path, write_csv

    def path_for(output: Path | str, overwrite: bool = False) -> Path:
        request = BenchmarkRequest(weights=weights, data=tmp_path / "d.yaml", output=output, overwrite=overwrite)
        return _csv_path(request, weights)

    results = tmp_path / "results.csv"  # a training run's table
    results.write_text("epoch,train/box_loss\n0,1.0\n")
    with pytest.raises(YolorError, match="not a table yolor benchmark wrote"):
        path_for(results)
    assert results.read_text() == "epoch,train/box_loss\n0,1.0\n"
    assert path_for(results, overwrite=True) == results  # when asked
    ours = write_csv(
        BenchmarkResult(weights=weights, data=tmp_path, img_size=64, batch=1, device="cpu", images=1),
        tmp_path / "b.csv",
    )
    assert path_for(ours) == ours  # an earlier benchmark table is rewritten by each run
    assert path_for(f"{tmp_path / 'newdir'}/") == tmp_path / "newdir" / CSV_NAME  # a new folder, not "not a .csv"
    assert path_for(tmp_path / "newdir2") == tmp_path / "newdir2" / CSV_NAME


def test_prune_refuses_an_output_named_as_another_format(weights: Path, tmp_path: Path) -> None:
    result = invoke("prune", "conv", "-w", str(weights), "--layer", "0", "-o", str(tmp_path / "m.onnx"), "--no-latency")
    assert result.exit_code == 1 and "must end in .pt" in result.stderr, result.output
    assert not (tmp_path / "m.onnx").exists()
