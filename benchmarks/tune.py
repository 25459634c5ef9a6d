"""yolor tune against its targets (issue 22), side by side on one data set.

1. ``yolor tune --trials T --epochs E`` (TPE, median pruner), then ``yolor train --hyp best_hyp.yaml
   --optimizer X --epochs F`` against ``yolor train --epochs F`` with no other options: mAP50-95 of both.
2. The same study with ``--pruner none``: its best value and the epochs it ran, against the pruned one's.
3. The same study with ``--sampler random``: its best value at the same number of trials.
4. Two ``yolor tune`` processes on one SQLite storage with ``--trials N``: the distinct finished trials.

    python benchmarks/tune.py --work DIR --data PHOTO_SET/data.yaml [--trials 20] [--epochs 10]
        [--final-epochs 30] [--img-size 320] [--batch-size 16] [--output results/tune.json] [--quick]

The photo set comes from ``benchmarks/photo_data.py``. ``--quick`` checks the script end to end in a
few minutes on generated shapes (3 trials x 2 epochs at 64 px, 2 final epochs); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
from rich.console import Console
from rich.table import Table

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "tune.json"
STUDIES = {  # name -> extra options of yolor tune
    "tpe-median": [],
    "tpe-none": ["--pruner", "none"],
    "random-median": ["--sampler", "random"],
}


def yolor(*args: str) -> tuple[dict, float]:
    """One ``yolor ... --json`` run: its JSON object and its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "yolor_cli", *args, "--json"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"yolor {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def shapes_data(work: Path) -> Path:
    """--quick: a small generated set (the tool's own synthesizer)."""
    from yolor_cli.engine.data.prepare import prepare_dataset
    from yolor_cli.engine.data.synth import synthesize

    root = work / "shapes"
    if not (root / "data.yaml").exists():
        synthesize(root, images=16, seed=0)
        prepare_dataset(root, val=0.25, test=0.0, seed=0)
    return root / "data.yaml"


def two_processes(work: Path, common: list[str], trials: int) -> dict:
    """Two tune processes on one storage, started together: the finished trials they leave."""
    url = f"sqlite:///{(work / 'shared.db').resolve()}"
    args = [*common, "--trials", str(trials), "--storage", url, "--study", "shared", "--project", str(work / "shared")]
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "yolor_cli", "tune", *args, "--name", name, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode:
            raise SystemExit(f"a shared tune failed:\n{stderr[-3000:]}")
    study = optuna.load_study(study_name="shared", storage=url)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    return {
        "trials": trials,
        "finished": len(finished),
        "distinct_numbers": len({t.number for t in finished}),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--data", type=Path, help="data.yaml of the photo set (benchmarks/photo_data.py)")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--final-epochs", type=int, default=30)
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shared-trials", type=int, default=4)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--quick", action="store_true", help="a few-minute check of the script; meaningless figures")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.trials, args.epochs, args.final_epochs, args.img_size, args.batch_size = 3, 2, 2, 64, 4
        args.shared_trials = 2
        args.output = args.output.with_name(args.output.stem + "_quick.json")
        args.data = args.data or shapes_data(args.work)
    if args.data is None:
        raise SystemExit("give --data (a photo set from benchmarks/photo_data.py), or --quick")
    common = ["--data", str(args.data), "--img-size", str(args.img_size), "--batch-size", str(args.batch_size)]
    common += ["--workers", "0"] if args.quick else []
    report: dict = {"options": {k: str(v) for k, v in vars(args).items()}, "studies": {}}
    for name, extra in STUDIES.items():
        payload, seconds = yolor(
            "tune", *common, "--trials", str(args.trials), "--epochs", str(args.epochs), *extra,
            "--project", str(args.work / "tune"), "--name", name,
        )  # fmt: skip
        report["studies"][name] = {**payload, "seconds": seconds, "folder": str(args.work / "tune" / name)}
    best = report["studies"]["tpe-median"]
    final = ["--epochs", str(args.final_epochs), "--project", str(args.work / "train")]
    stepwise = best["best_params"]["optimizer"] in ("adam", "adamw")  # trials step every batch with Adam(W)
    tuned, tuned_s = yolor(
        "train", *common, *final, "--name", "best-hyp", "--exist-ok",
        "--hyp", str(Path(best["folder"]) / "best_hyp.yaml"), "--optimizer", best["best_params"]["optimizer"],
        *(["--nominal-batch-size", str(args.batch_size)] if stepwise else []),
    )  # fmt: skip
    plain, plain_s = yolor("train", *common, *final, "--name", "defaults", "--exist-ok")
    report["train"] = {
        "best_hyp": {"map": tuned.get("map"), "map50": tuned.get("map50"), "seconds": tuned_s},
        "defaults": {"map": plain.get("map"), "map50": plain.get("map50"), "seconds": plain_s},
    }
    report["shared"] = two_processes(args.work, common + ["--epochs", "1"], args.shared_trials)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    table = Table(title=f"yolor tune, {args.trials} trials x {args.epochs} epochs")
    for header in ("study", "best value", "complete", "pruned", "failed", "epochs run", "minutes"):
        table.add_column(header, justify="left" if header == "study" else "right")
    for name, row in report["studies"].items():
        table.add_row(
            name, f"{row['best_value']:.4f}" if row["best_value"] is not None else "-", str(row["trials_complete"]),
            str(row["trials_pruned"]), str(row["trials_failed"]), str(row["epochs_run"]), f"{row['seconds'] / 60:.1f}",
        )  # fmt: skip
    console = Console()
    console.print(table)
    pruned, unpruned = report["studies"]["tpe-median"], report["studies"]["tpe-none"]
    saved = 1 - pruned["epochs_run"] / unpruned["epochs_run"] if unpruned["epochs_run"] else 0.0
    train = report["train"]
    gain = (train["best_hyp"]["map"] / train["defaults"]["map"] - 1) if train["defaults"]["map"] else float("nan")
    console.print(
        f"{args.final_epochs}-epoch train, mAP50-95: best_hyp {train['best_hyp']['map']:.4f}, "
        f"defaults {train['defaults']['map']:.4f} ({gain:+.1%} relative)\n"
        f"pruner: {saved:.0%} fewer epochs than --pruner none\n"
        f"shared storage: {report['shared']['finished']} finished trials, "
        f"{report['shared']['distinct_numbers']} distinct, of --trials {report['shared']['trials']}\n"
        f"written to {args.output}"
    )


if __name__ == "__main__":
    main()
