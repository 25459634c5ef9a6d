"""Do pruned widths that are multiples of 8 run faster? A micro benchmark for prune's width rounding.

Every prunable conv group of ``yolor_csp_tiny`` is cut to about ``--keep`` of its width, once to a
multiple of 8 channels (``8k``) and once to 5 channels fewer (``8k - 5 = 8(k-1) + 3``). The second
model has fewer MACs; if it is not faster (or slower), rounding the widths to 8 pays on that runtime.
Each model is timed on each runtime as ``prune auto --runtime`` times it (batch 1, CPU, median),
alternately, ``--repeats`` times, and the medians are reported.

    python benchmarks/prune_round.py [--img-size 320] [--runtimes openvino,onnxruntime] [--repeats 5]
    python benchmarks/prune_round.py --quick   # 128 px, openvino, 3 repeats
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolor_cli.engine.deploy.runtime_latency import runtime_latency_ms
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.darknet import DarknetModel, build_model
from yolor_cli.engine.model.summary import count_gflops
from yolor_cli.engine.prune.pruning import ChannelPruner, conv_of, rebuild
from yolor_cli.engine.prune.units import prune_unit, prune_units

ALIGN = 8
OFFSET = 5  # 8k - 5 channels: three above the next lower multiple of 8


def cut_to(model: DarknetModel, keep: float, offset: int) -> DarknetModel:
    """A copy with each conv group at ``8 * round(keep * width / 8) - offset`` channels."""
    pruner = ChannelPruner(build_model(model.cfg, nc=model.nc), method="l1")
    pruner.model.load_state_dict(model.state_dict())
    for unit in prune_units(pruner.model, "conv", pruner=pruner):
        width = conv_of(pruner.model, unit.convs[0]).out_channels
        wanted = max(ALIGN, ALIGN * round(keep * width / ALIGN)) - offset
        if 0 < wanted < width:
            prune_unit(pruner, unit, (width - wanted + 0.5) / width)
    return rebuild(pruner.model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--runtimes", default="openvino,onnxruntime")
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the runtimes use their defaults)")
    parser.add_argument("--quick", action="store_true", help="128 px, openvino only, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.img_size, args.runtimes, args.repeats = 128, "openvino", 3
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = build_model(load_cfg("yolor_csp_tiny"), nc=80).eval()
    models = {f"{ALIGN}k": cut_to(base, args.keep, 0), f"{ALIGN}k-{OFFSET}": cut_to(base, args.keep, OFFSET)}
    print(f"yolor_csp_tiny at {args.img_size} px, conv groups cut to ~{args.keep} of their width")
    for name, model in models.items():
        print(f"  {name:6s} GFLOPs {count_gflops(model, args.img_size):.3f}")
    for runtime in args.runtimes.split(","):
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.repeats):
            for name, model in models.items():
                times[name].append(runtime_latency_ms(model, args.img_size, runtime))
        medians = {name: statistics.median(values) for name, values in times.items()}
        aligned, odd = medians[f"{ALIGN}k"], medians[f"{ALIGN}k-{OFFSET}"]
        runs = ", ".join(f"{name} {[round(t, 2) for t in values]}" for name, values in times.items())
        print(
            f"  {runtime:14s} {ALIGN}k {aligned:.3f} ms   {ALIGN}k-{OFFSET} {odd:.3f} ms   "
            f"odd/aligned {odd / aligned:.3f}  (runs: {runs})"
        )


if __name__ == "__main__":
    main()
