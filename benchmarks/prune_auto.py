"""``yolor prune auto`` against its fair reference, on the demo data or any trained model.

The reference is the unpruned model trained as many extra epochs as a prune auto run spends
(``steps x epochs-per-step + final-epochs``): a pruned model fine-tuned for 22 epochs must be
compared with the unpruned one trained 22 epochs more, not with where it started. Without
``--weights`` the input is trained first, as ``yolor train`` does on the built-in demo data.
Each case is the real command in a subprocess with ``--json``; its wall time includes imports.
The latency ratio is the latency saving over the MACs saving (1.0: the model is as much faster as
it is smaller). Prints a table and writes JSON.

    python benchmarks/prune_auto.py --work /tmp/auto [--weights W --data D] [--img-size 320]
        [--cases distill,no-distill,sensitivity] [--steps 4 --epochs-per-step 3 --final-epochs 10]
        [--max-drop 0.01] [--output results/prune_auto.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "prune_auto.json"
CASES = {  # case -> extra options of `yolor prune auto`
    "distill": [],
    "no-distill": ["--no-distill"],
    "sensitivity": ["--allocate", "sensitivity"],
    "sensitivity-no-distill": ["--allocate", "sensitivity", "--no-distill"],
}


def yolor(*args: str) -> tuple[dict, float]:
    """One ``yolor ... --json`` run: its JSON object and its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "yolor_cli", *args, "--json"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"yolor {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), time.perf_counter() - start


def train_input(work: Path) -> tuple[Path, Path, float, dict]:
    """The demo's trained model, as ``yolor train`` with no options makes it."""
    result, seconds = yolor("train", "--project", str(work), "--name", "input", "--exist-ok")
    run = work / "input"
    data = Path(yaml.safe_load((run / "opt.yaml").read_text())["data"])
    return run / "weights" / "best.pt", data, seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--weights", type=Path, help="trained input (default: train the demo first)")
    parser.add_argument("--data", type=Path, help="its data.yaml (with --weights)")
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--target-macs", default="0.5")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--epochs-per-step", type=int, default=3)
    parser.add_argument("--final-epochs", type=int, default=10)
    parser.add_argument("--max-drop", help="prune auto's --max-drop (default: the command's)")
    parser.add_argument("--cases", default="distill,no-distill")
    parser.add_argument("--no-reference", action="store_true", help="reuse work/reference from an earlier run")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    if (args.weights is None) != (args.data is None):
        raise SystemExit("give --weights and --data together, or neither (the demo)")
    args.work.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    if args.weights is None:
        weights, data, seconds, trained = train_input(args.work)
        rows["input (yolor train)"] = {"map50": trained["map50"], "map": trained["map"], "seconds": seconds}
    else:
        weights, data = args.weights, args.data
    extra_epochs = args.steps * args.epochs_per_step + args.final_epochs
    common = ["--data", str(data), "--img-size", str(args.img_size)]
    reference_json = args.work / "reference.json"
    if args.no_reference and reference_json.exists():
        rows["reference"] = json.loads(reference_json.read_text())
    else:
        result, seconds = yolor(
            "train", "--weights", str(weights), *common, "--epochs", str(extra_epochs),
            "--project", str(args.work), "--name", "reference", "--exist-ok",
        )  # fmt: skip
        rows["reference"] = {"map50": result["map50"], "map": result["map"], "seconds": seconds}
        reference_json.write_text(json.dumps(rows["reference"]))
    print(json.dumps({"reference": rows["reference"]}), file=sys.stderr)
    for case in args.cases.split(","):
        options = [
            "prune", "auto", "--weights", str(weights), *common, "--target-macs", args.target_macs,
            "--steps", str(args.steps), "--epochs-per-step", str(args.epochs_per_step),
            "--final-epochs", str(args.final_epochs), "--project", str(args.work / "runs"), "--name", case,
            *(["--max-drop", args.max_drop] if args.max_drop else []), *CASES[case],
        ]  # fmt: skip
        try:
            result, seconds = yolor(*options)
        except SystemExit as failed:  # e.g. the guard refusing step 1: a result of its own, kept in the table
            rows[case] = {"error": str(failed).splitlines()[-2:]}
        else:
            rows[case] = {**result, "seconds": seconds}
            rows[case].pop("steps")
        print(json.dumps({case: rows[case]}), file=sys.stderr)
    reference = rows["reference"]["map"]
    table = Table(
        title=f"prune auto --target-macs {args.target_macs} at {args.img_size} px ({args.steps} steps x "
        f"{args.epochs_per_step} epochs + {args.final_epochs}; reference: +{extra_epochs} epochs unpruned)"
    )
    for header in ("case", "params", "GMACs", "latency ms", "latency/MACs saving", "mAP50", "mAP50-95",
                   "of reference", "wall s"):  # fmt: skip
        table.add_column(header, justify="left" if header == "case" else "right")
    for case, row in rows.items():
        if "error" in row:
            table.add_row(case, "failed: " + " ".join(row["error"]), *[""] * 7)
        elif "macs_after" in row:
            macs_saving = 1 - row["macs_after"] / row["macs_before"]
            latency_saving = 1 - row["latency_ms_after"] / row["latency_ms_before"]
            row["latency_ratio"] = latency_saving / macs_saving if macs_saving else None
            row["of_reference"] = row["map_after"] / reference if reference else None
            table.add_row(
                case, f"{row['params_before']:,} → {row['params_after']:,}",
                f"{row['macs_before'] / 1e9:.3f} → {row['macs_after'] / 1e9:.3f}",
                f"{row['latency_ms_before']:.1f} → {row['latency_ms_after']:.1f}", f"{row['latency_ratio']:.2f}",
                f"{row['map50_after']:.3f}", f"{row['map_after']:.3f}", f"{row['of_reference']:.1%}",
                f"{row['seconds']:.0f}",
            )  # fmt: skip
        else:
            table.add_row(case, "", "", "", "", f"{row['map50']:.3f}", f"{row['map']:.3f}",
                          f"{row['map'] / reference:.1%}" if reference else "", f"{row['seconds']:.0f}")  # fmt: skip
    Console().print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    summary = {"img_size": args.img_size, "target_macs": args.target_macs, "extra_epochs": extra_epochs, "rows": rows}
    args.output.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
