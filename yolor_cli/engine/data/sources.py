"""Inputs for detection: an image, a folder, a glob, a video or a .txt list, as frames."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from yolor_cli.engine.data.images import is_image, read_image
from yolor_cli.engine.errors import DataError, YolorError
from yolor_cli.engine.files import check_regular_file

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
DEFAULT_FPS = 30.0


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


@dataclass
class Frame:
    """One image to run on. For videos, ``frame`` counts from 0 and ``fps``/``frames`` describe the file."""

    path: Path
    image: np.ndarray  # BGR
    frame: int | None = None
    fps: float = DEFAULT_FPS
    frames: int = 0


@dataclass
class Unreadable:
    path: Path
    reason: str


def list_sources(source: str) -> list[Path]:
    """Image and video files named by ``source``, in a stable order."""
    path = Path(source).expanduser()
    if path.exists() and not path.is_dir():
        check_regular_file(path, "source")  # a FIFO or device is no image, video or list
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and (is_image(p) or is_video(p)))
    if path.is_file():
        if path.suffix.lower() == ".txt":
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            return [
                Path(line) if Path(line).is_absolute() else path.parent / line
                for line in lines
                if line and not line.startswith("#")
            ]
        return [path]
    if any(char in source for char in "*?["):
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        found = [p for p in matches if p.is_file() and (is_image(p) or is_video(p))]
        if not found:
            raise YolorError(f"no image or video matches {source}")
        return found
    raise YolorError(f"source not found: {source}", hint="pass an image, a folder, a glob, a video or a .txt list")


FFMPEG_QUIET = "-8"  # AV_LOG_QUIET: OpenCV passes OPENCV_FFMPEG_LOGLEVEL to av_log_set_level


def _open_video_quietly(path: Path) -> cv2.VideoCapture:
    """Open a video without library noise on the terminal: the skipped-input warning already says
    what went wrong. Two loggers speak on a bad file, both straight to file descriptor 2, past any
    Python redirect: ffmpeg ("moov atom not found"), which reads its level once, when the process
    opens its first video (a user's own OPENCV_FFMPEG_LOGLEVEL wins), and OpenCV itself ("[ WARN:0]
    ... Unable to read codec parameters"), whose level is lowered for the open only."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", FFMPEG_QUIET)
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        return cv2.VideoCapture(str(path))
    finally:
        cv2.utils.logging.setLogLevel(level)


def iter_frames(paths: list[Path]) -> Iterator[Frame | Unreadable]:
    for path in paths:
        if is_video(path):
            capture = _open_video_quietly(path)
            if not capture.isOpened():
                yield Unreadable(path, "cannot open video")
                continue
            fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
            total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            number = 0
            try:
                while True:
                    ok, image = capture.read()
                    if not ok:
                        break
                    yield Frame(path, image, frame=number, fps=fps, frames=total)
                    number += 1
            finally:
                capture.release()
            if number == 0:
                yield Unreadable(path, "video has no readable frame")
        elif not path.exists():
            yield Unreadable(path, "missing file")
        else:
            try:
                image = read_image(path)
            except DataError:
                yield Unreadable(path, "not a readable image")
                continue
            yield Frame(path, image)
