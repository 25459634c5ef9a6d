"""The ``yolor`` command line: exit codes, messages, JSON, colour and completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from yolor_cli import __version__
from yolor_cli.app import app
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model

runner = CliRunner()
RED = "31m"  # the SGR code of the red "Error:" label


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env={"COLUMNS": "160", **(env or {})})


def test_version_and_help() -> None:
    assert invoke("--version").stdout.strip() == f"yolor-cli {__version__}"
    result = invoke("--help")
    assert result.exit_code == 0
    assert "info" in result.stdout and "--install-completion" in result.stdout


def test_info_of_a_bundled_cfg_prints_layers_and_totals() -> None:
    result = invoke("info", "--cfg", "yolor_csp_tiny", "--img-size", "320")
    assert result.exit_code == 0, result.output
    assert "implicit_mul" in result.stdout and "control_channels" in result.stdout
    assert "1,542,378" in result.stdout and "GFLOPs" in result.stdout


def test_info_json_is_one_object_with_the_contract_keys() -> None:
    result = invoke("info", "--cfg", "yolor_csp", "--nc", "1", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"params", "gflops", "layers", "nc"} <= payload.keys()
    assert (payload["params"], payload["layers"], payload["nc"]) == (52_497_868, 188, 1)
    assert payload["gflops"] == pytest.approx(118.88, abs=0.01)


def test_info_reads_our_checkpoint_without_cfg(tmp_path: Path) -> None:
    model = build_model(load_cfg("yolor_csp_tiny"), nc=2)
    save_checkpoint(
        Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=["cat", "dog"]), tmp_path / "best.pt"
    )
    payload = json.loads(invoke("info", "--weights", str(tmp_path / "best.pt"), "--json").stdout)
    assert payload["nc"] == 2 and payload["names"] == ["cat", "dog"]


def test_info_of_an_official_checkpoint_takes_nc_from_the_weights(tmp_path: Path) -> None:
    model = build_model(load_cfg("yolor_csp_tiny"), nc=1)
    torch.save({"epoch": 1, "best_fitness": np.array([0.1]), "model": model.state_dict()}, tmp_path / "w.pt")
    result = invoke("info", "--cfg", "yolor_csp_tiny", "--weights", str(tmp_path / "w.pt"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["nc"] == 1
    assert "using nc=1 instead of the cfg's 80" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info"], "no model given"),
        (["info", "--cfg", "missing.cfg"], "cfg file not found: missing.cfg"),
        (["info", "--cfg", "no_such_model"], "no cfg file or bundled model named 'no_such_model'"),
        (["info", "--cfg", "yolor_csp_tiny", "--img-size", "100"], "not a multiple of the model's largest stride"),
        (["info", "--weights", "absent.pt"], "weights file not found"),
    ],
)
def test_user_errors_exit_1_with_one_message(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 1
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output and result.stdout == ""


def test_unknown_section_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.cfg"
    path.write_text("[net]\n\n[convolutional]\nfilters=8\n\n[fancy_layer]\nsize=3\n")
    result = invoke("info", "--cfg", str(path))
    assert result.exit_code == 1
    assert f"{path}:6: unknown section [fancy_layer]" in " ".join(result.stderr.split())


def test_damaged_hostile_and_mismatched_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "damaged.pt").write_bytes(b"PK\x03\x04 truncated")
    result = invoke("info", "--weights", str(tmp_path / "damaged.pt"))
    assert result.exit_code == 1
    assert f"{tmp_path / 'damaged.pt'} is damaged or not a PyTorch checkpoint" in " ".join(result.stderr.split())

    torch.save({"model": build_model(load_cfg("yolor_csp_tiny"))}, tmp_path / "pickled.pt")
    result = invoke("info", "--cfg", "yolor_csp_tiny", "--weights", str(tmp_path / "pickled.pt"))
    message = " ".join(result.stderr.split())
    assert result.exit_code == 1 and "contains pickled Python objects that a safe load refuses" in message
    assert "DarknetModel" in message and "only with a file you trust, pass --trust-pickle" in message

    torch.save({"model": build_model(load_cfg("yolor_csp_tiny")).state_dict()}, tmp_path / "tiny.pt")
    result = invoke("info", "--cfg", "yolor_p6", "--weights", str(tmp_path / "tiny.pt"))
    message = " ".join(result.stderr.split())
    assert result.exit_code == 1
    assert f"the weights in {tmp_path / 'tiny.pt'} do not fit the model" in message and "missing" in message
    assert "Hint: pass the cfg the weights were trained with (--cfg)" in message


def test_usage_errors_exit_2() -> None:
    assert invoke("info", "--img-size", "big").exit_code == 2
    assert invoke("no-such-command").exit_code == 2


def test_nc_conflicting_with_weights(tmp_path: Path) -> None:
    model = build_model(load_cfg("yolor_csp_tiny"), nc=2)
    save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict()), tmp_path / "a.pt")
    result = invoke("info", "--weights", str(tmp_path / "a.pt"), "--nc", "5")
    assert result.exit_code == 1 and "--nc 5 conflicts" in result.stderr


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "yolor_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_no_color_is_respected_even_on_a_forced_terminal() -> None:
    coloured = _run_cli("info", "--cfg", "nope", env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    plain = _run_cli("info", "--cfg", "nope", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert coloured.returncode == plain.returncode == 1
    assert RED in coloured.stderr
    assert RED not in plain.stderr and "Error:" in plain.stderr  # bold may stay: NO_COLOR is about colour


def test_debug_shows_the_traceback() -> None:
    result = _run_cli("--debug", "info", "--cfg", "nope", env={})
    assert result.returncode != 0 and "Traceback" in result.stderr and "CfgError" in result.stderr


def test_shell_completion_offers_bundled_cfg_names() -> None:
    result = _run_cli(
        env={"_YOLOR_COMPLETE": "complete_bash", "COMP_WORDS": "yolor info --cfg yolor_csp_t", "COMP_CWORD": "3"}
    )
    assert "yolor_csp_tiny" in result.stdout
    result = _run_cli(
        env={"_YOLOR_COMPLETE": "complete_bash", "COMP_WORDS": "yolor export --format onnx,t", "COMP_CWORD": "3"}
    )
    assert result.stdout.split() == ["onnx,torchscript"]


def test_a_bug_is_reported_briefly_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from yolor_cli import app as app_module

    def broken(**kwargs: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(app_module, "app", broken)
    monkeypatch.setattr(sys, "argv", ["yolor", "info"])
    with pytest.raises(SystemExit) as caught:
        app_module.main()
    assert caught.value.code == 1
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError: boom" in err and "--debug" in err and "Traceback" not in err


def test_training_progress_in_a_log_is_one_line_per_epoch_and_tables_go_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from yolor_cli.console import RichReporter

    reporter = RichReporter()  # stderr is captured, so not a terminal: no live bar
    for _ in reporter.track(range(3), "1/10", fields=("box", "total")):
        reporter.update({"box": "box 0.0500", "total": "total 0.2000"})
    reporter.table("Validation after epoch 1/10", ["Class", "P"], [["all", "0.5"]])
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert lines[0].split() == ["1/10", "box", "0.0500", "total", "0.2000"]
    assert "Validation after epoch 1/10" in captured.err and "all" in captured.err


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """`yolor info --json ... | head -c 1`: the closed pipe is no user error to report, and no traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "yolor_cli", "info", "--cfg", "yolor_csp_tiny", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()  # before the interpreter has started: the first write meets a closed pipe
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert stderr.decode() == ""
