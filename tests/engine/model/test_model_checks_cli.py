"""Checks the model makes for every command: input sizes against its stride, and the number of
detection levels, both refused with one message before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_shapes_dataset
from tests.test_cli import invoke
from yolor_cli.engine.model.bundled import resolve_cfg_path
from yolor_cli.engine.model.darknet.heads import DETECTION_LEVELS
from yolor_cli.engine.train.loss import LEVEL_BALANCE

THIRD_HEAD = "# 94\n"  # yolor_csp_tiny.cfg: the route that starts the third detection head


def _text(result) -> str:
    return " ".join(result.output.split())


def test_info_refuses_an_image_size_below_the_stride() -> None:
    result = invoke("info", "--cfg", "yolor_p6", "--img-size", "32")
    text = _text(result)
    assert result.exit_code == 1, text
    assert "image size 32 is smaller than the model's largest stride 64" in text
    assert "use a multiple of 64 such as 320 or 640" in text
    assert "not a multiple" not in text and "Traceback" not in text


def test_a_size_that_is_no_multiple_keeps_its_message() -> None:
    result = invoke("info", "--cfg", "yolor_csp_tiny", "--img-size", "100")
    assert result.exit_code == 1
    assert "image size 100 is not a multiple of the model's largest stride 32" in _text(result)
    assert "use --img-size 96" in _text(result)


@pytest.mark.parametrize("size", ["0", "-64", "16"])
def test_train_refuses_an_image_size_below_the_stride(tmp_path: Path, size: str) -> None:
    data = make_shapes_dataset(tmp_path / "voc", images=4, seed=0, val=0.5)
    result = invoke(
        "train",
        "--data",
        str(data / "data.yaml"),
        "--cfg",
        "yolor_csp_tiny",
        "--epochs",
        "1",
        "--workers",
        "0",
        "--project",
        str(tmp_path / "runs"),
        f"--img-size={size}",
    )
    text = _text(result)
    assert result.exit_code == 1, text
    assert f"image size {size} is smaller than the model's largest stride 32" in text
    assert "use a multiple of 32 such as 320 or 640" in text and "Traceback" not in text


def _cfg_with_heads(tmp_path: Path, heads: int) -> tuple[Path, str]:
    """yolor_csp_tiny with ``heads`` detection levels: the third head dropped or repeated."""
    text = resolve_cfg_path("yolor_csp_tiny").read_text()
    body, third = text.split(THIRD_HEAD)
    text = body + (THIRD_HEAD + third) * (heads - 2)
    path = tmp_path / f"heads{heads}.cfg"
    path.write_text(text)
    return path, text


def _yolo_line(text: str, number: int) -> int:
    """The line of the ``number``-th [yolo] section (1-based)."""
    lines = [i for i, line in enumerate(text.splitlines(), start=1) if line.strip() == "[yolo]"]
    return lines[number - 1]


@pytest.mark.parametrize(("heads", "named"), [(2, 1), (6, 6)])
def test_info_refuses_a_cfg_with_an_unsupported_level_count(tmp_path: Path, heads: int, named: int) -> None:
    path, text = _cfg_with_heads(tmp_path, heads)
    assert text.count("[yolo]") == heads
    result = invoke("info", "--cfg", str(path))
    message = _text(result)
    assert result.exit_code == 1, message
    assert f"{path}:{_yolo_line(text, named)}: the cfg has {heads} [yolo] layers" in message
    assert "3 to 5 detection levels" in message and "Traceback" not in message


def test_the_supported_level_counts_are_the_ones_the_loss_balances() -> None:
    assert set(DETECTION_LEVELS) == set(LEVEL_BALANCE)


def test_info_and_train_refuse_a_cfg_too_large_to_build(tmp_path: Path) -> None:
    """filters=100000000 (a typo) ended in an allocation error or the OOM killer (survey defect 10)."""
    path = tmp_path / "huge.cfg"
    path.write_text("[net]\nchannels=3\n[convolutional]\nfilters=100000000\nsize=3\n")
    for args in (("info", "--cfg", str(path)), ("train", "--cfg", str(path), "--project", str(tmp_path / "runs"))):
        result = invoke(*args)
        message = " ".join(result.stderr.split())
        assert result.exit_code == 1, message
        assert f"{path}:4: filters=100000000 is more than the 65536 channels a layer may have" in message
        assert "internal error" not in message
