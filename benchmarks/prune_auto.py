"""``yolor prune auto`` against its fair reference, on the demo data or any trained model.

The reference is the unpruned model trained as many extra epochs as a prune auto run spent (the
``epochs`` of its ``--json``: ``steps x epochs-per-step + final-epochs`` unless the guard stopped a
steps run early): a pruned model fine-tuned for 22 epochs must be compared with the unpruned one
trained 22 epochs more, not with where it started. One reference is trained per distinct ``epochs``.
Without ``--weights`` the input is trained first, as ``yolor train`` does on the built-in demo data.
Each case is the real command in a subprocess with ``--json``; its wall time includes imports.
The latency ratio is the latency saving over the MACs saving (1.0: the model is as much faster as
it is smaller). Prints a table and writes JSON.

Work already done in ``--work`` is reused, not redone (``yolor train --exist-ok`` refuses a folder
holding a finished run): the input (``work/input/weights/best.pt``), each reference
(``work/reference-E/weights/best.pt``, its figures cached in ``reference-E.json`` or evaluated
again), and each case whose ``work/cases/CASE.json`` was made with the same options.

    python benchmarks/prune_auto.py --work /tmp/auto [--weights W --data D] [--img-size 320]
        [--cases distill,gradual,sensitivity] [--steps 4 --epochs-per-step 3 --final-epochs 10]
        [--max-drop 0.01] [--output results/prune_auto.json] [--quick]

``--quick`` checks the script end to end in a few minutes (a 2-epoch input at 96 px, 2 x 1 + 1
epochs, cases ``distill,gradual``, ``--max-drop 1``); its figures mean nothing.
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
    "gradual": ["--schedule", "gradual"],
    "gradual-no-distill": ["--schedule", "gradual", "--no-distill"],
    "gradual-sensitivity": ["--schedule", "gradual", "--allocate", "sensitivity"],
    "gradual-no-guard": ["--schedule", "gradual", "--max-drop", "1"],  # the last --max-drop wins
}


def yolor(*args: str) -> tuple[dict, float]:
    """One ``yolor ... --json`` run: its JSON object and its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "yolor_cli", *args, "--json"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"yolor {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), time.perf_counter() - start


def trained(work: Path, name: str, train_args: list[str], eval_args: list[str]) -> dict:
    """``yolor train ... --project work --name name``, or the run already there: its mAP50, mAP50-95 and
    wall time (cached in ``work/name.json``; a finished run without that file is evaluated again)."""
    cache, weights = work / f"{name}.json", work / name / "weights" / "best.pt"
    if weights.exists() and cache.exists():
        return json.loads(cache.read_text())
    if weights.exists():
        result, _ = yolor("eval", "--weights", str(weights), *eval_args)
        row = {"map50": result["map50"], "map": result["map"], "seconds": None, "reused": True}
    else:
        result, seconds = yolor("train", *train_args, "--project", str(work), "--name", name, "--exist-ok")
        row = {"map50": result["map50"], "map": result["map"], "seconds": seconds}
    cache.write_text(json.dumps(row))
    return row


def train_input(work: Path, quick: bool) -> tuple[Path, Path, dict]:
    """The demo's trained model, as ``yolor train`` with no options makes it (or reused from ``work``)."""
    run = work / "input"
    size = "96" if quick else "320"
    options = ["--epochs", "2", "--img-size", size] if quick else []
    opt = run / "opt.yaml"
    again = ["--data", yaml.safe_load(opt.read_text())["data"], "--img-size", size] if opt.exists() else []
    row = trained(work, "input", options, again)
    return run / "weights" / "best.pt", Path(yaml.safe_load(opt.read_text())["data"]), row


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
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--quick", action="store_true", help="a few-minute check of the script; meaningless figures")
    args = parser.parse_args()
    if args.quick:
        args.img_size, args.steps, args.epochs_per_step, args.final_epochs = 96, 2, 1, 1
        args.cases, args.max_drop = "distill,gradual", "1"
        args.output = args.output.with_name(args.output.stem + "_quick.json")
    if (args.weights is None) != (args.data is None):
        raise SystemExit("give --weights and --data together, or neither (the demo)")
    args.work.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    if args.weights is None:
        weights, data, rows["input (yolor train)"] = train_input(args.work, args.quick)
    else:
        weights, data = args.weights, args.data
    planned_epochs = args.steps * args.epochs_per_step + args.final_epochs
    common = ["--data", str(data), "--img-size", str(args.img_size)]
    (args.work / "cases").mkdir(exist_ok=True)
    for case in args.cases.split(","):
        options = [
            "prune", "auto", "--weights", str(weights), *common, "--target-macs", args.target_macs,
            "--steps", str(args.steps), "--epochs-per-step", str(args.epochs_per_step),
            "--final-epochs", str(args.final_epochs), "--project", str(args.work / "runs"), "--name", case,
            *(["--max-drop", args.max_drop] if args.max_drop else []), *CASES[case],
        ]  # fmt: skip
        cache = args.work / "cases" / f"{case}.json"
        if cache.exists() and json.loads(cache.read_text()).get("command") == options:
            rows[case] = json.loads(cache.read_text())
        else:
            try:
                result, seconds = yolor(*options)
            except SystemExit as failed:  # e.g. the guard refusing step 1: a result of its own, kept in the table
                rows[case] = {"error": str(failed).splitlines()[-2:]}
            else:
                rows[case] = {**result, "seconds": seconds}
            rows[case]["command"] = options
            cache.write_text(json.dumps(rows[case]))
        print(json.dumps({case: rows[case]}), file=sys.stderr)
    # one reference per distinct number of epochs the cases spent (the planned ones if none finished)
    spent = sorted({row["epochs"] for row in rows.values() if row.get("epochs")} or {planned_epochs})
    references: dict[int, dict] = {}
    for epochs in spent:
        train_args = ["--weights", str(weights), *common, "--epochs", str(epochs)]
        references[epochs] = rows[f"reference (+{epochs} epochs)"] = trained(
            args.work, f"reference-{epochs}", train_args, common
        )
        print(json.dumps({f"reference-{epochs}": references[epochs]}), file=sys.stderr)
    table = Table(
        title=f"prune auto --target-macs {args.target_macs} at {args.img_size} px ({args.steps} steps x "
        f"{args.epochs_per_step} epochs + {args.final_epochs}; reference: the input trained as many epochs more)"
    )
    for header in ("case", "schedule", "epochs", "params", "MACs kept", "latency ms", "latency/MACs saving",
                   "mAP50", "mAP50-95", "of reference", "wall s"):  # fmt: skip
        table.add_column(header, justify="left" if header in ("case", "schedule") else "right")
    for case, row in rows.items():
        wall = "" if row.get("seconds") is None else f"{row['seconds']:.0f}"
        if "error" in row:
            table.add_row(case, "failed: " + " ".join(row["error"]), *[""] * 9)
        elif "macs_after" in row:
            macs_saving = 1 - row["macs_after"] / row["macs_before"]
            latency_saving = 1 - row["latency_ms_after"] / row["latency_ms_before"]
            row["macs_fraction"] = row["macs_after"] / row["macs_before"]
            row["latency_ratio"] = latency_saving / macs_saving if macs_saving else None
            reference = references.get(row["epochs"], {}).get("map")
            row["of_reference"] = row["map_after"] / reference if reference else None
            table.add_row(
                case, row["schedule"], str(row["epochs"]), f"{row['params_before']:,} → {row['params_after']:,}",
                f"{row['macs_fraction']:.3f}", f"{row['latency_ms_before']:.1f} → {row['latency_ms_after']:.1f}",
                "-" if row["latency_ratio"] is None else f"{row['latency_ratio']:.2f}",
                f"{row['map50_after']:.3f}", f"{row['map_after']:.3f}",
                "-" if row["of_reference"] is None else f"{row['of_reference']:.1%}", wall,
            )  # fmt: skip
        else:
            table.add_row(case, "", "", "", "", "", "", f"{row['map50']:.3f}", f"{row['map']:.3f}", "", wall)
    Console().print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    summary = {"img_size": args.img_size, "target_macs": args.target_macs, "planned_epochs": planned_epochs}
    summary["rows"] = rows
    args.output.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
