"""The request objects of detect, eval and export own the defaults: the command line shows the same
ones, and reading them loads neither torch nor OpenCV (shell completion stays fast)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from enum import Enum
from pathlib import Path

import pytest
import typer

from yolor_cli.app import app
from yolor_cli.engine.deploy.request import ExportRequest
from yolor_cli.engine.evaluate.request import EvalRequest
from yolor_cli.engine.infer.request import DetectRequest

NEGATED = {"save_images": "nosave"}  # request field -> the option that holds its negation


def _option_defaults(command: str) -> dict[str, object]:
    """Each option's default under its request field's name (a negating flag under the field it turns off)."""
    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {param.name: _plain(param.default) for param in click_command.params}


def _flags(command: str) -> dict[str, list[str]]:
    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {param.name: list(param.opts) for param in click_command.params}


def _plain(value: object) -> object:
    """Enums, paths and tuples as the plain values they stand for."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize(
    ("command", "request_type"), [("detect", DetectRequest), ("eval", EvalRequest), ("export", ExportRequest)]
)
def test_every_option_default_is_the_request_default(command: str, request_type: type) -> None:
    options = _option_defaults(command)
    defaults = {f.name: f.default for f in dataclasses.fields(request_type) if f.default is not dataclasses.MISSING}
    for name, default in defaults.items():
        if name in NEGATED:  # the flag is off by default when the field it negates is on
            assert _flags(command)[name] == [f"--{NEGATED[name]}"] and options[name] is (not default), (command, name)
        else:
            assert options[name] == _plain(default), (command, name)
    assert len(defaults) >= 15


def test_the_inference_defaults_of_the_issue() -> None:
    assert (DetectRequest.conf, DetectRequest.iou, DetectRequest.max_det, DetectRequest.img_size) == (
        0.25,
        0.45,
        300,
        640,
    )
    assert (EvalRequest.conf, EvalRequest.iou, EvalRequest.img_size, ExportRequest.img_size) == (0.001, 0.65, 640, 640)


def test_reading_the_command_line_loads_no_torch_or_opencv() -> None:
    code = "import sys, yolor_cli.app; print(sorted({'torch', 'cv2', 'numpy'} & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "[]"
