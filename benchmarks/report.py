"""The report of a training run: how long `yolor report` takes, how large report.html is, and how fast it
opens in headless Chromium (navigation start to the load event, median of several fresh browsers).

    python benchmarks/report.py --run runs/train/exp   # a finished run (copied first: nothing is written in it)
    python benchmarks/report.py                        # trains the demo run (30 epochs) first, then measures
    python benchmarks/report.py --quick                # a 2-epoch 64 px tiny run on generated data

Targets (issue 23): under 5 MB, opens in under 2 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/chromium.py: the browser driver the report tests use

from tests.chromium import find_chromium, load_page  # noqa: E402

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "report.json"
COPIED_WEIGHTS = ("best.pt", "last.pt")  # what the report reads of weights/ (the rest is not copied)
TARGET_BYTES = 5 * 2**20
TARGET_OPEN_S = 2.0


def _yolor(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "yolor_cli", *args], check=True, cwd=ROOT)


def _train(scratch: Path, quick: bool) -> Path:
    if quick:
        data = scratch / "voc"
        _yolor("dataset", "synth", "--out", str(data), "--images", "16", "--seed", "0")
        _yolor("dataset", "prepare", "--root", str(data), "--val", "0.25", "--test", "0")
        _yolor(
            "train", "--cfg", "yolor_csp_tiny", "--data", str(data / "data.yaml"), "--epochs", "2",
            "--img-size", "64", "--batch-size", "4", "--workers", "0", "--device", "cpu",
            "--project", str(scratch), "--name", "run", "--no-report",
        )  # fmt: skip
    else:  # the README's demo: built-in data, the demo profile, 30 epochs
        _yolor("train", "--epochs", "30", "--project", str(scratch), "--name", "run", "--no-report")
    return scratch / "run"


def _copy_run(source: Path, scratch: Path) -> Path:
    target = scratch / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("weights", "report.html"))
    (target / "weights").mkdir()
    for name in COPIED_WEIGHTS:
        if (source / "weights" / name).is_file():
            shutil.copy2(source / "weights" / name, target / "weights" / name)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a finished yolor train run folder (copied, never written)")
    parser.add_argument("--quick", action="store_true", help="a 2-epoch 64 px tiny run instead of the demo")
    parser.add_argument("--opens", type=int, default=5, help="fresh browsers the page is opened in")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    browser = find_chromium()
    if browser is None:
        sys.exit("no chromium on PATH (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="yolor-report-bench-") as scratch:
        run = _copy_run(args.run, Path(scratch)) if args.run else _train(Path(scratch), args.quick)
        epochs = sum(1 for _ in (run / "results.csv").open()) - 1
        started = time.perf_counter()
        _yolor("report", str(run), "--device", args.device, "--json")
        write_s = time.perf_counter() - started
        page = run / "report.html"
        size = page.stat().st_size
        loads = [load_page(page, browser=browser) for _ in range(args.opens)]
        shot = args.output.with_suffix(".png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        shot.write_bytes(loads[-1].screenshot)
    version = subprocess.run([browser, "--version"], capture_output=True, text=True).stdout.strip()
    result = {
        "run": str(args.run) if args.run else ("quick" if args.quick else "demo, 30 epochs"),
        "epochs": epochs,
        "report_bytes": size,
        "write_s": round(write_s, 2),
        "open_s_median": round(statistics.median(load.load_s for load in loads), 3),
        "open_s_max": round(max(load.load_s for load in loads), 3),
        "open_wall_s_median": round(statistics.median(load.wall_s for load in loads), 3),
        "images": len(loads[0].images),
        "console_errors": loads[0].errors,
        "within_targets": size < TARGET_BYTES and max(load.load_s for load in loads) < TARGET_OPEN_S,
        "browser": version,
        "machine": platform.processor() or platform.machine(),
        "screenshot": str(shot),
    }
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    table = Table(title=f"report.html of a {epochs}-epoch train run ({version})", title_justify="left")
    for column in ("size MB", "write s", "open s (median)", "open s (max)", "images", "console errors"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{size / 2**20:.2f}",
        f"{write_s:.1f}",
        f"{result['open_s_median']:.3f}",
        f"{result['open_s_max']:.3f}",
        str(result["images"]),
        str(len(result["console_errors"])),
    )
    Console().print(table)
    Console().print(f"Written: {args.output}, {shot}")


if __name__ == "__main__":
    main()
