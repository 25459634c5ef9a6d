"""PNG plots of evaluation and training results (matplotlib, an optional extra)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from yolor_cli.engine.errors import MissingDependencyError
from yolor_cli.engine.evaluate.errors import ERROR_LABELS, ERROR_TYPES, ErrorBreakdown
from yolor_cli.engine.evaluate.metrics import CONFIDENCE_GRID, RECALL_POINTS, Metrics
from yolor_cli.engine.files import atomic_write

PLOT_DPI = 150


def require_matplotlib() -> Any:
    """matplotlib's pyplot on the file-only backend, or MissingDependencyError naming the extra."""
    return _pyplot()


def plots_available() -> bool:
    """Whether the plots extra is installed (for outputs that are drawn only when it is)."""
    try:
        _pyplot()
    except MissingDependencyError:
        return False
    return True


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(
            "plots need matplotlib, which is not installed", hint="pip install 'yolor-cli[plots]'"
        ) from None
    return plt


def _curve(
    path: Path, x: np.ndarray, rows: np.ndarray, labels: list[str], xlabel: str, ylabel: str, summary: str
) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 5))
    for row, label in zip(rows, labels):
        axis.plot(x, row, linewidth=1, label=label if len(labels) <= 20 else None)
    if len(rows):
        axis.plot(x, rows.mean(0), linewidth=3, color="blue", label=summary)
    axis.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02))
    axis.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)
    return path


def plot_metrics(metrics: Metrics, names: list[str], save_dir: Path) -> list[Path]:
    labels = [names[c] for c in metrics.curve_classes]
    best = int(metrics.f1_curve.mean(0).argmax()) if len(metrics.f1_curve) else 0
    return [
        _curve(
            save_dir / "PR_curve.png",
            RECALL_POINTS,
            metrics.pr_curve,
            labels,
            "Recall",
            "Precision",
            f"all classes {metrics.map50:.3f} mAP@0.5",
        ),
        _curve(
            save_dir / "F1_curve.png",
            CONFIDENCE_GRID,
            metrics.f1_curve,
            labels,
            "Confidence",
            "F1",
            f"all classes {metrics.f1_curve.mean(0)[best]:.2f} at {CONFIDENCE_GRID[best]:.3f}"
            if len(metrics.f1_curve)
            else "all classes",
        ),
        _curve(
            save_dir / "P_curve.png", CONFIDENCE_GRID, metrics.p_curve, labels, "Confidence", "Precision", "all classes"
        ),
        _curve(
            save_dir / "R_curve.png", CONFIDENCE_GRID, metrics.r_curve, labels, "Confidence", "Recall", "all classes"
        ),
    ]


def plot_confusion_matrix(matrix: np.ndarray, names: list[str], save_dir: Path) -> Path:
    """Columns (true classes) normalised to 1; the last row/column is background."""
    plt = _pyplot()
    normalised = matrix / np.maximum(matrix.sum(0, keepdims=True), 1)
    labels = [*names, "background"]
    size = max(6, 0.5 * len(labels))
    figure, axis = plt.subplots(figsize=(size, size * 0.85))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(labels)), labels, rotation=90)
    axis.set_yticks(range(len(labels)), labels)
    axis.set(xlabel="True", ylabel="Predicted")
    if len(labels) <= 30:
        for (row, column), value in np.ndenumerate(normalised):
            if value > 0.005:
                axis.text(
                    column,
                    row,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value > 0.5 else "black",
                )
    figure.colorbar(image)
    figure.tight_layout()
    path = save_dir / "confusion_matrix.png"
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)
    return path


def plot_results(rows: list[dict[str, str]], columns: list[str], path: Path) -> Path:
    """One small panel per results.csv column (losses, metrics, learning rates) over the epochs."""
    plt = _pyplot()
    panels = len(columns)
    per_row = min(panels, 5)
    figure, axes = plt.subplots(
        math.ceil(panels / per_row), per_row, figsize=(3 * per_row, 2.6 * math.ceil(panels / per_row)), squeeze=False
    )
    epochs = [int(row["epoch"]) for row in rows]
    for axis, column in zip(axes.ravel(), columns):
        points = [(e, float(row[column])) for e, row in zip(epochs, rows) if row.get(column, "") not in ("", None)]
        if points:
            axis.plot(*zip(*points), marker=".", linewidth=1.5)
        axis.set_title(column, fontsize=10)
    for axis in axes.ravel()[panels:]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)
    return path


def plot_labels(labels: np.ndarray, names: list[str], path: Path) -> Path:
    """Label statistics of a training set: instances per class, box centres, and box sizes.

    ``labels`` are all rows [class, cx, cy, w, h] (normalised) of the set.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(12, 4))
    counts = np.bincount(labels[:, 0].astype(int), minlength=len(names))[: len(names)]
    axes[0].bar(range(len(names)), counts, color="tab:blue")
    axes[0].set_xticks(range(len(names)), names, rotation=90 if len(names) > 8 else 0, fontsize=8)
    axes[0].set(ylabel="instances", title=f"{int(counts.sum())} instances")
    axes[1].hist2d(labels[:, 1], labels[:, 2], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
    axes[1].set(xlabel="x", ylabel="y", title="box centres")
    axes[2].hist2d(labels[:, 3], labels[:, 4], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
    axes[2].set(xlabel="width", ylabel="height", title="box sizes")
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)
    return path


def plot_prune_steps(rows: list[dict[str, Any]], path: Path, final: tuple[float, float] | None = None) -> Path:
    """``yolor prune auto``'s trade-off: GFLOPs against mAP50-95, each step right after pruning and
    after its fine-tune (numbered), and the final fine-tune's model. Written atomically: a run killed
    while plotting keeps the previous picture."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4.5))
    gflops = [row["gflops"] for row in rows]
    tuned = [(g, row["map"]) for g, row in zip(gflops, rows) if row["map"] is not None]
    pruned = [(g, row["map_pruned"]) for g, row in zip(gflops, rows) if row["step"] > 0]
    if tuned:
        axis.plot(*zip(*tuned), marker="o", linewidth=1.5, label="after fine-tuning")
    if pruned:
        axis.plot(*zip(*pruned), marker="x", linestyle="none", color="tab:red", label="after pruning")
    for g, row in zip(gflops, rows):
        point = (g, row["map"] if row["map"] is not None else row["map_pruned"])
        axis.annotate(str(row["step"]), point, xytext=(4, 4), textcoords="offset points", fontsize=8)
    if final is not None:
        axis.plot(*final, marker="*", markersize=14, linestyle="none", color="tab:green", label="final fine-tune")
    axis.set(xlabel="GFLOPs", ylabel="mAP@0.5:0.95")
    axis.invert_xaxis()  # the run moves right to left: from the input model to the smallest
    axis.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    atomic_write(path, lambda stream: figure.savefig(stream, format="png", dpi=PLOT_DPI))
    plt.close(figure)
    return path


def plot_sensitivity(units: list[str], amounts: list[float], drops: np.ndarray, path: Path) -> Path:
    """Heat map of a pruning sensitivity scan: one row per unit, one column per amount, the cell the
    mAP50-95 lost by pruning that unit alone by that amount (``drops`` is units x amounts; NaN where
    the amount pruned nothing, drawn grey). Red is lost accuracy; a rise, within the noise of a small
    split, is drawn white like no change, so the colour scale is spent on losses."""
    plt = _pyplot()
    height = max(3.0, 0.28 * len(units) + 1.5)
    figure, axis = plt.subplots(figsize=(max(4.0, 1.1 * len(amounts) + 2.5), height))
    colours = plt.get_cmap("Reds").with_extremes(bad="lightgrey")
    finite = drops[np.isfinite(drops)]
    top = max(float(finite.max()) if finite.size else 0.0, 1e-3)
    image = axis.imshow(np.ma.masked_invalid(drops), cmap=colours, vmin=0, vmax=top, aspect="auto")
    axis.set_xticks(range(len(amounts)), [f"{amount:g}" for amount in amounts])
    axis.set_yticks(range(len(units)), units, fontsize=7 if len(units) > 30 else 9)
    axis.set(xlabel="amount (fraction of each conv's channels removed)", title="mAP50-95 drop, each unit pruned alone")
    if len(units) * len(amounts) <= 400:
        for (row, column), value in np.ndenumerate(drops):
            if np.isfinite(value):
                axis.text(
                    column,
                    row,
                    f"{value:.3f}",
                    ha="center",
                    va="center",
                    fontsize=6 if len(units) > 30 else 8,
                    color="white" if value > 0.6 * top else "black",
                )
    figure.colorbar(image, label="mAP50-95 drop")
    figure.tight_layout()
    atomic_write(path, lambda stream: figure.savefig(stream, format="png", dpi=PLOT_DPI))
    plt.close(figure)
    return path


ERRORS_HEATMAP_MAX_CLASSES = 40  # beyond this the per-class panel is unreadable; the JSON has every class


def plot_errors(breakdown: ErrorBreakdown, names: list[str], path: Path) -> Path:
    """TIDE's error types: the dAP of each on mAP50 and mAP50-95 as bars, and per class (mAP50-95) as a
    heat map when there are few enough classes."""
    plt = _pyplot()
    classes = list(breakdown.per_class)[:ERRORS_HEATMAP_MAX_CLASSES]
    panels = 2 if classes else 1
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, max(3.5, 0.3 * len(classes) + 2)), squeeze=False)
    axis = axes[0, 0]
    rows = np.arange(len(ERROR_TYPES))
    overall = breakdown.overall
    axis.barh(rows - 0.2, [overall.map50[k] for k in ERROR_TYPES], height=0.4, label="mAP50")
    axis.barh(rows + 0.2, [overall.map[k] for k in ERROR_TYPES], height=0.4, label="mAP50-95")
    axis.set_yticks(rows, [f"{k} ({ERROR_LABELS[k]})" for k in ERROR_TYPES])
    axis.invert_yaxis()
    axis.set(xlabel="dAP (mAP gained if fixed)", title=f"Errors (mAP50-95 {overall.base_map:.3f})")
    axis.legend(loc="lower right", fontsize=8)
    if classes:
        axis = axes[0, 1]
        values = np.array([[breakdown.per_class[c].map[k] for k in ERROR_TYPES] for c in classes])
        image = axis.imshow(values, cmap="Reds", vmin=0, aspect="auto")
        axis.set_xticks(range(len(ERROR_TYPES)), list(ERROR_TYPES))
        axis.set_yticks(range(len(classes)), [names[c] for c in classes])
        axis.set(title="dAP on mAP50-95 per class")
        figure.colorbar(image, ax=axis)
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)
    return path
