"""What ``yolor report`` is asked to do. Only the standard library here (the command line reads it
without torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolor_cli.engine.options import REQUIRED, Request, device_option, option, output_option, overwrite_option

REPORT_NAME = "report.html"
# The gallery is a handful of the worst images, drawn small: enough to see a pattern, small enough
# that the page stays light (every image is inline).
MAX_GALLERY = 12


@dataclass(frozen=True)
class ReportRequest(Request):
    """The report of one run folder: a training run, a ``prune auto`` run, a benchmark table's folder,
    or an eval run folder."""

    run: Path = option(
        REQUIRED,
        help="Run folder: a yolor train run (results.csv, weights/), a prune auto run (auto.json), the folder "
        "of a benchmark.csv (or the table itself), or a yolor eval run folder.",
        argument=True,
    )
    output: Path | None = output_option("Where the page goes (an .html file). Default: RUN/report.html.")
    overwrite: bool = overwrite_option("Replace an --output file that is not a report this tool wrote.")
    gallery: int = option(
        MAX_GALLERY,
        "--gallery",
        help="How many of the worst val images to draw (0: none, and no model is run).",
        min=0,
        max=MAX_GALLERY,
    )
    device: str = device_option()
