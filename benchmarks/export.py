"""CPU latency of PyTorch eager against onnxruntime, for yolor_csp_tiny and yolor_csp at 320 and
640 px, unpruned and pruned (``prune global --target-macs 0.5``, L1), batch 1, fused, random weights
(latency does not depend on the values). Each ONNX file is made by ``yolor export``'s engine, so the
export time and its verified max |diff| are reported too. Prints a table and writes JSON.

    python benchmarks/export.py [--repeats 5] [--threads 2] [--cfg yolor_csp_tiny --cfg yolor_csp] [--dynamo]

``--dynamo`` also times torch's dynamo-based exporter (``torch.onnx.export(dynamo=True)``, needs
``pip install onnxscript``) against the TorchScript-based one ``yolor export`` uses, at 640 px.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", action="append", help="bundled cfg names (default: yolor_csp_tiny, yolor_csp)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--dynamo", action="store_true", help="also compare the two torch ONNX exporters")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
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
