"""``yolor dataset``: split, voc2yolo, prepare and synth."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from yolor_cli.console import RichReporter, markup, print_json, print_notes, stdout_console
from yolor_cli.engine.data.request import PrepareRequest, SplitRequest, SynthRequest, Voc2YoloRequest
from yolor_cli.options import JsonOption, request_command

if TYPE_CHECKING:
    from yolor_cli.engine.data.prepare import DatasetResult
    from yolor_cli.engine.data.skips import Skipped

app = typer.Typer(help="Prepare Pascal-VOC folders for training, or generate a demo dataset.", no_args_is_help=True)


def _shown(file: str, root: Path) -> str:
    """A path inside --root relative to it (shorter, and the same on every machine); others as given."""
    path = Path(file)
    return str(path.relative_to(root)) if path.is_absolute() and path.is_relative_to(root) else file


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _skipped_lines(skipped: list[Skipped], root: Path) -> list[str]:
    """One line per reason with its counts, then its files, one per line: a log can be searched for a
    file name, and 37 objects of one unknown class read as one reason, not 37 table rows."""
    from yolor_cli.engine.data.skips import group_skipped

    files = _count(len({item.file for item in skipped}), "file")
    lines = [f"Skipped ({files}, or objects in them; paths relative to {root}):"]
    for group in group_skipped(skipped):
        counts = _count(group.files, "file") + (f", {_count(group.objects, 'object')}" if group.objects else "")
        lines.append(f"  {group.reason}: {counts}")
        for item in group.items:
            specifics = item.detail or (_count(item.objects, "object") if item.objects else "")
            lines.append(f"    {_shown(item.file, root)}" + (f" ({specifics})" if specifics else ""))
    return lines


def _json_payload(result: DatasetResult) -> dict[str, Any]:
    from yolor_cli.engine.data.skips import group_skipped

    payload = asdict(result)
    payload["root"] = str(result.root)
    payload["written"] = [str(p) for p in result.written]
    payload["backups"] = [str(p) for p in result.backups]
    payload["skipped"] = [{"file": item.file, "reason": item.reason} for item in result.skipped]
    payload["skipped_by_reason"] = [
        {"reason": group.reason, "files": group.files, "objects": group.objects}
        for group in group_skipped(result.skipped)
    ]
    return payload


def _render(result: DatasetResult, json_output: bool) -> None:
    if json_output:
        print_json(_json_payload(result))
        return
    console = stdout_console()
    if result.images:
        table = Table(title="Images per split", title_justify="left")
        for name in result.images:
            table.add_column(name, justify="right")
        table.add_row(*(str(count) for count in result.images.values()))
        console.print(table)
    if result.classes:
        table = Table(title="Objects per class", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("class")
        table.add_column("objects", justify="right")
        for index, name in enumerate(result.classes):
            table.add_row(str(index), Text(name), str(result.objects_per_class.get(name, 0)))
        console.print(table)
        console.print(f"Background images (no usable object): {result.backgrounds}")
    if result.skipped:
        for line in _skipped_lines(result.skipped, result.root):
            console.print(line)
    else:
        console.print("Nothing was skipped.")
    print_notes(result.notes + [f"kept the previous version as {path}" for path in result.backups])


@app.command()
@request_command(SplitRequest)
def split(request: SplitRequest, json_output: JsonOption = False) -> None:
    """Write ImageSets/{train,val,test,trainval}.txt: disjoint, stratified by class, same result for a seed."""
    _render(request.run(RichReporter()), json_output)


@app.command()
@request_command(Voc2YoloRequest)
def voc2yolo(request: Voc2YoloRequest, json_output: JsonOption = False) -> None:
    """Write labels/<stem>.txt (class cx cy w h, normalised) and image lists from ImageSets."""
    _render(request.run(RichReporter()), json_output)


@app.command()
@request_command(PrepareRequest)
def prepare(request: PrepareRequest, json_output: JsonOption = False) -> None:
    """Split, convert and write data.yaml and classes.names: a VOC folder ready for [b]yolor train[/]."""
    result = request.run(RichReporter())
    _render(result, json_output)
    if not json_output:
        stdout_console().print(markup("Wrote [b]{}[/]", result.root / "data.yaml"))


@app.command()
@request_command(SynthRequest)
def synth(request: SynthRequest, json_output: JsonOption = False) -> None:
    """Generate a VOC dataset of simple shapes (circle, rectangle, triangle) for demos and tests."""
    result = request.run(RichReporter())
    if json_output:
        print_json(
            {
                "root": str(result.root),
                "images": result.images,
                "objects": result.objects,
                "background_images": result.background_images,
            }
        )
        return
    console = stdout_console()
    console.print(
        markup(
            "Generated {} images in [b]{}[/] ({} without objects).",
            result.images,
            result.root,
            result.background_images,
        )
    )
    console.print("Objects: " + ", ".join(f"{name} {count}" for name, count in result.objects.items()))
    console.print(markup("Next: [b]yolor dataset prepare --root {}[/]", result.root))
