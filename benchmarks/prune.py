"""Pruning on yolor_csp (nc=1, random weights) on CPU: wall time of the whole commands
``yolor prune layers --upto 60 --amount 0.9`` and ``yolor prune global --target-macs 0.5`` (load,
graph, prune, report, save; latency measurement off), then the pruned models' measured latency
saving against their MACs saving. Prints a table and writes JSON.

With ``--scan`` it also times ``yolor prune sensitivity --unit conv`` (CPU, ``--scan-amounts``) on
``--scan-weights`` / ``--scan-data``, by default yolor_csp_tiny with fresh weights on a generated
shapes set of 48 val images (offline). ``--scan-only`` times only the scan and writes its JSON beside
``--output`` as ``NAME_scan.json``, so a scan alone never replaces the commands' figures.

``--auto WORK`` then runs ``prune_auto.py`` on the demo (its input trained first, in WORK): the
``yolor prune auto --target-macs 0.5`` table against the unpruned reference, with and without
distillation (about half an hour on a 2-core CPU).

    python benchmarks/prune.py [--img-size 640] [--repeats 5] [--threads 2] [--auto WORK]
    python benchmarks/prune.py --scan-only [--scan-weights best.pt --scan-data data.yaml] [--scan-img-size 320]
"""

from __future__ import annotations

import argparse
import json
import os
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


DEFAULT_SCAN_AMOUNTS = "0.25,0.5,0.75"
SCAN_VAL_IMAGES = 48


def time_scan(args: argparse.Namespace, folder: Path) -> dict:
    """One ``yolor prune sensitivity --unit conv`` run in a subprocess (imports included in ``wall_s``;
    ``seconds`` is the command's own figure: load, preload, scan, files)."""
    weights, data = args.scan_weights, args.scan_data
    if weights is None:
        torch.manual_seed(0)
        weights = Path(folder) / "tiny.pt"
        model = build_model(load_cfg("yolor_csp_tiny"), nc=3)
        save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict()), weights)
    if data is None:
        from yolor_cli.engine.data.prepare import prepare_dataset
        from yolor_cli.engine.data.synth import synthesize

        root = Path(folder) / "shapes"
        synthesize(root, images=2 * SCAN_VAL_IMAGES, seed=0)
        prepare_dataset(root, val=0.5, test=0.0, seed=0)
        data = root / "data.yaml"
    command = [
        sys.executable,
        "-m",
        "yolor_cli",
        "prune",
        "sensitivity",
        "-w",
        str(weights),
        "--data",
        str(data),
        "--img-size",
        str(args.scan_img_size),
        "--amounts",
        args.scan_amounts,
        "--unit",
        "conv",
        "--device",
        "cpu",
        "--output",
        str(Path(folder) / "scan"),
        "--json",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    wall = time.perf_counter() - start
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "weights": str(args.scan_weights) if args.scan_weights else "yolor_csp_tiny (fresh weights)",
        "img_size": args.scan_img_size,
        "amounts": args.scan_amounts,
        "images": report["images"],
        "units": len({trial["unit"] for trial in report["trials"]} | {s["unit"] for s in report["skipped"]}),
        "trials": len(report["trials"]),
        "seconds": report["seconds"],
        "wall_s": wall,
        "base_map": report["base"]["map"],
        "safest": report["safest"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img-size", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--scan", action="store_true", help="also time yolor prune sensitivity")
    parser.add_argument("--scan-only", action="store_true", help="time only yolor prune sensitivity")
    parser.add_argument("--scan-weights", type=Path, help="checkpoint to scan (default: fresh yolor_csp_tiny)")
    parser.add_argument("--scan-data", type=Path, help="data.yaml to scan on (default: generated shapes)")
    parser.add_argument("--scan-img-size", type=int, default=320)
    parser.add_argument("--scan-amounts", default=DEFAULT_SCAN_AMOUNTS)
    parser.add_argument("--auto", type=Path, metavar="WORK", help="also run prune_auto.py on the demo in WORK")
    args = parser.parse_args()
    if args.auto is not None:  # first, so its subprocesses have the threads to themselves
        script = Path(__file__).with_name("prune_auto.py")
        subprocess.run([sys.executable, str(script), "--work", str(args.auto)], check=True)
    torch.set_num_threads(args.threads)
    if args.scan_only:
        with tempfile.TemporaryDirectory() as folder:
            scan = time_scan(args, Path(folder))
        _print_scan(scan, args.threads)
        _write(args, {"scan": scan}, args.output.with_name(f"{args.output.stem}_scan.json"))
        return
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
    results: dict = {"cases": rows}
    if args.scan:
        with tempfile.TemporaryDirectory() as folder:
            results["scan"] = time_scan(args, Path(folder))
        _print_scan(results["scan"], args.threads)
    _write(args, results, args.output)


def _print_scan(scan: dict, threads: int) -> None:
    Console(width=160).print(
        f"prune sensitivity --unit conv --amounts {scan['amounts']} on {scan['weights']} at {scan['img_size']} px, "
        f"{scan['images']} val images, CPU {threads} threads: {scan['units']} units, {scan['trials']} trials in "
        f"{scan['seconds']:.1f} s ({scan['wall_s']:.1f} s with the process start); safest: {', '.join(scan['safest'])}"
    )


def _write(args: argparse.Namespace, results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "threads": args.threads,
                **({"img_size": args.img_size} if "cases" in results else {}),
                **results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
