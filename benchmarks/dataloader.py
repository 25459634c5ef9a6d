"""Training-loader throughput (images/s, mosaic + full augmentation) and peak memory, at 320 and
640 px with 0 and 2 workers, on a generated dataset. Prints a table and writes JSON.

    python benchmarks/dataloader.py [--images 200] [--batches 20] [--official-repo PATH]

Each case runs in a fresh process so its peak memory (RSS of the process and its workers) is its
own. ``--official-repo`` points at a checkout of the official YOLOR code (never part of this
project); its ``LoadImagesAndLabels`` then runs on the same list, sizes and hyperparameters.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

CASES = [(320, 0), (320, 2), (640, 0), (640, 2)]  # (image size, workers)
BATCH_SIZE = 16
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "dataloader.json"


def _peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024  # ru_maxrss is in KiB on Linux


def _time_batches(loader, batches: int, windows: int = 3) -> float:
    """Median images/s over several windows: on 2 cores single windows swing by 15 %."""
    iterator = iter(loader)
    next(iterator)  # warm-up: worker start, first reads
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        rates.append(batches * BATCH_SIZE / (time.perf_counter() - start))
    return statistics.median(rates)


def run_ours(data_yaml: Path, img_size: int, workers: int, batches: int) -> dict:
    from yolor_cli.engine.config import load_data_config, load_hyp
    from yolor_cli.engine.data.loader import build_dataloader, build_dataset

    dataset = build_dataset(
        load_data_config(data_yaml), "train", img_size=img_size, batch_size=BATCH_SIZE, hyp=load_hyp(), augment=True
    )
    loader = build_dataloader(dataset, batch_size=BATCH_SIZE, workers=workers, shuffle=True)
    return {"images_per_s": _time_batches(_forever(loader), batches), "peak_mb": _peak_mb()}


def run_official(repo: Path, list_file: Path, img_size: int, workers: int, batches: int) -> dict:
    import numpy as np
    import torch
    import yaml

    np.int = int  # the official code uses np.int, removed in numpy 1.24 (patched here, in memory only)
    sys.path.insert(0, str(repo))
    from utils.datasets import LoadImagesAndLabels  # type: ignore[import-not-found]

    # Its label cache is a torch.save pickle that torch >= 2.6 refuses to load back: start without it.
    (list_file.parent / "labels.cache3").unlink(missing_ok=True)
    hyp = yaml.safe_load((repo / "data" / "hyp.scratch.640.yaml").read_text())
    dataset = LoadImagesAndLabels(str(list_file), img_size, BATCH_SIZE, augment=True, hyp=hyp)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=BATCH_SIZE, num_workers=workers, shuffle=True, collate_fn=LoadImagesAndLabels.collate_fn
    )
    return {"images_per_s": _time_batches(_forever(loader), batches), "peak_mb": _peak_mb()}


def _forever(loader):
    while True:
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--official-repo", type=Path)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--case", nargs=4, metavar=("WHO", "DATA", "SIZE", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:  # child process: one measurement, printed as JSON
        who, data, size, workers = args.case
        if who == "ours":
            result = run_ours(Path(data), int(size), int(workers), args.batches)
        else:
            result = run_official(args.official_repo, Path(data), int(size), int(workers), args.batches)
        print(json.dumps(result))
        return

    from yolor_cli.engine.data.prepare import prepare_dataset
    from yolor_cli.engine.data.synth import synthesize

    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp) / "shapes"
        synthesize(root, images=args.images, seed=0)
        prepare_dataset(root, val=0.0, test=0.0)
        rows = []
        for img_size, workers in CASES:
            row = {"img_size": img_size, "workers": workers, "batch": BATCH_SIZE}
            contenders = [("ours", root / "data.yaml")]
            if args.official_repo:
                contenders.append(("official", root / "train.txt"))
            for who, data in contenders:
                command = [
                    sys.executable,
                    __file__,
                    "--batches",
                    str(args.batches),
                    "--case",
                    who,
                    str(data),
                    str(img_size),
                    str(workers),
                ]
                if args.official_repo:
                    command[2:2] = ["--official-repo", str(args.official_repo)]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                measured = json.loads(done.stdout.strip().splitlines()[-1])
                row[f"{who}_images_per_s"] = measured["images_per_s"]
                row[f"{who}_peak_mb"] = measured["peak_mb"]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)

    columns = [c for c in rows[0] if c != "batch"]
    table = Table(title=f"Training loader (mosaic, batch {BATCH_SIZE}, {args.images} generated images)")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(f"{row[c]:.1f}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    Console().print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "dataloader",
                "batch": BATCH_SIZE,
                "images": args.images,
                "batches": args.batches,
                "machine": platform.machine(),
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
