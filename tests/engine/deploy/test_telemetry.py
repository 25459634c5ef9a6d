"""Exporting and running ONNX and OpenVINO files leaves nothing in the user's home: the runtimes'
telemetry (OpenVINO's ~/intel ids and stats, NNCF's, onnxruntime's ~/.cache/Microsoft device id) is
switched off before they load (yolor_cli.engine.quiet_libs).

It runs in a fresh interpreter with a temporary HOME: the libraries set their telemetry up when they
are imported, which this test process may have done already."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

REPO = Path(__file__).resolve().parents[3]
# Settings that would switch the telemetry off by themselves (a CI machine sets CI=true): removed, so
# that the test shows what the package does on a user's machine.
OUTSIDE_SWITCHES = ("CI", "NNCF_CI", "NNCF_DEV", "ORT_DISABLE_TELEMETRY", "TF_BUILD", "JENKINS_URL")

SCRIPT = """
import sys
from pathlib import Path

import numpy as np
import torch

from yolor_cli.engine.deploy.export import ExportRequest, export
from yolor_cli.engine.infer.exported import load_exported
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model

work = Path(sys.argv[1])
model = build_model(load_cfg("yolor_csp_tiny"), nc=2)
save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=["a", "b"]), work / "tiny.pt")
result = export(ExportRequest(weights=work / "tiny.pt", formats="onnx,openvino", img_size=64))
for path in result.files:
    load_exported(path.path, torch.device("cpu")).run_batch(np.zeros((1, 3, 64, 64), np.float32))
try:
    from yolor_cli.engine.deploy.quantize import require_nncf

    require_nncf()
except Exception as error:  # nncf is optional: the rest still counts
    print("no nncf:", error)
print("ran", len(result.files))
"""


def test_export_and_runs_write_nothing_into_home(tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in OUTSIDE_SWITCHES}
    env = {key: value for key, value in env.items() if not key.startswith("XDG_")}  # the libraries' defaults: HOME
    env.update(HOME=str(home), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(work)], env=env, cwd=work, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ran 2" in done.stdout
    assert sorted(str(path.relative_to(home)) for path in home.rglob("*")) == []


def test_the_ci_switch_is_set_only_while_the_libraries_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch reads CI too: the process keeps the user's own value (or none) once the import is done."""
    from yolor_cli.engine.quiet_libs import import_quiet

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("ORT_DISABLE_TELEMETRY", raising=False)  # put back as it was after the test
    monkeypatch.setenv("NNCF_CI", "mine")
    seen: list[str | None] = []
    monkeypatch.setattr("importlib.import_module", lambda name: seen.append(os.environ.get("CI")) or sys)
    import_quiet("openvino")
    assert seen == ["true"] and "CI" not in os.environ and os.environ["NNCF_CI"] == "mine"
    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"
