"""The one chart a report draws itself: a benchmark's formats as latency against mAP50-95 (the table
has the figures but no picture). matplotlib through the plots extra, into memory: the page inlines it."""

from __future__ import annotations

import io

from yolor_cli.engine.evaluate.plots import PLOT_DPI, require_matplotlib


def speed_accuracy_chart(labels: list[str], latency_ms: list[float], maps: list[float]) -> bytes:
    """PNG bytes: one point per format, labelled; faster is left, better is up."""
    plt = require_matplotlib()
    figure, axis = plt.subplots(figsize=(6, 4.5))
    axis.scatter(latency_ms, maps, color="tab:blue", zorder=3)
    for label, x, y in zip(labels, latency_ms, maps):
        axis.annotate(label, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
    axis.set(xlabel="latency, ms per batch (median)", ylabel="mAP@0.5:0.95", title="formats: speed and accuracy")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PLOT_DPI)
    plt.close(figure)
    return buffer.getvalue()
