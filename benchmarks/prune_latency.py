"""Does a pruned model's latency fall as much as its MACs, on the runtime that deploys it?

Issue 21's latency targets: a half-MACs model's OpenVINO-INT8 latency should fall by at least 0.8 x its
MACs saving on ``yolor_csp_tiny`` at 320 px and 1.0 x on ``yolor_csp`` at 640 px, and the half-MACs
model in INT8 should run at least 6x faster than the unpruned fp32 ONNX file on onnxruntime.

Two kinds of pairs, each model timed as ``prune auto --runtime`` times it (batch 1, CPU, median of
10 after 3 warm-up runs), the models of a pair alternately, ``--repeats`` times, medians reported:

- ``--pair NAME=INPUT.pt:PRUNED.pt`` (repeatable): checkpoints, e.g. a prune auto run's input and its
  ``pruned.pt``, so the figure is the one for the model the tool made;
- ``--random CFG@SIZE`` (repeatable): the bundled cfg with random weights and the same cfg cut by
  ``prune global --target-macs`` (L1 ranking, heads kept). Latency does not depend on the weights'
  values, so this is how yolor_csp is measured without training it.

- ``--align 1,8,16,32,64`` (with ``--random``): every conv group cut to the same kept share of its width,
  rounded to a multiple of A channels (A = 1: no rounding), the share chosen so the MACs land near
  ``--target-macs``: which alignment does the runtime reward? (INT8 kernels work on channel blocks.)

The ratio is the latency saving over the MACs saving (1.0: as much faster as smaller). ``speedup vs
ORT fp32`` is the input on onnxruntime fp32 over the pruned model on each runtime. Prints a table and
writes JSON.

    python benchmarks/prune_latency.py --random yolor_csp_tiny@320 --random yolor_csp@640
        [--pair demo=in.pt:pruned.pt@320] [--runtimes onnxruntime,openvino,openvino-int8] [--repeats 3]
    python benchmarks/prune_latency.py --quick   # yolor_csp_tiny at 128 px, openvino-int8, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolor_cli.engine.deploy.runtime_latency import check_runtime, runtime_latency_ms
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import load_checkpoint, model_from_checkpoint
from yolor_cli.engine.model.darknet import DarknetModel, build_model, count_parameters
from yolor_cli.engine.model.summary import ConvMacs
from yolor_cli.engine.prune.pruning import ChannelPruner, conv_of, prune_global, rebuild
from yolor_cli.engine.prune.request import GlobalTarget
from yolor_cli.engine.prune.units import prune_unit, prune_units

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "prune_latency.json"
BASELINE_RUNTIME = "onnxruntime"  # the unpruned fp32 file the INT8 speed-up is measured against


def random_pair(cfg: str, target: float) -> tuple[DarknetModel, DarknetModel]:
    torch.manual_seed(0)
    model = build_model(load_cfg(cfg)).eval()
    pruned = build_model(model.cfg, nc=model.nc)
    pruned.load_state_dict(model.state_dict())
    return model, rebuild(prune_global(pruned, GlobalTarget(target_macs=target))).eval()


def uniform_cut(model: DarknetModel, keep: float, align: int) -> DarknetModel:
    """A copy with each prunable conv group at ``align * round(keep * width / align)`` channels."""
    pruner = ChannelPruner(build_model(model.cfg, nc=model.nc), method="l1")
    pruner.model.load_state_dict(model.state_dict())
    for unit in prune_units(pruner.model, "conv", pruner=pruner):
        width = conv_of(pruner.model, unit.convs[0]).out_channels
        wanted = max(align, align * round(keep * width / align))
        if 0 < wanted < width:
            prune_unit(pruner, unit, (width - wanted + 0.5) / width)
    return rebuild(pruner.model).eval()


def aligned_cut(model: DarknetModel, target: float, align: int) -> DarknetModel:
    """:func:`uniform_cut` at the kept share whose MACs come closest to ``target`` of the model's."""
    base = ConvMacs(model)()
    candidates = [uniform_cut(model, keep / 100, align) for keep in range(60, 80, 2)]
    return min(candidates, key=lambda cut: abs(ConvMacs(cut)() / base - target))


def checkpoint_pair(spec: str) -> tuple[str, int, DarknetModel, DarknetModel]:
    name, rest = spec.split("=", 1)
    paths, size = rest.rsplit("@", 1)
    before, after = paths.split(":", 1)
    models = [model_from_checkpoint(load_checkpoint(Path(path))).eval() for path in (before, after)]
    return name, int(size), models[0], models[1]


def timed(models: dict[str, DarknetModel], size: int, runtimes: list[str], repeats: int) -> dict[str, dict]:
    """Median latency of each model on each runtime, the models alternating within each repeat."""
    times: dict[str, dict[str, list[float]]] = {name: {r: [] for r in runtimes} for name in models}
    for _ in range(repeats):
        for runtime in runtimes:
            for name, model in models.items():
                times[name][runtime].append(runtime_latency_ms(model, size, runtime))
    return {name: {r: statistics.median(v) for r, v in per.items()} for name, per in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random", action="append", default=[], help="CFG@SIZE, e.g. yolor_csp@640")
    parser.add_argument("--pair", action="append", default=[], help="NAME=INPUT.pt:PRUNED.pt@SIZE")
    parser.add_argument("--target-macs", type=float, default=0.5)
    parser.add_argument("--runtimes", default="onnxruntime,openvino,openvino-int8")
    parser.add_argument("--align", default="", help="with --random: also uniform cuts rounded to these, e.g. 1,8,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the runtimes use their defaults)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--quick", action="store_true", help="yolor_csp_tiny at 128 px, openvino-int8, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.random, args.pair, args.runtimes, args.repeats = ["yolor_csp_tiny@128"], [], "openvino-int8", 1
    torch.set_num_threads(args.threads)
    runtimes = args.runtimes.split(",")
    if BASELINE_RUNTIME not in runtimes and not args.quick:
        runtimes.insert(0, BASELINE_RUNTIME)
    for runtime in runtimes:
        check_runtime(runtime)

    cases: list[tuple[str, int, DarknetModel, DarknetModel]] = []
    for spec in args.random:
        cfg, size = spec.rsplit("@", 1)
        before, after = random_pair(cfg, args.target_macs)
        cases.append((f"{cfg} (random, global {args.target_macs:g})", int(size), before, after))
        for align in [int(a) for a in args.align.split(",") if a]:
            cases.append(
                (
                    f"{cfg} (random, uniform, widths %{align})",
                    int(size),
                    before,
                    aligned_cut(before, args.target_macs, align),
                )
            )
    cases += [checkpoint_pair(spec) for spec in args.pair]

    rows = []
    for name, size, before, after in cases:
        macs_before, macs_after = ConvMacs(before)(), ConvMacs(after)()
        saving = 1 - macs_after / macs_before
        medians = timed({"before": before, "after": after}, size, runtimes, args.repeats)
        baseline = medians["before"].get(BASELINE_RUNTIME)
        for runtime in runtimes:
            ms_before, ms_after = medians["before"][runtime], medians["after"][runtime]
            rows.append(
                {
                    "case": name,
                    "img_size": size,
                    "runtime": runtime,
                    "params_before": count_parameters(before),
                    "params_after": count_parameters(after),
                    "macs_kept": macs_after / macs_before,
                    "latency_ms_before": ms_before,
                    "latency_ms_after": ms_after,
                    "latency_per_macs_saving": (1 - ms_after / ms_before) / saving if saving else None,
                    "speedup_vs_unpruned_ort_fp32": baseline / ms_after if baseline else None,
                }
            )

    table = Table(title=f"Latency against MACs saving ({args.repeats} alternating repeats, batch 1)")
    for column in ("case", "px", "runtime", "MACs kept", "ms before", "ms after", "latency/MACs saving", "vs ORT fp32"):
        table.add_column(column, justify="left" if column in ("case", "runtime") else "right")
    for row in rows:
        table.add_row(
            row["case"],
            str(row["img_size"]),
            row["runtime"],
            f"{row['macs_kept']:.3f}",
            f"{row['latency_ms_before']:.2f}",
            f"{row['latency_ms_after']:.2f}",
            f"{row['latency_per_macs_saving']:.2f}" if row["latency_per_macs_saving"] is not None else "-",
            f"{row['speedup_vs_unpruned_ort_fp32']:.2f}x" if row["speedup_vs_unpruned_ort_fp32"] else "-",
        )
    Console(width=200).print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"cpu": platform.processor() or platform.machine(), "repeats": args.repeats, "rows": rows}, indent=2)
        + "\n"
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
