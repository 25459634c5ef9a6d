"""``yolor detect`` when there is nothing to detect on: no run folder left behind, a clear exit 1
when every input was skipped, and no OpenCV/ffmpeg noise on the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.test_cli import invoke
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model

GARBAGE = b"\x00\x17not a video at all\xff" * 3  # a few bytes named .mp4: ffmpeg says "moov atom not found"


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(load_cfg("yolor_csp_tiny"), nc=3)
    path = tmp_path_factory.mktemp("weights") / "w.pt"
    save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=["a", "b", "c"]), path)
    return path


def _detect(weights: Path, source: Path, project: Path):
    return invoke("detect", "-w", str(weights), "--source", str(source), "--img-size", "64", "--project", str(project))


def test_a_source_with_nothing_to_read_leaves_no_run_folder(weights: Path, tmp_path: Path) -> None:
    project = tmp_path / "runs"
    (project / "exp").mkdir(parents=True)  # an earlier run: a failed one must not add exp2
    (tmp_path / "empty").mkdir()
    for source, message in (
        (tmp_path / "missing", "source not found"),
        (tmp_path / "empty", "holds no image or video"),
    ):
        result = _detect(weights, source, project)
        assert result.exit_code == 1, result.output
        assert message in " ".join(result.stderr.split()) and "Traceback" not in result.output
        assert sorted(p.name for p in project.iterdir()) == ["exp"]


def test_when_every_input_is_skipped_detect_fails_and_says_which_and_why(weights: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "clip.mp4").write_bytes(GARBAGE)
    (source / "photo.png").write_bytes(b"not an image")
    project = tmp_path / "runs"
    result = _detect(weights, source, project)
    message = " ".join(result.stderr.split())
    assert result.exit_code == 1, result.output
    assert "every input was skipped" in message
    assert "clip.mp4: cannot open video" in message and "photo.png: not a readable image" in message
    assert not project.exists()  # nothing written, so no run folder either


def test_a_skipped_input_among_readable_ones_is_still_a_warning(weights: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "clip.mp4").write_bytes(GARBAGE)
    image = torch.zeros(3, 48, 64, dtype=torch.uint8).permute(1, 2, 0).numpy()
    import cv2

    cv2.imwrite(str(source / "black.png"), image)
    result = _detect(weights, source, tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "skipped" in result.stderr and "clip.mp4" in result.stderr
    assert (tmp_path / "runs" / "exp" / "black.png").is_file()


# 300 seeded random bytes: ffmpeg finds a stream but no codec, and OpenCV itself warns
# "[ WARN:0] ... Unable to read codec parameters from stream"
NOISE = np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("content", [GARBAGE, NOISE], ids=["ffmpeg-moov", "opencv-warn"])
def test_video_library_noise_stays_off_the_real_stderr(weights: Path, tmp_path: Path, content: bytes) -> None:
    """The noise comes from C code writing to file descriptor 2, which CliRunner cannot see."""
    video = tmp_path / "x.mp4"
    video.write_bytes(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    run = subprocess.run(
        [sys.executable, "-m", "yolor_cli", "detect", "-w", str(weights), "--source", str(video), "--img-size", "64"],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    assert "moov atom" not in run.stderr and "mov,mp4" not in run.stderr and "WARN" not in run.stderr
    assert "every input was skipped" in run.stderr and "x.mp4: cannot open video" in run.stderr
    assert not (tmp_path / "runs").exists()


def test_detect_never_writes_over_its_source_images(weights: Path, tmp_path: Path) -> None:
    """issue 20 #3: ``--project D --name images --exist-ok`` with the source in D/images re-encoded
    every source image in place; it is refused before anything is written."""
    images = tmp_path / "D" / "images"
    images.mkdir(parents=True)
    originals = {}
    for index in range(3):
        path = images / f"{index}.png"
        cv2.imwrite(str(path), np.full((64, 64, 3), 40 * index, np.uint8))
        originals[path.name] = path.read_bytes()
    args = ("detect", "-w", str(weights), "--source", str(images), "--img-size", "64", "--save-txt")
    result = invoke(*args, "--project", str(tmp_path / "D"), "--name", "images", "--exist-ok")
    assert result.exit_code == 1 and "holds the input" in " ".join(result.stderr.split()), result.output
    assert {path.name: path.read_bytes() for path in images.iterdir()} == originals  # no labels/ either
    result = invoke(*args, "--project", str(tmp_path), "--name", "D", "--exist-ok")  # a folder around the source
    assert result.exit_code == 1 and "holds the input" in " ".join(result.stderr.split()), result.output
    assert sorted(p.name for p in (tmp_path / "D").iterdir()) == ["images"]


@pytest.mark.parametrize("name", ["../../x", ""])
def test_detect_run_names_stay_inside_the_project(weights: Path, tmp_path: Path, name: str) -> None:
    """issue 20 #13: ``--name ../../x`` wrote outside --project, ``--name ''`` to ``out/2``."""
    (tmp_path / "src").mkdir()
    cv2.imwrite(str(tmp_path / "src" / "a.png"), np.zeros((64, 64, 3), np.uint8))
    project = tmp_path / "a" / "b" / "out"
    result = invoke(
        "detect", "-w", str(weights), "--source", str(tmp_path / "src"), "--img-size", "64",
        "--project", str(project), "--name", name,
    )  # fmt: skip
    assert result.exit_code == 1 and "is not a folder name" in result.stderr, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
