"""``yolor info``: layers, parameters and GFLOPs of a cfg or checkpoint."""

from __future__ import annotations

from dataclasses import asdict

from rich.table import Table
from rich.text import Text

from yolor_cli.console import markup, print_json, print_notes, stdout_console
from yolor_cli.engine.model.request import InfoRequest
from yolor_cli.options import JsonOption, request_command


@request_command(InfoRequest)
def info(request: InfoRequest, json_output: JsonOption = False) -> None:
    """Show a model's layers, parameter count and GFLOPs.

    [b]--weights[/] alone works for yolor checkpoints; official YOLOR checkpoints also need [b]--cfg[/].
    """
    from yolor_cli.engine.model.loading import load_model
    from yolor_cli.engine.model.summary import summarize

    loaded = load_model(cfg=request.cfg, weights=request.weights, nc=request.nc, trust_pickle=request.trust_pickle)
    summary = summarize(loaded.model, request.img_size)
    print_notes(loaded.notes)
    if json_output:
        print_json(
            {
                "params": summary.params,
                "gflops": round(summary.gflops, 3),
                "layers": summary.layers,
                "nc": summary.nc,
                "img_size": summary.img_size,
                "strides": summary.strides,
                "names": loaded.names,
                "cfg": loaded.model.cfg.source,
                "weights": str(request.weights) if request.weights else None,
                "per_layer": [asdict(row) for row in summary.rows],
            }
        )
        return
    table = Table(title=Text(str(loaded.model.cfg.source)), title_justify="left")
    for column, justify in (
        ("#", "right"),
        ("type", "left"),
        ("from", "left"),
        ("out ch", "right"),
        ("params", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in summary.rows:
        table.add_row(str(row.index), Text(row.type), Text(row.sources), str(row.channels), f"{row.params:,}")
    console = stdout_console()
    console.print(table)
    totals = Table.grid(padding=(0, 2))
    totals.add_row(markup("[b]params[/]"), f"{summary.params:,}")
    totals.add_row(markup("[b]GFLOPs[/] @{}", request.img_size), f"{summary.gflops:.2f}")
    totals.add_row(markup("[b]layers[/]"), str(summary.layers))
    totals.add_row(
        markup("[b]classes[/]"), Text(str(summary.nc) + (f" ({', '.join(loaded.names)})" if loaded.names else ""))
    )
    totals.add_row(markup("[b]strides[/]"), ", ".join(f"{s:g}" for s in summary.strides))
    console.print(totals)
