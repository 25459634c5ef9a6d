"""``yolor report`` and the report.html that train, prune auto and benchmark write: each kind of run made
small and real (tiny model, 64 px, one epoch), its page checked for its sections, inline images and no
network, and loaded in headless Chromium (skipped without it) with no console errors and every image
decoded."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.chromium import find_chromium, load_page
from tests.conftest import make_shapes_dataset
from tests.test_cli import invoke
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.evaluate.metrics import ImageDetections
from yolor_cli.engine.report import evaluation
from yolor_cli.engine.report.gather import detect_kind
from yolor_cli.engine.report.request import MAX_GALLERY, ReportRequest
from yolor_cli.engine.report.run import report_at_end, write_report
from yolor_cli.engine.reporting import SilentReporter

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

MAX_BYTES = 5 * 2**20  # the bound on a page
IMG = "64"
SRC = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("report") / "voc", images=12, seed=5, val=0.5)


@pytest.fixture(scope="module")
def train_run(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    project = tmp_path_factory.mktemp("train")
    result = invoke(
        "train", "--cfg", "yolor_csp_tiny", "--data", str(shapes / "data.yaml"), "--epochs", "2", "--img-size", IMG,
        "--batch-size", "4", "--workers", "0", "--device", "cpu", "--project", str(project), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def prune_run(shapes: Path, train_run: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from yolor_cli.engine.prune import auto

    project = tmp_path_factory.mktemp("prune")
    with pytest.MonkeyPatch.context() as patch:  # the final table on PyTorch only, as the prune tests keep it
        patch.setattr(auto, "available_runtimes", lambda: (["torch"], []))
        result = invoke(
            "prune", "auto", "-w", str(Path(train_run["save_dir"]) / "weights" / "last.pt"),
            "--data", str(shapes / "data.yaml"), "--target-macs", "0.6", "--steps", "1", "--epochs-per-step", "1",
            "--final-epochs", "1", "--no-distill", "--img-size", IMG, "--batch-size", "4", "--workers", "0",
            "--device", "cpu", "--project", str(project), "--json",
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    yield json.loads(result.stdout)


@pytest.fixture(scope="module")
def benchmark_run(shapes: Path, train_run: dict) -> dict:
    result = invoke(
        "benchmark", "-w", str(Path(train_run["save_dir"]) / "weights" / "last.pt"), "--data",
        str(shapes / "data.yaml"), "--formats", "pytorch,torchscript", "--img-size", IMG, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def eval_run(shapes: Path, train_run: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("eval")
    result = invoke(
        "eval", "-w", str(Path(train_run["save_dir"]) / "weights" / "last.pt"), "--data", str(shapes / "data.yaml"),
        "--img-size", IMG, "--plots", "--save-json", "--project", str(project), "--name", "exp", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return project / "exp"


def _check_page(path: Path, sections: list[str]) -> str:
    """The page's text after the checks every report passes: ours, its sections, every src/href inline or
    an anchor (nothing to fetch), every image a data: URI, and small."""
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and 'name="generator" content="yolor-cli report"' in html
    for key in sections:
        assert f'<section id="{key}">' in html, key
    links = SRC.findall(html)
    assert links and all(link.startswith(("data:image/png;base64,", "data:image/jpeg;base64,", "#")) for link in links)
    assert not re.search(r"https?://", html.replace("http-equiv", ""))
    assert path.stat().st_size < MAX_BYTES
    return html


def test_train_writes_its_report_with_curves_table_and_gallery(train_run: dict) -> None:
    path = Path(train_run["report"])
    assert path == Path(train_run["save_dir"]) / "report.html"
    html = _check_page(
        path, ["options", "data", "training", "pr_curves", "confusion_matrix", "per_class", "errors", "gallery"]
    )
    assert html.count("data:image/png;base64,") >= 6  # results, labels, 4 curves, confusion matrix
    assert "dAP50-95" in html and "<td>localisation</td>" in html  # the scored model's TIDE breakdown
    assert "<td>circle</td>" in html or "<td>rectangle</td>" in html  # the per-class table names classes
    tiles = html.count('<div class="gallery">') and html.count("data:image/jpeg;base64,") - 1  # minus train_batch0
    assert 0 < tiles <= MAX_GALLERY


def test_report_command_json_rewrites_its_own_page_and_refuses_a_foreign_one(train_run: dict, tmp_path: Path) -> None:
    run = train_run["save_dir"]
    result = invoke("report", run, "--gallery", "0", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["kind"] == "train" and payload["path"] == str(Path(run) / "report.html")
    assert "gallery" not in payload["sections"] and "per_class" in payload["sections"]
    assert payload["size_bytes"] == Path(payload["path"]).stat().st_size
    foreign = tmp_path / "page.html"
    foreign.write_text("<html>mine</html>")
    refused = invoke("report", run, "--output", str(foreign), "--gallery", "0")
    assert refused.exit_code == 1 and "is not a report yolor wrote" in refused.output
    assert foreign.read_text() == "<html>mine</html>"
    nothing = invoke("report", str(tmp_path))
    assert nothing.exit_code == 1 and "holds no run yolor report knows" in nothing.output


def test_prune_auto_report_has_the_steps_and_each_change(prune_run: dict) -> None:
    path = Path(prune_run["report"])
    assert path.name == "report.html" and path.parent == Path(prune_run["output"]).parent
    html = _check_page(path, ["options", "steps", "training", "per_class", "errors", "gallery"])
    assert "GFLOPs change" in html and "vs input" in html
    step = prune_run["steps"][1]
    assert f"{step['params']:,}" in html  # the step's figures from auto.json


def test_benchmark_report_has_the_formats_and_the_speed_accuracy_chart(benchmark_run: dict) -> None:
    path = Path(benchmark_run["report"])
    assert path == Path(benchmark_run["csv"]).parent / "report.html"
    html = _check_page(path, ["benchmark", "speed_accuracy"])
    assert "<td>torchscript</td>" in html and "latency against mAP50-95" in html


def test_eval_folder_report_shows_its_plots_and_the_error_breakdown_when_present(eval_run: Path) -> None:
    assert detect_kind(eval_run) == ("eval", eval_run)

    def figures(dap: float) -> dict:
        return {"map50": dap / 2, "map": dap, "count": 3}

    kinds = ("cls", "loc", "both", "dupe", "bkg", "missed")
    circle = {"class": "circle", **{kind: figures(0.1 * i) for i, kind in enumerate(kinds)}}
    overall = {kind: figures(0.01 * (i + 1)) for i, kind in enumerate(kinds)}
    (eval_run / "errors.json").write_text(json.dumps({**overall, "per_class": [circle]}))  # eval --errors' format
    result = write_report(ReportRequest(run=eval_run))
    assert result.kind == "eval" and result.sections == ["pr_curves", "confusion_matrix", "errors"]
    html = _check_page(result.path, result.sections)
    assert "<td>localisation</td><td>0.0200</td><td>0.0100</td><td>3</td>" in html and "<td>circle</td>" in html


def test_a_failing_report_is_one_warning_and_no_report(tmp_path: Path) -> None:
    reporter = SilentReporter()
    assert report_at_end(tmp_path, enabled=True, reporter=reporter) is None
    assert len(reporter.warnings) == 1 and reporter.warnings[0].startswith("report.html not written")
    assert report_at_end(tmp_path, enabled=False, reporter=reporter) is None and len(reporter.warnings) == 1
    with pytest.raises(YolorError, match="holds no run"):
        write_report(ReportRequest(run=tmp_path))


def test_no_report_skips_the_page(shapes: Path, tmp_path: Path) -> None:
    result = invoke(
        "train", "--cfg", "yolor_csp_tiny", "--data", str(shapes / "data.yaml"), "--epochs", "1", "--img-size", IMG,
        "--batch-size", "4", "--workers", "0", "--device", "cpu", "--project", str(tmp_path), "--noval",
        "--no-report", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["report"] is None and not (Path(payload["save_dir"]) / "report.html").exists()


def test_worst_images_count_missed_false_and_wrong_class_errors(tmp_path: Path) -> None:
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], dtype=float)
    image = ImageDetections(
        boxes=np.array([[0, 0, 10, 10], [20, 20, 30, 30], [60, 60, 70, 70]], dtype=float),
        scores=np.array([0.9, 0.9, 0.9]),
        classes=np.array([0, 2, 1]),
        gt_boxes=boxes,
        gt_classes=np.array([0, 1, 2]),
    )
    errors = evaluation.image_errors(image, nc=3)
    assert (errors.missed, errors.background, errors.wrong_class) == (1, 1, 1)
    assert errors.describe() == "3 errors: 1 missed, 1 false detection, 1 wrong class"


@pytest.mark.skipif(find_chromium() is None, reason="headless Chromium not installed (apt-get install chromium)")
@pytest.mark.parametrize("kind", ["train", "prune", "benchmark", "eval"])
def test_each_report_renders_in_chromium(kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "eval":
        path = write_report(ReportRequest(run=request.getfixturevalue("eval_run"))).path
    else:
        path = Path(request.getfixturevalue(f"{kind}_run")["report"])
    page = load_page(path)
    assert page.errors == []
    assert page.images and all(complete and width > 0 and height > 0 for complete, width, height in page.images)
    assert page.sections == re.findall(r'<section id="([^"]+)">', path.read_text(encoding="utf-8"))
    shot = cv2.imdecode(np.frombuffer(page.screenshot, np.uint8), cv2.IMREAD_COLOR)
    assert shot is not None and shot.shape[1] == 1280
    assert shot.std() > 20  # a header, text and pictures: not one blank colour
    assert len(np.unique(shot.reshape(-1, 3)[::97], axis=0)) > 50


def test_a_folder_of_weights_alone_is_no_run(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    with pytest.raises(YolorError, match="holds no run") as raised:
        detect_kind(tmp_path)
    assert "results.csv, weights/" in (raised.value.hint or "")
