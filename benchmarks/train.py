"""Training-step throughput and peak memory on this CPU: yolor_csp_tiny at 320 (batch 16) and
yolor_csp at 320 (batch 8). A step is forward, loss, backward, optimiser step and EMA update on one
fixed batch (no data loading). Ours runs twice: in fp32 and with the forward autocast to bf16
(``yolor train --amp`` on a CPU with AMX-BF16 or AVX-512 BF16; forced here, so a CPU without them
shows what it would cost). Prints a table and writes JSON.

    python benchmarks/train.py [--repeats 5] [--rounds 3] [--threads 2] [--official-repo PATH]

``--official-repo`` points at a checkout of the official YOLOR code (branch main, never part of
this project, with its loss dtype bug patched in that scratch copy); its Darknet model, compute_loss
and ModelEMA then run the same step on the same cfg, batch and threads, and both losses are computed
on the same weights and batch to show they agree. Each case runs in its own process so that its
peak resident memory is its own; rounds alternate the implementations and the median is reported.
The loss column is the first batch's, before any step: ours in bf16 differs from fp32 by bf16's
rounding only.
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
from pathlib import Path

import torch
from forward import median_seconds  # the sibling benchmark's timer (scripts run from benchmarks/)
from rich.console import Console
from rich.table import Table

CASES = [("yolor_csp_tiny", 320, 16), ("yolor_csp", 320, 8)]  # (cfg, image size, batch)
OBJECTS_PER_IMAGE = 6
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "train.json"
# Our case saves the weights it started from; the official case loads them, so both losses are comparable.
OUT_STATE = Path(tempfile.gettempdir()) / "yolor-bench-initial-state.pt"
# Our step in each precision (None: fp32), in the order rounds run them; the official code runs fp32 on CPU.
OURS = {"ours": None, "ours_bf16": torch.bfloat16}
LABELS = {"ours": "ours fp32", "ours_bf16": "ours bf16", "official": "official fp32"}


def fixed_batch(batch: int, size: int, nc: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=generator)
    rows = []
    for index in range(batch):
        for _ in range(OBJECTS_PER_IMAGE):
            cls = torch.randint(0, nc, (1,), generator=generator).item()
            cx, cy = (0.2 + 0.6 * torch.rand(2, generator=generator)).tolist()
            w, h = (0.05 + 0.35 * torch.rand(2, generator=generator)).tolist()
            rows.append([index, cls, cx, cy, w, h])
    return images, torch.tensor(rows)


def run_ours(cfg_name: str, size: int, batch: int, repeats: int, dtype: torch.dtype | None) -> dict:
    from yolor_cli.engine.config import load_hyp
    from yolor_cli.engine.model.bundled import load_cfg
    from yolor_cli.engine.model.darknet import build_model
    from yolor_cli.engine.reporting import SilentReporter
    from yolor_cli.engine.runtime import AmpMode
    from yolor_cli.engine.train.optim import Warmup
    from yolor_cli.engine.train.trainer import Trainer, TrainState

    torch.manual_seed(0)
    model = build_model(load_cfg(cfg_name))
    hyp = load_hyp()
    images, targets = fixed_batch(batch, size, model.nc)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    trainer = Trainer(
        model,
        hyp,
        [None] * 100,
        epochs=1,
        batch_size=batch,
        nominal_batch_size=batch,  # type: ignore[arg-type]
        device=torch.device("cpu"),
        img_size=size,
        reporter=SilentReporter(),
        amp=AmpMode(dtype, False, "benchmark"),
    )
    trainer.warmup = Warmup(iterations=0, hyp=hyp, batch_size=batch, nominal_batch_size=batch)  # a step per batch
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        raw = model(images)
    first_loss = trainer.loss([p.float() for p in raw], targets)[1][3].item()  # fp32, as run_step computes it
    state = TrainState(epoch=0, epochs=1)
    uint8_images = (images * 255).round().to(torch.uint8)  # run_step takes loader batches (uint8)
    seconds = median_seconds(lambda: trainer.run_step(uint8_images, targets, state), repeats, warmup=2)
    torch.save(initial, OUT_STATE)
    return {"seconds": seconds, "loss": first_loss}


def run_official(repo: Path, cfg_name: str, size: int, batch: int, repeats: int) -> dict:
    sys.path.insert(0, str(repo))
    import yaml
    from models.models import Darknet  # type: ignore[import-not-found]  # the official code, outside this repo
    from utils.loss import compute_loss  # type: ignore[import-not-found]
    from utils.torch_utils import ModelEMA  # type: ignore[import-not-found]

    from yolor_cli.engine.model.bundled import resolve_cfg_path

    torch.manual_seed(0)
    model = Darknet(str(resolve_cfg_path(cfg_name)), (size, size))
    model.load_state_dict(torch.load(OUT_STATE, weights_only=True))  # the weights our run started from
    model.hyp = yaml.safe_load((repo / "data" / "hyp.scratch.640.yaml").read_text())
    model.gr, model.nc = 1.0, model.module_list[model.yolo_layers[0]].nc
    images, targets = fixed_batch(batch, size, model.nc)
    model.train()
    with torch.no_grad():
        first_loss = compute_loss(model(images), targets, model)[1][3].item()
    # The official train.py's three groups: BatchNorm weights, conv weights with decay, biases.
    no_decay, decay, biases = [], [], []
    for name, parameter in model.named_parameters():
        (biases if name.endswith(".bias") else decay if name.endswith("Conv2d.weight") else no_decay).append(parameter)
    optimizer = torch.optim.SGD(no_decay, lr=0.01, momentum=0.937, nesterov=True)
    optimizer.add_param_group({"params": decay, "weight_decay": 0.0005})
    optimizer.add_param_group({"params": biases})
    ema = ModelEMA(model)

    def step() -> None:
        loss, _ = compute_loss(model(images), targets, model)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        ema.update(model)

    return {"seconds": median_seconds(step, repeats, warmup=2), "loss": first_loss}


def run_case(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    cfg_name, size, batch = args.case[0], int(args.case[1]), int(args.case[2])
    if args.implementation in OURS:
        result = run_ours(cfg_name, size, batch, args.repeats, OURS[args.implementation])
    else:
        result = run_official(args.official_repo, cfg_name, size, batch, args.repeats)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _table_row(row: dict, implementation: str, label: str) -> list[str]:
    """One implementation of one case, its speed relative to our fp32 step and to the official one."""
    result, official = row[implementation], row.get("official")

    def ratio(other: dict | None) -> str:
        return f"{result['images_per_s'] / other['images_per_s']:.2f}x" if other else "-"

    return [
        f"{row['cfg']} {row['img_size']} b{row['batch']}",
        label,
        f"{result['images_per_s']:.2f}",
        f"{result['peak_rss_mb']:.0f}",
        ratio(row["ours"]),
        ratio(official),
        f"{result['loss']:.6f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="processes per case and implementation")
    parser.add_argument("--official-repo", type=Path)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--implementation", default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(args)
        return
    rows = []
    for cfg_name, size, batch in CASES:
        row: dict = {"cfg": cfg_name, "img_size": size, "batch": batch}
        runs: dict[str, list[dict]] = {}
        # Rounds alternate the implementations, so a slow spell of a shared machine hits both alike.
        for _ in range(args.rounds):
            for implementation in [*OURS, "official"] if args.official_repo else list(OURS):
                command = [
                    sys.executable,
                    __file__,
                    "--case",
                    cfg_name,
                    str(size),
                    str(batch),
                    "--implementation",
                    implementation,
                    "--repeats",
                    str(args.repeats),
                    "--threads",
                    str(args.threads),
                ]
                if args.official_repo:
                    command += ["--official-repo", str(args.official_repo)]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                runs.setdefault(implementation, []).append(json.loads(done.stdout.strip().splitlines()[-1]))
        for implementation, results in runs.items():
            seconds = statistics.median(r["seconds"] for r in results)
            row[implementation] = {
                "images_per_s": batch / seconds,
                "seconds": seconds,
                "seconds_per_round": [r["seconds"] for r in results],
                "loss": results[0]["loss"],
                "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            }
        rows.append(row)
    table = Table(title=f"Training step on CPU ({args.threads} threads, torch {torch.__version__})")
    for column in ("case", "step", "img/s", "peak MB", "vs ours fp32", "vs official", "first loss"):
        table.add_column(column, justify="right")
    for row in rows:
        for implementation, label in LABELS.items():
            if implementation in row:
                table.add_row(*_table_row(row, implementation, label))
    Console(width=160).print(table)  # wide enough for every column, also in logs
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "threads": args.threads,
                "cases": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
