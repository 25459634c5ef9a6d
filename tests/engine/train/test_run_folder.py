"""``yolor train --exist-ok`` never reuses a finished run's folder (issue 20 #3): the old run's
weights would be replaced or mixed with the new ones. Refused before any epoch runs."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_shapes_dataset
from tests.test_cli import invoke


def test_train_exist_ok_refuses_a_folder_holding_another_runs_weights(tmp_path: Path) -> None:
    voc = make_shapes_dataset(tmp_path / "voc", images=6, seed=1, val=0.5)
    run = tmp_path / "runs" / "exp"
    (run / "weights").mkdir(parents=True)
    (run / "weights" / "last_001.pt").write_bytes(b"an earlier run's checkpoint")
    (run / "results.csv").write_text("epoch\n0\n")
    args = ("train", "--cfg", "yolor_csp_tiny", "--data", str(voc / "data.yaml"), "--epochs", "1")
    result = invoke(
        *args,
        "--img-size",
        "64",
        "--batch-size",
        "2",
        "--project",
        str(tmp_path / "runs"),
        "--name",
        "exp",
        "--exist-ok",
    )
    assert result.exit_code == 1, result.output
    assert "holds another run's weights" in result.stderr and "--resume" in result.stderr
    assert sorted(p.name for p in run.rglob("*")) == ["last_001.pt", "results.csv", "weights"]
    assert (run / "results.csv").read_text() == "epoch\n0\n"
    outside = invoke(*args, "--img-size", "64", "--project", str(tmp_path / "runs"), "--name", "../../x")
    assert outside.exit_code == 1 and "is not a folder name" in outside.stderr
    assert not (tmp_path.parent / "x").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["runs", "voc"]
