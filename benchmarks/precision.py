"""fp32 against bf16 inference on this CPU: forward latency of yolor_csp_tiny and yolor_csp (random
weights, fused, batch 1, 640 px) as the predictor runs them, and mAP of a trained model on a data
split through the shared evaluator. Prints tables and writes JSON.

    python benchmarks/precision.py [--repeats 15] [--threads 2] [--weights PATH] [--data DATA_YAML]
                                   [--eval-img-size 320]

Latency modes: ``fp32``; ``bf16``, as ``yolor eval`` and ``yolor detect`` run it (model and input
cast to bf16, channels-last); ``bf16-autocast``, the alternative it was chosen over (fp32 weights,
``torch.autocast``, channels-last). The modes take turns within each repeat, so a busy machine slows
them alike. The default weights are the demo model (yolor_csp_tiny trained at 320 px), evaluated on
the demo's val split at 320.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from yolor_cli.engine.config import load_data_config
from yolor_cli.engine.evaluate.evaluator import evaluate_model
from yolor_cli.engine.infer.predictor import Predictor
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.darknet import build_model
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.runtime import InferencePrecision, cpu_bf16_feature

CFGS = ("yolor_csp_tiny", "yolor_csp")
IMG_SIZE = 640
MODES = ("fp32", "bf16", "bf16-autocast")
DEFAULT_WEIGHTS = Path("/tmp/m14/base/weights/best.pt")
DEFAULT_DATA = Path.home() / ".cache" / "yolor-cli" / "demo-shapes-v1" / "data.yaml"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "precision.json"
FP32 = InferencePrecision(torch.float32, "benchmark")
BF16 = InferencePrecision(torch.bfloat16, "benchmark")


def _runner(model: torch.nn.Module, mode: str, images: torch.Tensor):
    """A no-argument forward of ``model`` on ``images`` (uint8) in ``mode``, the input prepared as the
    predictor prepares it."""
    predictor = Predictor(model, precision=BF16 if mode == "bf16" else FP32)
    batch = images.float() / 255.0
    if mode == "bf16":
        batch = batch.to(torch.bfloat16, memory_format=torch.channels_last)
    if mode == "bf16-autocast":
        predictor.model.to(memory_format=torch.channels_last)
        batch = batch.contiguous(memory_format=torch.channels_last)

    def run() -> object:
        context = torch.autocast("cpu", dtype=torch.bfloat16) if mode == "bf16-autocast" else contextlib.nullcontext()
        with context:
            return predictor.model(batch)

    return run


def latency(cfg: str, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per forward in each mode, the modes interleaved."""
    torch.manual_seed(0)
    model = build_model(load_cfg(cfg)).eval()
    images = torch.randint(0, 256, (1, 3, IMG_SIZE, IMG_SIZE), generator=torch.Generator().manual_seed(0))
    runs = {mode: _runner(model, mode, images.to(torch.uint8)) for mode in MODES}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    with torch.inference_mode():
        for _ in range(warmup):
            for run in runs.values():
                run()
        for _ in range(repeats):
            for mode, run in runs.items():
                start = time.perf_counter()
                run()
                times[mode].append(time.perf_counter() - start)
    return {mode: statistics.median(values) for mode, values in times.items()}


def accuracy(weights: Path, data: Path, img_size: int) -> list[dict[str, object]]:
    loaded = load_model(weights=weights)
    data_config = load_data_config(data)
    rows = []
    for precision in (FP32, BF16):
        result, _ = evaluate_model(loaded.model, data_config, img_size=img_size, device="cpu", precision=precision)
        rows.append(
            {
                "precision": precision.name,
                "images": result.images,
                "instances": result.instances,
                "map": result.metrics.map,
                "map50": result.metrics.map50,
                "precision_metric": result.metrics.precision,
                "recall": result.metrics.recall,
                "inference_ms": result.speed_ms["inference"],
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--eval-img-size", type=int, default=320)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    feature = cpu_bf16_feature()
    if feature is None:
        print("this CPU has no bf16 hardware: bf16 is emulated and slower than fp32 here", file=sys.stderr)

    latency_rows = []
    for cfg in CFGS:
        medians = latency(cfg, args.repeats)
        row = {"cfg": cfg, **{f"{mode}_ms": 1000 * seconds for mode, seconds in medians.items()}}
        row["bf16_speedup"] = medians["fp32"] / medians["bf16"]
        row["autocast_speedup"] = medians["fp32"] / medians["bf16-autocast"]
        latency_rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    accuracy_rows = accuracy(args.weights, args.data, args.eval_img_size) if args.weights.is_file() else []
    if not accuracy_rows:
        print(f"{args.weights} not found: mAP skipped", file=sys.stderr)

    console = Console()
    table = Table(
        title=f"Forward latency, {IMG_SIZE} px, batch 1, fused, median of {args.repeats} (ms), "
        f"{args.threads} threads, CPU bf16: {feature or 'none'}, torch {torch.__version__}"
    )
    for column in ("cfg", "fp32", "bf16", "bf16 autocast", "bf16 speed-up", "autocast speed-up"):
        table.add_column(column, justify="left" if column == "cfg" else "right")
    for row in latency_rows:
        table.add_row(
            row["cfg"],
            f"{row['fp32_ms']:.1f}",
            f"{row['bf16_ms']:.1f}",
            f"{row['bf16-autocast_ms']:.1f}",
            f"{row['bf16_speedup']:.2f}x",
            f"{row['autocast_speedup']:.2f}x",
        )
    console.print(table)
    if accuracy_rows:
        scores = Table(title=f"{args.weights} on {args.data} (val), {args.eval_img_size} px, shared evaluator")
        for column in ("precision", "mAP50-95", "mAP50", "P", "R", "inference ms/img"):
            scores.add_column(column, justify="left" if column == "precision" else "right")
        for row in accuracy_rows:
            scores.add_row(
                str(row["precision"]),
                f"{row['map']:.4f}",
                f"{row['map50']:.4f}",
                f"{row['precision_metric']:.3f}",
                f"{row['recall']:.3f}",
                f"{row['inference_ms']:.1f}",
            )
        console.print(scores)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "precision",
                "threads": args.threads,
                "repeats": args.repeats,
                "img_size": IMG_SIZE,
                "torch": torch.__version__,
                "machine": platform.processor() or platform.machine(),
                "cpu_bf16_feature": feature,
                "latency": latency_rows,
                "weights": str(args.weights),
                "data": str(args.data),
                "eval_img_size": args.eval_img_size,
                "accuracy": accuracy_rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
