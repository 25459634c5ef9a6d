"""How much of a freshly pruned model's mAP is only stale BatchNorm statistics?

The trained model is cut by ``prune global --target-macs`` (L1) to each target, then scored on the val
split as it is, and again after :func:`~yolor_cli.engine.prune.pruning.recalibrate_batch_norms` on 1 and
on 4 batches of 16 training images (resized to the square, no augmentation). The weights are the same
in the three columns. Prints a table and writes JSON.

    python benchmarks/prune_bn.py --weights best.pt --data data.yaml [--img-size 320] [--targets 0.8,0.6]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolor_cli.engine.config import load_data_config
from yolor_cli.engine.evaluate.evaluator import evaluate_model
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.prune.pruning import prune_global, rebuild, recalibrate_batch_norms
from yolor_cli.engine.prune.request import GlobalTarget

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "prune_bn.json"
BATCH = 16


def training_batches(data_yaml: Path, size: int, count: int) -> list[torch.Tensor]:
    data = load_data_config(data_yaml)
    listing = Path(data.train[0])
    paths = [listing.parent / line.strip() for line in listing.read_text().splitlines() if line.strip()]
    images = []
    for path in paths[: count * BATCH]:
        image = cv2.resize(cv2.imread(str(path))[:, :, ::-1], (size, size))
        images.append(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255)
    return list(torch.stack(images).split(BATCH))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--targets", default="0.8,0.6")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    data = load_data_config(args.data)
    model = load_model(weights=args.weights).model.eval()
    batches = training_batches(args.data, args.img_size, 4)

    def score(candidate: torch.nn.Module) -> float:
        result, _ = evaluate_model(candidate, data, task="val", img_size=args.img_size, batch_size=BATCH)
        return result.metrics.map

    def recalibrated(candidate: torch.nn.Module, count: int) -> torch.nn.Module:
        copied = copy.deepcopy(candidate)
        recalibrate_batch_norms(copied, batches[:count])
        return copied

    rows = []
    for target in [1.0, *(float(t) for t in args.targets.split(","))]:
        cut = model if target == 1.0 else rebuild(prune_global(copy.deepcopy(model), GlobalTarget(target_macs=target)))
        cut.eval()
        rows.append(
            {
                "target_macs": target,
                "map": score(cut),
                "map_recalibrated_1": score(recalibrated(cut, 1)),
                "map_recalibrated_4": score(recalibrated(cut, 4)),
            }
        )
    table = Table(title=f"mAP50-95 of {args.weights} cut by prune global, BatchNorm statistics as cut or re-estimated")
    for column in ("MACs kept", "as cut", "1 batch", "4 batches"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row['target_macs']:g}",
            *(f"{row[key]:.4f}" for key in ("map", "map_recalibrated_1", "map_recalibrated_4")),
        )
    Console(width=160).print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"weights": str(args.weights), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
