"""The CLI through real pipes, as in a log or CI: whole lines, grouped skip reasons, no hangs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.data.messy_voc import _image, _xml, make_messy_voc

REPO = Path(__file__).resolve().parents[1]  # on PYTHONPATH: this checkout, whatever is installed
# A bound on each run: the FIFO test hung forever before the fix; now it must fail instead.
SUBPROCESS_TIMEOUT_S = 120
HEXAGON_FILES = 35  # with one object of an unknown class each, and two more in the first two files
LONG_STEM = "img_" + "a_very_long_image_name_from_a_labelling_tool_" * 3 + "broken"


def run_yolor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m yolor_cli`` from this checkout in ``cwd``, stdout and stderr pipes (not terminals), 60 columns."""
    env = {key: value for key, value in os.environ.items() if key not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update(COLUMNS="60", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    return subprocess.run(
        [sys.executable, "-m", "yolor_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=SUBPROCESS_TIMEOUT_S,
    )


def _voc_with_an_unknown_class(root: Path) -> list[str]:
    """The messy folder plus 35 files with hexagons (37 in all), one of them with a very long name."""
    make_messy_voc(root)
    stems = [LONG_STEM] + [f"hex_{index}" for index in range(1, HEXAGON_FILES)]
    for index, stem in enumerate(stems):
        hexagons = [("hexagon", (5, 5, 40, 40), 0)] * (2 if index < 2 else 1)
        _image(root / "JPEGImages" / f"{stem}.jpg", 64, 64)
        (root / "Annotations" / f"{stem}.xml").write_text(
            _xml(f"{stem}.jpg", [("cat", (1, 1, 30, 30), 0), *hexagons], (64, 64))
        )
    return stems


def test_prepare_in_a_pipe_groups_reasons_and_keeps_every_path_on_one_line(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    stems = _voc_with_an_unknown_class(root)
    result = run_yolor("dataset", "prepare", "--root", str(root), "--classes", "cat,dog", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # One line for the reason, with its counts; not one table row per file.
    assert lines.count(f"  unknown class 'hexagon': {HEXAGON_FILES} files, 37 objects") == 1
    assert sum("hexagon" in line for line in lines) == 1
    # Then each file once, whole, relative to --root, with its own count.
    for index, stem in enumerate(stems):
        assert (
            lines.count(f"    Annotations/{stem}.xml ({2 if index < 2 else 1} object{'s' if index < 2 else ''})") == 1
        )
    assert sum(LONG_STEM in line for line in lines) == 1
    for expected in (
        "  malformed XML: 1 file",
        "  corrupt image: 1 file",
        "  no annotation XML with the same name: 1 file",
        "    JPEGImages/no_xml.jpg",
        "  degenerate box (empty after clipping or unreadable): 1 file, 1 object",
        "    Annotations/dog_3.xml (1 object)",
    ):
        assert expected in lines, result.stdout
    for file in ("Annotations/broken.xml", "JPEGImages/corrupt.jpg"):  # with the parser's words, which vary
        assert sum(line.startswith(f"    {file} (") and line.endswith(")") for line in lines) == 1
    assert (
        "Note: 2 annotations had a missing or wrong <size>; the image's own size was used" in result.stderr.splitlines()
    )
    assert f"Wrote {root.resolve() / 'data.yaml'}" in lines


def test_prepare_json_keeps_its_keys_and_adds_the_groups(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    _voc_with_an_unknown_class(root)
    result = run_yolor("dataset", "prepare", "--root", str(root), "--classes", "cat,dog", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert {"file", "reason"} == set(payload["skipped"][0])
    long_entry = next(item for item in payload["skipped"] if LONG_STEM in item["file"])
    assert long_entry == {
        "file": str(root.resolve() / "Annotations" / f"{LONG_STEM}.xml"),
        "reason": "unknown class (2 x 'hexagon')",
    }
    groups = {group["reason"]: group for group in payload["skipped_by_reason"]}
    assert groups["unknown class 'hexagon'"] == {"reason": "unknown class 'hexagon'", "files": 35, "objects": 37}
    assert groups["malformed XML"] == {"reason": "malformed XML", "files": 1, "objects": 0}
    assert payload["skipped_by_reason"][0]["reason"] == "unknown class 'hexagon'"  # the most files first


@pytest.mark.parametrize(
    ("command", "what"),
    [
        (("train", "--device", "cpu", "--data", "{fifo}"), "data file"),
        (("train", "--device", "cpu", "--data", "{data}", "--hyp", "{fifo}"), "hyperparameter file"),
        (("dataset", "voc2yolo", "--root", "{root}", "--names", "{fifo}"), "class names file"),
        (("info", "--cfg", "{fifo}"), "cfg file"),
        (("info", "--weights", "{fifo}"), "weights file"),
    ],
)
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path, command: tuple[str, ...], what: str) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    (tmp_path / "voc").mkdir()
    data = tmp_path / "data.yaml"  # valid, so train gets as far as the hyperparameters
    data.write_text(f"train: {tmp_path / 'voc'}\nnames: [a]\n")
    args = [part.format(fifo=fifo, root=tmp_path / "voc", data=data) for part in command]
    args += ["--project", str(tmp_path / "runs")] if args[0] == "train" else []
    result = run_yolor(*args, cwd=tmp_path)  # raises TimeoutExpired (a failure) if it waits on the FIFO
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert f"Error: {what} {fifo} is a named pipe (FIFO), not a regular file" in lines, result.stderr
    assert "Hint: pass the path of a regular file (save what a pipe or device gives to a file first)" in lines
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
