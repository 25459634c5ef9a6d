"""``yolor report``: one self-contained HTML page of a run (train, prune auto, benchmark or eval)."""

from __future__ import annotations

from yolor_cli.console import RichReporter, markup, print_json, print_notes, stdout_console
from yolor_cli.engine.report.request import ReportRequest
from yolor_cli.options import JsonOption, request_command


@request_command(ReportRequest)
def report_command(request: ReportRequest, json_output: JsonOption = False) -> None:
    """Write RUN/report.html: the run's options and data, curves, per-class table, error breakdown and the
    worst images, every picture inline (no network; opens from the file in any browser)."""
    from yolor_cli.engine.report.run import write_report

    result = write_report(request, reporter=RichReporter())
    print_notes(result.notes)
    if json_output:
        print_json(
            {
                "path": str(result.path),
                "kind": result.kind,
                "sections": result.sections,
                "size_bytes": result.size_bytes,
                "seconds": round(result.seconds, 2),
            }
        )
        return
    stdout_console().print(
        markup("Report of the {} run: [b]{}[/] ({})", result.kind, result.path, f"{result.size_bytes / 2**20:.1f} MB")
    )
