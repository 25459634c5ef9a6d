"""The engine entries of ``yolor report``: :func:`write_report` (the command), and :func:`report_at_end`
(train, prune auto and benchmark, after their run: a report that fails is one warning, never a failed run)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from yolor_cli.engine.errors import first_line
from yolor_cli.engine.files import atomic_write, guard_output
from yolor_cli.engine.report.gather import gather
from yolor_cli.engine.report.render import GENERATOR, render
from yolor_cli.engine.report.request import REPORT_NAME, ReportRequest
from yolor_cli.engine.reporting import Reporter, SilentReporter

HEAD_BYTES = 1024  # where the generator tag sits in a report we wrote


@dataclass
class ReportResult:
    path: Path
    kind: str
    sections: list[str]
    size_bytes: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def foreign_report(path: Path) -> str | None:
    """Why ``path`` is not a report this tool wrote (it carries the generator tag in its head), or None."""
    try:
        with path.open("rb") as stream:
            head = stream.read(HEAD_BYTES)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    return None if GENERATOR.encode() in head else "is not a report yolor wrote"


def write_report(request: ReportRequest, *, reporter: Reporter | None = None) -> ReportResult:
    """Gather the run at ``request.run`` and write its page (``RUN/report.html`` unless ``--output``)."""
    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    run = Path(request.run)
    folder = run.parent if run.is_file() else run
    path = Path(request.output) if request.output is not None else folder / REPORT_NAME
    guard_output(path, suffixes=(".html",), foreign=foreign_report, rewrite_own=True, overwrite=request.overwrite)
    page = gather(run, device=request.device, gallery=request.gallery, reporter=reporter)
    html = render(page).encode("utf-8")
    atomic_write(path, lambda stream: stream.write(html))
    return ReportResult(
        path=path,
        kind=page.kind,
        sections=[section.key for section in page.sections],
        size_bytes=len(html),
        seconds=time.perf_counter() - started,
        notes=page.notes,
    )


def report_at_end(run: Path, *, enabled: bool, device: str = "", reporter: Reporter | None = None) -> Path | None:
    """The report a command writes after its run (unless ``--no-report``): its path, or None with one
    warning when it cannot be written. Nothing here may fail the run it reports on."""
    if not enabled:
        return None
    reporter = reporter or SilentReporter()
    try:
        return write_report(ReportRequest(run=run, device=device), reporter=reporter).path
    except Exception as error:  # a report is an extra: its failure must not turn a finished run into an error
        reporter.warning(f"report.html not written: {first_line(error)}")
        return None
