"""Pruning on yolor_csp (nc=1, random weights) on CPU: wall time of the whole commands
``yolor prune layers --upto 60 --amount 0.9`` and ``yolor prune global --target-macs 0.5`` (load,
graph, prune, report, save; latency measurement off), then the pruned models' measured latency
saving against their MACs saving. Prints a table and writes JSON.

    python benchmarks/prune.py [--img-size 640] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.prune.run import latency_ms

CASES = {
    "layers --upto 60 --amount 0.9": ["layers", "--upto", "60", "--amount", "0.9"],
    "global --target-macs 0.5": ["global", "--target-macs", "0.5"],
}
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "prune.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img-size", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "yolor_csp_nc1.pt"
        torch.manual_seed(0)
        model = build_model(load_cfg("yolor_csp"), nc=1)
        save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=["item"]), source)
        base_ms = latency_ms(model, args.img_size, args.repeats)
        for label, arguments in CASES.items():
            output = Path(folder) / f"{arguments[0]}.pt"
            command = [
                sys.executable,
                "-m",
                "yolor_cli",
                "prune",
                *arguments,
                "-w",
                str(source),
                "--output",
                str(output),
                "--img-size",
                str(args.img_size),
                "--no-latency",
                "--json",
            ]
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            wall = time.perf_counter() - start
            report = json.loads(done.stdout.strip().splitlines()[-1])
            pruned_ms = latency_ms(load_model(weights=output).model.eval(), args.img_size, args.repeats)
            macs_saving = 1 - report["macs_after"] / report["macs_before"]
            latency_saving = 1 - pruned_ms / base_ms
            rows.append(
                {
                    "case": label,
                    "wall_s": wall,
                    "params_before": report["params_before"],
                    "params_after": report["params_after"],
                    "macs_before": report["macs_before"],
                    "macs_after": report["macs_after"],
                    "latency_ms_before": base_ms,
                    "latency_ms_after": pruned_ms,
                    "macs_saving": macs_saving,
                    "latency_saving": latency_saving,
                    "saving_ratio": latency_saving / macs_saving,
                }
            )
    table = Table(title=f"yolor_csp nc=1 pruning on CPU ({args.threads} threads, {args.img_size} px, batch 1, fused)")
    for column in ("case", "command s", "params", "MACs saving", "latency ms", "latency saving", "latency/MACs"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row["case"],
            f"{row['wall_s']:.1f}",
            f"{row['params_before']:,} -> {row['params_after']:,}",
            f"{row['macs_saving']:.1%}",
            f"{row['latency_ms_before']:.0f} -> {row['latency_ms_after']:.0f}",
            f"{row['latency_saving']:.1%}",
            f"{row['saving_ratio']:.2f}",
        )
    Console(width=160).print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "threads": args.threads,
                "img_size": args.img_size,
                "cases": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
