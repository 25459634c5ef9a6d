"""What kind of run a folder holds, and its data gathered into a :class:`~yolor_cli.engine.report.page.Page`.

Kinds, told apart by the files each command leaves:

- ``prune-auto``: ``auto.json`` and ``steps.csv`` (``yolor prune auto``);
- ``train``: ``results.csv`` and ``weights/`` (``yolor train``);
- ``benchmark``: a ``benchmark.csv`` (``yolor benchmark``; the table itself may be named);
- ``eval``: what ``yolor eval --plots/--save-json/--errors`` writes in its run folder.

Everything shown is read from the folder (the PNGs the commands drew, inline); the run's model is
scored once more on its val split only for the PR curves, confusion matrix, per-class table and gallery,
which a training run does not keep.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml

from yolor_cli.engine.deploy.benchmark import CSV_NAME as BENCHMARK_CSV
from yolor_cli.engine.deploy.benchmark import foreign_table
from yolor_cli.engine.errors import MissingDependencyError, YolorError
from yolor_cli.engine.prune.auto import FINAL_NAME, OUTPUT_NAME
from yolor_cli.engine.prune.steps import CSV_NAME as STEPS_CSV
from yolor_cli.engine.prune.steps import PLOT_NAME as STEPS_PLOT
from yolor_cli.engine.prune.steps import STATE_NAME, AutoState
from yolor_cli.engine.report.charts import speed_accuracy_chart
from yolor_cli.engine.report.error_section import errors_section
from yolor_cli.engine.report.evaluation import add_evaluation
from yolor_cli.engine.report.page import Figure, Page, Section, Table, data_uri, file_uri, number
from yolor_cli.engine.reporting import Reporter

KINDS = ("train", "prune-auto", "benchmark", "eval")
RESULTS_CSV = "results.csv"
WEIGHTS_DIR = "weights"
EVAL_FILES = ("errors.json", "PR_curve.png", "confusion_matrix.png", "predictions.json")
EVAL_CURVES = ("PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png")
ERRORS_JSON, ERRORS_PNG = "errors.json", "errors.png"
TRAIN_BATCH_IMAGE = "train_batch0.jpg"  # one mosaic of augmented training images is enough to check labels
BEST_WEIGHTS = ("best.pt", "last.pt")  # the model a training run's report scores, the first found


def detect_kind(run: Path) -> tuple[str, Path]:
    """The kind of run at ``run`` and its folder, or a YolorError naming what each kind holds."""
    if run.is_file():
        if foreign_table(run) is None:
            return "benchmark", run.parent
        raise YolorError(f"{run} is a file, not a run folder or a benchmark table", hint="give the run's folder")
    if not run.is_dir():
        raise YolorError(f"run folder not found: {run}")
    if (run / STATE_NAME).is_file() and (run / STEPS_CSV).is_file():
        return "prune-auto", run
    if (run / RESULTS_CSV).is_file() and (run / WEIGHTS_DIR).is_dir():
        return "train", run
    if (run / BENCHMARK_CSV).is_file():
        return "benchmark", run
    if any((run / name).is_file() for name in EVAL_FILES):
        return "eval", run
    raise YolorError(
        f"{run} holds no run yolor report knows",
        hint="give a yolor train run (results.csv, weights/), a prune auto run (auto.json, steps.csv), "
        "a folder with benchmark.csv, or a yolor eval run folder (written with --plots, --save-json or --errors)",
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise YolorError(f"cannot read {path}: {error}") from None
    return values if isinstance(values, dict) else {}


def _cell(value: object) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return "-" if value is None else str(value)


def options_table(values: dict[str, Any], caption: str) -> Table:
    return Table(["option", "value"], [[key, _cell(value)] for key, value in values.items()], caption, options=True)


def _figure_if(path: Path, title: str, caption: str = "", wide: bool = False) -> list[Figure]:
    return [Figure(title, file_uri(path), caption, wide)] if path.is_file() else []


def add_errors(page: Page, folder: Path) -> None:
    """The error breakdown ``yolor eval --errors`` leaves (errors.json, errors.png), or a note that it is
    absent; nothing when the page already has one (a scored model's)."""
    if any(section.key == "errors" for section in page.sections):
        return
    path = folder / ERRORS_JSON
    if not path.is_file():
        page.add(
            Section(
                "errors",
                "Error breakdown",
                notes=[
                    f"No {ERRORS_JSON} in this folder: run yolor eval --errors with --project/--name pointing "
                    "here to see which kinds of error cost mAP."
                ],
            )
        )
        return
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        page.add(Section("errors", "Error breakdown", notes=[f"{path} cannot be read: {error}"]))
        return
    # errors.json is eval --json's "errors" object; a whole --json payload (the object under "errors") is read too
    values = values if isinstance(values, dict) else {}
    errors = values.get("errors", values)
    errors_section(page, errors if isinstance(errors, dict) else {}, folder / ERRORS_PNG, f"from {path.name}")


# ---- train ---------------------------------------------------------------------------------------


def _best_row(rows: list[dict[str, str]]) -> dict[str, str] | None:
    """The epoch of the best fitness (0.1 mAP50 + 0.9 mAP50-95), as the checkpoints rank them."""
    scored = [row for row in rows if row.get("map50") and row.get("map")]
    return max(scored, key=lambda row: 0.1 * float(row["map50"]) + 0.9 * float(row["map"])) if scored else None


def add_training(page: Page, folder: Path, title: str = "Training curves") -> None:
    results = folder / RESULTS_CSV
    section = page.add(Section("training", title))
    section.figures += _figure_if(folder / "results.png", "losses, metrics and learning rates per epoch", wide=True)
    if not results.is_file():
        section.notes.append(f"no {RESULTS_CSV} in {folder}")
        return
    rows = _read_csv(results)
    if not rows:
        section.notes.append(f"{results} has no epoch yet")
        return
    shown = [("last", rows[-1])] + ([("best", best)] if (best := _best_row(rows)) is not None else [])
    columns = ["epoch", "precision", "recall", "map50", "map", "total", "val_total"]
    section.tables.append(
        Table(
            ["", *columns],
            [
                [label, *(number(row.get(column)) if column != "epoch" else row["epoch"] for column in columns)]
                for label, row in shown
            ],
            f"{len(rows)} epochs in {RESULTS_CSV}",
        )
    )
    if not section.figures:
        section.notes.append("no results.png (it needs matplotlib: pip install 'yolor-cli[plots]')")


def _train_weights(folder: Path) -> Path | None:
    return next((folder / WEIGHTS_DIR / name for name in BEST_WEIGHTS if (folder / WEIGHTS_DIR / name).is_file()), None)


def gather_train(folder: Path, *, device: str, gallery: int, reporter: Reporter) -> Page:
    page = Page("train", f"Training run {folder.name}", folder)
    options = _read_yaml(folder / "opt.yaml") if (folder / "opt.yaml").is_file() else {}
    hyp = _read_yaml(folder / "hyp.yaml") if (folder / "hyp.yaml").is_file() else {}
    run = page.add(Section("options", "Options"))
    run.tables.append(options_table(options, "opt.yaml: the options the run trained with"))
    if hyp:
        run.tables.append(options_table(hyp, "hyp.yaml: the hyperparameters as trained"))
    data = page.add(Section("data", "Data", notes=[f"data: {options.get('data', '-')}"]))
    data.figures += _figure_if(folder / "labels.png", "labels of the training set")
    data.figures += _figure_if(folder / TRAIN_BATCH_IMAGE, "a training batch, augmented, with its labels")
    add_training(page, folder)
    weights = _train_weights(folder)
    img_size = options.get("test_img_size") or options.get("img_size")
    if weights is None or not options.get("data") or not isinstance(img_size, int):
        page.notes.append("no model scored: the run has no best.pt/last.pt or its opt.yaml names no data and size")
    else:
        _scored(
            page,
            weights=weights,
            data=options["data"],
            img_size=img_size,
            device=device,
            gallery=gallery,
            reporter=reporter,
        )
    add_errors(page, folder)
    return page


def _scored(page: Page, *, reporter: Reporter, **arguments: Any) -> None:
    """The evaluation sections; a model or data that cannot be read any more is a note, not a failed page."""
    try:
        add_evaluation(page, reporter=reporter, **arguments)
    except (YolorError, MissingDependencyError) as error:
        page.notes.append(f"no PR curves, per-class table or gallery: {error}")


# ---- prune auto ----------------------------------------------------------------------------------


def steps_table(state: AutoState) -> Table:
    """Each step's figures and what the step changed against the one before (and the input)."""
    input_map = state.input.map if state.input.map is not None else state.input.map_pruned
    rows, before = [], state.input
    for record in [state.input, *state.steps]:
        tuned = record.map if record.map is not None else record.map_pruned
        previous = before.map if before.map is not None else before.map_pruned
        rows.append(
            [
                str(record.step),
                f"{record.params:,}",
                number(record.gflops, 3),
                number(record.latency_ms, 2),
                number(record.map_pruned),
                number(record.map),
                "-" if record.step == 0 else f"{tuned - previous:+.4f}",
                "-" if record.step == 0 else f"{tuned - input_map:+.4f}",
                "-" if record.step == 0 else f"{record.gflops / before.gflops - 1:+.1%}",
            ]
        )
        before = record
    stopped = f"; the guard stopped at step {state.stopped}" if state.stopped is not None else ""
    return Table(
        [
            "step",
            "params",
            "GFLOPs",
            "latency ms",
            "mAP50-95 pruned",
            "mAP50-95 tuned",
            "change",
            "vs input",
            "GFLOPs change",
        ],
        rows,
        f"step 0 is the input; change: mAP50-95 after fine-tuning against the step before{stopped}",
    )


def final_table(values: dict[str, Any]) -> Table:
    runtimes = list(values.get("runtimes", []))
    rows = [
        [
            str(row["model"]),
            f"{row['params']:,}",
            number(row["gflops"], 3),
            *(number(row["latency_ms"].get(name), 2) for name in runtimes),
            number(row["map50"]),
            number(row["map"]),
        ]
        for row in values.get("rows", [])
    ]
    return Table(
        ["model", "params", "GFLOPs", *(f"{name} ms" for name in runtimes), "mAP50", "mAP50-95"],
        rows,
        "the final table",
    )


def gather_prune_auto(folder: Path, *, device: str, gallery: int, reporter: Reporter) -> Page:
    state = AutoState.load(folder)
    request = state.request
    page = Page("prune-auto", f"prune auto run {folder.name}", folder)
    page.add(Section("options", "Options", tables=[options_table(request, f"{STATE_NAME}: the run's request")]))
    page.add(
        Section("data", "Data", notes=[f"data: {request.get('data', '-')}", f"input: {request.get('weights', '-')}"])
    )
    steps = page.add(Section("steps", "Steps", tables=[steps_table(state)], notes=list(state.notes)))
    steps.figures += _figure_if(folder / STEPS_PLOT, "GFLOPs against mAP50-95, each step", wide=False)
    if state.table:
        steps.tables.append(final_table(state.table))
    add_training(page, folder / FINAL_NAME, "Final fine-tune")
    output = folder / OUTPUT_NAME
    if not output.is_file() or not request.get("data"):
        page.notes.append(f"no model scored: {OUTPUT_NAME} is not written yet")
    else:
        _scored(
            page,
            weights=output,
            data=request["data"],
            img_size=int(request["img_size"]),
            device=device,
            gallery=gallery,
            reporter=reporter,
        )
    add_errors(page, folder)
    return page


# ---- benchmark -----------------------------------------------------------------------------------


def gather_benchmark(table: Path) -> Page:
    rows = _read_csv(table)
    page = Page("benchmark", f"Benchmark {table.parent.name}/{table.name}", table.parent)
    page.add(
        Section(
            "benchmark",
            "Formats",
            tables=[Table(list(rows[0]) if rows else [], [list(row.values()) for row in rows], str(table.name))],
        )
    )
    timed = [row for row in rows if row.get("status") == "ok" and row.get("latency_ms") and row.get("map50_95")]
    section = page.add(Section("speed_accuracy", "Speed and accuracy"))
    try:
        chart = speed_accuracy_chart(
            [f"{row['format']} ({row['precision']})" for row in timed],
            [float(row["latency_ms"]) for row in timed],
            [float(row["map50_95"]) for row in timed],
        )
    except MissingDependencyError as error:
        section.notes.append(f"no chart: {error.message} ({error.hint})")
    else:
        section.figures.append(Figure("latency against mAP50-95, one point per format", data_uri(chart, "image/png")))
    return page


# ---- eval ----------------------------------------------------------------------------------------


def gather_eval(folder: Path) -> Page:
    page = Page("eval", f"Evaluation {folder.name}", folder)
    curves = [
        figure
        for name in EVAL_CURVES
        for figure in _figure_if(folder / name, name.removesuffix(".png").replace("_", " "))
    ]
    if curves:
        page.add(Section("pr_curves", "Precision-recall curves", figures=curves))
    matrix = _figure_if(folder / "confusion_matrix.png", "confusion matrix", "columns: true class, normalised")
    if matrix:
        page.add(Section("confusion_matrix", "Confusion matrix", figures=matrix))
    predictions = folder / "predictions.json"
    if predictions.is_file():
        page.notes.append(f"{predictions.name}: {predictions.stat().st_size:,} bytes of COCO results")
    add_errors(page, folder)
    return page


# The order sections appear in, whatever order they were gathered in: what the run was, how it went,
# how good the model is, and why not better.
SECTION_ORDER = (
    "options",
    "data",
    "steps",
    "benchmark",
    "speed_accuracy",
    "training",
    "pr_curves",
    "confusion_matrix",
    "per_class",
    "errors",
    "gallery",
)


def gather(run: Path, *, device: str, gallery: int, reporter: Reporter) -> Page:
    kind, folder = detect_kind(run)
    if kind == "train":
        page = gather_train(folder, device=device, gallery=gallery, reporter=reporter)
    elif kind == "prune-auto":
        page = gather_prune_auto(folder, device=device, gallery=gallery, reporter=reporter)
    elif kind == "benchmark":
        page = gather_benchmark(run if run.is_file() else folder / BENCHMARK_CSV)
    else:
        page = gather_eval(folder)
    page.sections.sort(key=lambda section: SECTION_ORDER.index(section.key))
    return page
