"""Training from scratch, side by side with Ultralytics, on a small set made from real photographs.

Each case trains for the same epochs at the same image size on the same split of the photo set of
``photo_data.py`` (240 images, 5 classes; 168 train / 48 val / 24 test): ``yolor train`` with no
other options (the defaults a new user gets), ``yolor train`` with the hand-picked Adam flags,
``yolor_csp_n`` at YOLOv8n's size, and YOLOv8n from scratch with Ultralytics' defaults. Ultralytics
runs from a Python of a scratch venv given by ``--ultralytics-python`` (never a dependency of this
project); it reads the same images and the labels ``yolor dataset prepare`` wrote. Each tool's mAP
is its own validation of its final model on the val split (ours: COCO's 101-point mAP; Ultralytics':
its COCO-style AP). Prints a table and writes JSON.

    python benchmarks/peer_train.py --work /tmp/peer [--epochs 30] [--img-size 320]
        [--ultralytics-python /tmp/ulvenv/bin/python] [--skimage-data DIR] [--cases auto,adam,n,yolov8n,no-close-mosaic]
        [--variant objects|clutter]

``--ultralytics-python`` is the Python of a venv with Ultralytics installed; its ``yolo`` beside it runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from photo_data import VARIANTS, make_photo_voc  # the sibling script (benchmarks run from benchmarks/)
from rich.console import Console
from rich.table import Table

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "peer_train.json"
ADAM_FLAGS = ["--adam", "--hyp", "demo", "--nominal-batch-size", "16"]  # the hand-picked flags
OURS = {  # case -> extra options of `yolor train`
    "auto": ["--cfg", "yolor_csp_tiny"],
    "adam": ["--cfg", "yolor_csp_tiny", *ADAM_FLAGS],
    "n": ["--cfg", "yolor_csp_n"],
    "no-close-mosaic": ["--cfg", "yolor_csp_tiny", "--close-mosaic", "0"],  # what --close-mosaic 10 adds
}


def prepare(work: Path, images: int, skimage_data: Path | None, variant: str) -> Path:
    voc = work / "voc"
    if not (voc / "data.yaml").exists():
        make_photo_voc(voc, images=images, seed=0, data=skimage_data, variant=variant)
        yolor("dataset", "prepare", "--root", str(voc), "--val", "0.2", "--test", "0.1", "--seed", "0")
    return voc


def yolor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "yolor_cli", *args], capture_output=True, text=True, check=True)


def run_ours(case: str, voc: Path, work: Path, epochs: int, img_size: int) -> dict:
    start = time.perf_counter()
    done = yolor("train", "--data", str(voc / "data.yaml"), *OURS[case], "--epochs", str(epochs),
                 "--img-size", str(img_size), "--project", str(work / "runs"), "--name", case, "--exist-ok",
                 "--json")  # fmt: skip
    result = json.loads(done.stdout)
    header = next((line for line in done.stderr.splitlines() if line.startswith("optimizer")), "")
    return {"map50": result["map50"], "map": result["map"], "seconds": time.perf_counter() - start, "recipe": header}


def ultralytics_layout(voc: Path, work: Path) -> Path:
    """Ultralytics finds labels by swapping /images/ for /labels/: link the same files that way."""
    root = work / "ultralytics"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    for split in ("train", "val"):
        lines = []
        for line in (voc / f"{split}.txt").read_text().split():
            image = Path(line)
            for folder, source in (("images", image), ("labels", voc / "labels" / f"{image.stem}.txt")):
                target = root / folder / source.name
                if not target.exists():
                    target.symlink_to(source)
            lines.append(str(root / "images" / image.name))
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    names = yolor_names(voc)
    (root / "data.yaml").write_text(
        f"path: {root}\ntrain: train.txt\nval: val.txt\nnames:\n"
        + "".join(f"  {i}: {n}\n" for i, n in enumerate(names))
    )
    return root / "data.yaml"


def yolor_names(voc: Path) -> list[str]:
    return [line.strip() for line in (voc / "classes.names").read_text().splitlines() if line.strip()]


def run_yolov8n(python: Path, data: Path, work: Path, epochs: int, img_size: int) -> dict:
    start = time.perf_counter()
    command = [str(python.parent / "yolo"), "detect", "train", "model=yolov8n.yaml", f"data={data}",
               f"epochs={epochs}", f"imgsz={img_size}", "pretrained=False", "device=cpu", "seed=0", "plots=False",
               f"project={work / 'ultralytics-runs'}", "name=yolov8n", "exist_ok=True"]  # fmt: skip
    # Offline: nothing may be downloaded; Ultralytics then skips its font and update checks.
    subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, "YOLO_OFFLINE": "1"})
    with (work / "ultralytics-runs" / "yolov8n" / "results.csv").open(newline="") as stream:
        last = list(csv.DictReader(stream))[-1]
    row = {key.strip(): value for key, value in last.items()}
    return {"map50": float(row["metrics/mAP50(B)"]), "map": float(row["metrics/mAP50-95(B)"]),
            "seconds": time.perf_counter() - start, "recipe": "Ultralytics defaults, from scratch"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--cases", default="auto,adam,n,yolov8n")
    parser.add_argument("--ultralytics-python", type=Path)
    parser.add_argument("--skimage-data", type=Path)
    parser.add_argument("--variant", choices=VARIANTS, default="objects", help="which photo set (photo_data.py)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    voc = prepare(args.work, args.images, args.skimage_data, args.variant)
    rows = {}
    for case in args.cases.split(","):
        if case == "yolov8n":
            if args.ultralytics_python is None:
                print("yolov8n skipped: pass --ultralytics-python", file=sys.stderr)
                continue
            data = ultralytics_layout(voc, args.work)
            rows[case] = run_yolov8n(args.ultralytics_python, data, args.work, args.epochs, args.img_size)
        else:
            rows[case] = run_ours(case, voc, args.work, args.epochs, args.img_size)
        print(json.dumps({case: rows[case]}), file=sys.stderr)
    train, val = (len((voc / f"{split}.txt").read_text().split()) for split in ("train", "val"))
    table = Table(
        title=f"From scratch, {args.epochs} epochs at {args.img_size} px, "
        f"photo set '{args.variant}' ({train} train / {val} val)"
    )
    for header in ("case", "mAP50", "mAP50-95", "wall s", "recipe"):
        table.add_column(header, justify="left" if header in ("case", "recipe") else "right")
    for case, row in rows.items():
        table.add_row(case, f"{row['map50']:.3f}", f"{row['map']:.3f}", f"{row['seconds']:.0f}", row["recipe"])
    Console().print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    summary = {"variant": args.variant, "epochs": args.epochs, "img_size": args.img_size, "rows": rows}
    args.output.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
