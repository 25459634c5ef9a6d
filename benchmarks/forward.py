"""Eval-mode forward latency on this CPU: yolor_csp at 320 and 640, yolor_csp_tiny at 320,
batch 1 and 8, unfused and fused. Prints a table and writes JSON.

    python benchmarks/forward.py [--repeats 5] [--threads 2] [--official-repo PATH]

``--official-repo`` points at a checkout of the official YOLOR code (branch main, never part of
this project); its ``models.models.Darknet`` is then timed on the same cfg, input and threads in
the same run, for a side-by-side figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from yolor_cli.engine.model.bundled import resolve_cfg_path
from yolor_cli.engine.model.darknet import build_model, read_cfg

CASES = [  # (cfg, image size, batch)
    ("yolor_csp", 320, 1),
    ("yolor_csp", 320, 8),
    ("yolor_csp", 640, 1),
    ("yolor_csp", 640, 8),
    ("yolor_csp_tiny", 320, 1),
    ("yolor_csp_tiny", 320, 8),
]
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "forward.json"


def median_seconds(run: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def official_model(repo: Path, cfg_path: Path, img_size: int) -> torch.nn.Module:
    sys.path.insert(0, str(repo))
    from models.models import Darknet  # type: ignore[import-not-found]  # the official code, outside this repo

    return Darknet(str(cfg_path), (img_size, img_size)).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--official-repo", type=Path)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for cfg_name, img_size, batch in CASES:
        cfg_path = resolve_cfg_path(cfg_name)
        torch.manual_seed(0)
        model = build_model(read_cfg(cfg_path)).eval()
        x = torch.rand(batch, 3, img_size, img_size)
        row = {"cfg": cfg_name, "img_size": img_size, "batch": batch}
        with torch.inference_mode():
            row["unfused_s"] = median_seconds(lambda model=model, x=x: model(x), args.repeats)
            model.fuse()
            row["fused_s"] = median_seconds(lambda model=model, x=x: model(x), args.repeats)
            if args.official_repo:
                official = official_model(args.official_repo, cfg_path, img_size)
                row["official_s"] = median_seconds(lambda official=official, x=x: official(x), args.repeats)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)

    table = Table(
        title=f"Eval forward latency, median of {args.repeats} (s), {args.threads} threads, torch {torch.__version__}"
    )
    columns = ["cfg", "img_size", "batch", "unfused_s", "fused_s"] + (["official_s"] if args.official_repo else [])
    for column in columns:
        table.add_column(column, justify="left" if column == "cfg" else "right")
    for row in rows:
        table.add_row(*(f"{row[c]:.3f}" if c.endswith("_s") else str(row[c]) for c in columns))
    Console().print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "forward",
                "threads": args.threads,
                "repeats": args.repeats,
                "torch": torch.__version__,
                "machine": platform.processor() or platform.machine(),
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
