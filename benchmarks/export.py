"""CPU latency of PyTorch eager against onnxruntime, for yolor_csp_tiny and yolor_csp at 320 and
640 px, unpruned and pruned (``prune global --target-macs 0.5``, L1), batch 1, fused, random weights
(latency does not depend on the values). Each ONNX file is made by ``yolor export``'s engine, so the
export time and its verified max |diff| are reported too. Prints a table and writes JSON.

    python benchmarks/export.py [--repeats 5] [--threads 2] [--cfg yolor_csp_tiny --cfg yolor_csp] [--dynamo]

``--dynamo`` also times torch's dynamo-based exporter (``torch.onnx.export(dynamo=True)``, needs
``pip install onnxscript``) against the TorchScript-based one ``yolor export`` uses, at 640 px.

``--deploy`` measures the deployment formats instead, each through ``yolor benchmark``'s engine (made,
scored on the val split, timed at batch 1 on the same images): PyTorch fp32 and bf16, onnxruntime
fp32 and INT8 (QDQ), OpenVINO fp32, bf16 and INT8 (NNCF), TorchScript. Cases: each ``--weights``
checkpoint (trained: its mAP means something) at each ``--sizes``, and with ``--random-csp``
yolor_csp with random weights, unpruned and pruned to half the MACs, at 640 px (latency only)::

    python benchmarks/export.py --deploy --data DEMO/data.yaml --weights demo.pt --weights demo_pruned.pt \
        --sizes 320,640 --random-csp
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward import median_seconds

from yolor_cli.engine.deploy.export import DeployModel, ExportRequest, export
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model, count_parameters
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.prune.request import GlobalTarget, PruneRequest
from yolor_cli.engine.prune.run import prune

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "export.json"
SIZES = (320, 640)


def onnx_latency_ms(path: Path, img_size: int, threads: int, repeats: int) -> float:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).random((1, 3, img_size, img_size), dtype=np.float32)
    return 1000 * median_seconds(lambda: session.run(None, {"images": images}), repeats)


def eager_latency_ms(weights: Path, img_size: int, repeats: int) -> float:
    model = DeployModel(load_model(weights=weights).model.eval().fuse()).eval()
    images = torch.rand(1, 3, img_size, img_size)

    def run() -> None:
        with torch.inference_mode():
            model(images)

    return 1000 * median_seconds(run, repeats)


def exporter_seconds(cfg_name: str, img_size: int, dynamo: bool) -> tuple[float, float]:
    """Seconds for torch.onnx.export alone, and the file's max |diff| from PyTorch on onnxruntime."""
    import warnings

    model = DeployModel(build_model(load_cfg(cfg_name)).eval().fuse()).eval()
    images = torch.rand(1, 3, img_size, img_size)
    with torch.no_grad():
        reference = model(images).numpy()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(folder) / "model.onnx"
        start = time.perf_counter()
        if dynamo:
            torch.onnx.export(model, (images,), dynamo=True, input_names=["images"]).save(str(path))
        else:
            torch.onnx.export(model, (images,), str(path), dynamo=False, opset_version=17, input_names=["images"])
        seconds = time.perf_counter() - start
        output = onnxruntime.InferenceSession(str(path)).run(None, {"images": images.numpy()})[0]
    return seconds, float(np.abs(output - reference).max())


def compare_exporters(cfgs: list[str]) -> list[dict[str, object]]:
    rows = []
    for cfg_name in cfgs:
        for dynamo in (False, True):
            seconds, diff = exporter_seconds(cfg_name, 640, dynamo)
            rows.append(
                {
                    "cfg": cfg_name,
                    "exporter": "dynamo" if dynamo else "torchscript",
                    "seconds": seconds,
                    "max_abs_diff": diff,
                }
            )
    table = Table(title="torch.onnx.export at 640 px, fused, random weights")
    for column in ("cfg", "exporter", "seconds", "max |diff|"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["cfg"]), str(row["exporter"]), f"{row['seconds']:.1f}", f"{row['max_abs_diff']:.1e}")
    Console(width=160).print(table)
    return rows


DEPLOY_FORMATS = "pytorch,pytorch-bf16,onnx,onnx-int8,openvino,openvino-bf16,openvino-int8,torchscript"  # every row
DEPLOY_OUTPUT = Path(__file__).resolve().parent / "results" / "export_deploy.json"
RANDOM_CALIB_IMAGES = 32  # random weights: the calibration only has to run, its accuracy means nothing


def deploy_cases(args: argparse.Namespace, folder: Path) -> list[tuple[str, Path, int, int]]:
    """(label, weights, img_size, calib images) for each measured case."""
    from yolor_cli.engine.config import load_data_config
    from yolor_cli.engine.deploy.request import DEFAULT_CALIB_IMAGES

    cases = [
        (f"{weights.stem}", weights, int(size), DEFAULT_CALIB_IMAGES)
        for weights in args.weights or []
        for size in args.sizes.split(",")
    ]
    if args.random_csp:
        nc = load_data_config(args.data).nc
        torch.manual_seed(0)
        model = build_model(load_cfg("yolor_csp"), nc=nc)
        source = folder / "yolor_csp_random.pt"
        save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict()), source)
        pruned = prune(
            PruneRequest(source, GlobalTarget(target_macs=0.5), latency=False, output=folder / "yolor_csp_half.pt")
        )
        assert pruned.output is not None
        cases += [(path.stem, path, 640, RANDOM_CALIB_IMAGES) for path in (source, pruned.output)]
    return cases


def measure_deploy(args: argparse.Namespace) -> None:
    from yolor_cli.engine.deploy.benchmark import run_benchmark
    from yolor_cli.engine.deploy.request import BenchmarkRequest

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, weights, img_size, calib in deploy_cases(args, Path(folder)):
            start = time.perf_counter()
            result = run_benchmark(
                BenchmarkRequest(
                    weights=weights,
                    data=args.data,
                    formats=args.formats,
                    img_size=img_size,
                    calib_images=calib,
                    output=Path(folder) / f"{label}_{img_size}.csv",
                )
            )
            by_format = {row.format: row for row in result.rows}
            baseline = by_format.get("onnx")
            for row in result.rows:
                rows.append(
                    {
                        "case": label,
                        "params": count_parameters(load_model(weights=weights).model),
                        "img_size": img_size,
                        "calib_images": calib,
                        "format": row.format,
                        "ok": row.ok,
                        "precision": row.precision,
                        "size_mb": row.size_bytes / 2**20 if row.size_bytes else None,
                        "map": row.map,
                        "map50": row.map50,
                        "latency_ms": row.latency_ms,
                        "speedup_vs_pytorch": row.speedup,
                        "speedup_vs_onnxruntime_fp32": (
                            baseline.latency_ms / row.latency_ms
                            if baseline and baseline.ok and row.ok and row.latency_ms
                            else None
                        ),
                        "reason": row.reason,
                        "benchmark_seconds": result.seconds,
                    }
                )
            print(
                json.dumps({"case": label, "img_size": img_size, "seconds": time.perf_counter() - start}),
                file=sys.stderr,
            )
    table = Table(
        title=f"Deployment formats on this CPU, batch 1 ({torch.get_num_threads()} threads); mAP on the val split"
    )
    for column in ("case", "px", "format", "precision", "MB", "mAP50-95", "mAP50", "ms", "vs PyTorch", "vs ORT fp32"):
        table.add_column(column, justify="right")

    def number(value: float | None, pattern: str) -> str:
        return "-" if value is None else pattern.format(value)

    for row in rows:
        table.add_row(
            str(row["case"]),
            str(row["img_size"]),
            str(row["format"]),
            str(row["precision"]) if row["ok"] else f"✗ {row['reason']}",
            number(row["size_mb"], "{:.1f}"),
            number(row["map"], "{:.4f}"),
            number(row["map50"], "{:.4f}"),
            number(row["latency_ms"], "{:.1f}"),
            number(row["speedup_vs_pytorch"], "{:.2f}x"),
            number(row["speedup_vs_onnxruntime_fp32"], "{:.2f}x"),
        )
    Console(width=170).print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    import openvino

    args.output.write_text(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__,
                "openvino": openvino.__version__,
                "threads": torch.get_num_threads(),
                "rows": rows,
            },
            indent=2,
        )
    )


INTERLEAVED = (  # (label, export format, int8, what OpenVINO computes float layers in)
    ("onnxruntime fp32", "onnx", False, None),
    ("onnxruntime int8", "onnx", True, None),
    ("openvino fp32", "openvino", False, "fp32"),
    ("openvino bf16", "openvino", False, "bf16"),
    ("openvino int8", "openvino", True, "fp32"),
)


def interleaved_latency(args: argparse.Namespace) -> None:
    """The deployment runtimes timed in turn, ``--rounds`` times, so that a busy spell of a shared
    machine hits each of them alike; each figure is the median over rounds of the median of
    ``--repeats`` runs (one fixed letterboxed val image, batch 1, after warm-up)."""
    from yolor_cli.engine.config import load_data_config
    from yolor_cli.engine.data.loader import build_dataset
    from yolor_cli.engine.deploy.latency import median_latency_ms
    from yolor_cli.engine.infer.exported import load_exported

    data = load_data_config(args.data)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, weights, img_size, calib in deploy_cases(args, Path(folder)):
            image = build_dataset(data, "val", img_size=img_size, batch_size=1)[0].image.numpy()[None] / 255.0
            runners = {}
            for name, export_format, int8, compute in INTERLEAVED:
                made = export(
                    ExportRequest(
                        weights=weights,
                        formats=export_format,
                        img_size=img_size,
                        output=Path(folder) / f"{label}_{img_size}_{name.replace(' ', '_')}",
                        data=args.data,
                        int8=int8,
                        calib_images=calib,
                        max_drop=float("inf"),
                    )
                )
                path = made.files[0].path
                runners[name] = load_exported(path, torch.device("cpu"), compute, back_to_back=True).run_batch
            rounds: dict[str, list[float]] = {name: [] for name in runners}
            batch = [image.astype(np.float32)]
            for _ in range(args.rounds):
                for name, run in runners.items():
                    rounds[name].append(median_latency_ms(run, batch, runs=args.repeats))
            baseline = float(np.median(rounds["onnxruntime fp32"]))
            for name, values in rounds.items():
                latency = float(np.median(values))
                rows.append(
                    {
                        "case": label,
                        "img_size": img_size,
                        "runtime": name,
                        "latency_ms": latency,
                        "round_medians_ms": values,
                        "speedup_vs_onnxruntime_fp32": baseline / latency,
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr)
    table = Table(title=f"Interleaved latency, batch 1, median of {args.rounds} rounds x {args.repeats} runs")
    for column in ("case", "px", "runtime", "ms", "vs onnxruntime fp32", "round medians"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row["case"]),
            str(row["img_size"]),
            str(row["runtime"]),
            f"{row['latency_ms']:.1f}",
            f"{row['speedup_vs_onnxruntime_fp32']:.2f}x",
            " ".join(f"{value:.1f}" for value in row["round_medians_ms"]),
        )
    Console(width=170).print(table)
    output = args.output if args.output != DEFAULT_OUTPUT else DEFAULT_OUTPUT.with_name("export_latency.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", action="append", help="bundled cfg names (default: yolor_csp_tiny, yolor_csp)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--dynamo", action="store_true", help="also compare the two torch ONNX exporters")
    parser.add_argument("--deploy", action="store_true", help="measure the deployment formats (INT8, bf16, OpenVINO)")
    parser.add_argument("--data", type=Path, help="--deploy: data.yaml (val scores, train calibrates INT8)")
    parser.add_argument("--weights", type=Path, action="append", help="--deploy: trained checkpoints to measure")
    parser.add_argument("--sizes", default="320,640", help="--deploy: image sizes for the --weights cases")
    parser.add_argument("--random-csp", action="store_true", help="--deploy: also yolor_csp, random, and half-pruned")
    parser.add_argument("--formats", default=DEPLOY_FORMATS, help="--deploy: benchmark formats")
    parser.add_argument("--interleaved", action="store_true", help="time the runtimes in turn (with --deploy's cases)")
    parser.add_argument("--rounds", type=int, default=5, help="--interleaved: rounds of timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.interleaved:
        if args.data is None:
            parser.error("--interleaved needs --data")
        interleaved_latency(args)
        return
    if args.deploy:
        if args.data is None:
            parser.error("--deploy needs --data")
        if args.output == DEFAULT_OUTPUT:
            args.output = DEPLOY_OUTPUT
        measure_deploy(args)
        return
    cfgs = args.cfg or ["yolor_csp_tiny", "yolor_csp"]
    exporters = compare_exporters(cfgs) if args.dynamo else None
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for cfg_name in cfgs:
            torch.manual_seed(0)
            model = build_model(load_cfg(cfg_name))
            source = Path(folder) / f"{cfg_name}.pt"
            save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict()), source)
            output = Path(folder) / f"{cfg_name}_p.pt"
            pruned = prune(PruneRequest(source, GlobalTarget(target_macs=0.5), latency=False, output=output))
            assert pruned.output is not None
            for label, weights in (("unpruned", source), ("pruned", pruned.output)):
                params = count_parameters(load_model(weights=weights).model)
                for img_size in SIZES:
                    start = time.perf_counter()
                    result = export(
                        ExportRequest(
                            weights=weights,
                            formats="onnx",
                            img_size=img_size,
                            output=Path(folder) / f"{weights.stem}_{img_size}.onnx",
                        )
                    )
                    export_s = time.perf_counter() - start
                    eager = eager_latency_ms(weights, img_size, args.repeats)
                    runtime = onnx_latency_ms(result.files[0].path, img_size, args.threads, args.repeats)
                    rows.append(
                        {
                            "cfg": cfg_name,
                            "model": label,
                            "params": params,
                            "img_size": img_size,
                            "export_s": export_s,
                            "max_abs_diff": result.max_abs_diff,
                            "eager_ms": eager,
                            "onnxruntime_ms": runtime,
                            "speedup": eager / runtime,
                        }
                    )
                    print(json.dumps(rows[-1]), file=sys.stderr)
    table = Table(title=f"CPU latency, batch 1, fused ({args.threads} threads, median of {args.repeats})")
    for column in ("model", "params", "px", "export s", "max |diff|", "eager ms", "onnxruntime ms", "speed-up"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row['cfg']} {row['model']}",
            f"{row['params']:,}",
            str(row["img_size"]),
            f"{row['export_s']:.1f}",
            f"{row['max_abs_diff']:.1e}",
            f"{row['eager_ms']:.1f}",
            f"{row['onnxruntime_ms']:.1f}",
            f"{row['speedup']:.2f}x",
        )
    Console(width=160).print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__,
                "threads": args.threads,
                "repeats": args.repeats,
                "cases": rows,
                "exporters": exporters,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
