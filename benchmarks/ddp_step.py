"""The DDP training step with two layouts of the model: every 4-D parameter channels-last (how the
trainer converted the model before, which made DDP warn "Grad strides do not match bucket view
strides" for the implicit (1, C, 1, 1) vectors and copy their gradients) against only the convolution
weights channels-last (``runtime.channels_last``, what it does now). Two gloo processes on this CPU
run the trainer's own ``run_step`` (forward, loss, backward with the gradient all-reduce, optimiser
step, EMA) on a fixed batch; rounds alternate the layouts, each in fresh processes; the median step
is reported, with the number of stride warnings each layout raised.

    python benchmarks/ddp_step.py [--quick] [--rounds 3] [--repeats 8] [--threads 1]

``--quick``: yolor_csp_tiny at 128 px, batch 4 per process, 2 rounds of 5 steps (about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from train import fixed_batch  # the sibling benchmark's batch (scripts run from benchmarks/)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # yolor_cli from this checkout

LAYOUTS = ("whole", "convs")  # the model converted whole (before), its convolutions only (now)
PROCESSES = 2
STRIDE_WARNING = "Grad strides do not match bucket view strides"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank: int, layout: str, args: argparse.Namespace, port: int, output: str) -> None:
    from forward import median_seconds

    from yolor_cli.engine.config import load_hyp
    from yolor_cli.engine.model.bundled import load_cfg
    from yolor_cli.engine.model.darknet import build_model
    from yolor_cli.engine.reporting import SilentReporter
    from yolor_cli.engine.runtime import AmpMode
    from yolor_cli.engine.train import trainer as trainer_module
    from yolor_cli.engine.train.distributed import DistributedContext
    from yolor_cli.engine.train.optim import Warmup

    torch.set_num_threads(args.threads)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=PROCESSES)
    if layout == "whole":  # the conversion the trainer did before
        trainer_module.channels_last = lambda module, device: module.to(device, memory_format=torch.channels_last)
    torch.manual_seed(0)
    model = build_model(load_cfg(args.cfg)).train()
    hyp = load_hyp()
    images, targets = fixed_batch(args.batch, args.img_size, model.nc)
    total = args.batch * PROCESSES
    trainer = trainer_module.Trainer(
        model,
        hyp,
        [None] * 100,  # type: ignore[arg-type]  # only its length is read
        epochs=1,
        batch_size=total,
        nominal_batch_size=total,
        device=torch.device("cpu"),
        img_size=args.img_size,
        reporter=SilentReporter(),
        distributed=DistributedContext(rank=rank, local_rank=rank, world_size=PROCESSES),
        amp=AmpMode(None, False, "benchmark"),
    )
    trainer.warmup = Warmup(iterations=0, hyp=hyp, batch_size=total, nominal_batch_size=total)  # a step per batch
    state = trainer_module.TrainState(epoch=0, epochs=1)
    uint8_images = (images * 255).round().to(torch.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seconds = median_seconds(lambda: trainer.run_step(uint8_images, targets, state), args.repeats, warmup=2)
    stride_warnings = sum(STRIDE_WARNING in str(w.message) for w in caught)
    counts = [torch.tensor([stride_warnings]) for _ in range(PROCESSES)]
    dist.all_gather(counts, torch.tensor([stride_warnings]))
    if rank == 0:
        Path(output).write_text(json.dumps({"seconds": seconds, "warnings": int(sum(c.item() for c in counts))}))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="yolor_csp_tiny 128 px, 2 rounds of 5 steps")
    parser.add_argument("--cfg", default="yolor_csp_tiny")
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8, help="images per process")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="per process")
    args = parser.parse_args()
    if args.quick:
        args.img_size, args.batch, args.rounds, args.repeats = 128, 4, 2, 5
    runs: dict[str, list[dict]] = {layout: [] for layout in LAYOUTS}
    for _ in range(args.rounds):  # alternate, so a slow spell of a shared machine hits both alike
        for layout in LAYOUTS:
            with tempfile.NamedTemporaryFile(suffix=".json") as output:
                mp.spawn(_worker, args=(layout, args, _free_port(), output.name), nprocs=PROCESSES)
                runs[layout].append(json.loads(Path(output.name).read_text()))
    print(f"{args.cfg} {args.img_size} px, {PROCESSES} gloo processes x batch {args.batch}, {args.threads} thread(s)")
    for layout in LAYOUTS:
        seconds = [r["seconds"] for r in runs[layout]]
        print(
            f"{layout:>6}: median step {statistics.median(seconds) * 1000:.1f} ms "
            f"(rounds: {', '.join(f'{s * 1000:.1f}' for s in seconds)}), "
            f"stride warnings {sum(r['warnings'] for r in runs[layout])}"
        )


if __name__ == "__main__":
    main()
