"""The final table of ``yolor prune auto``: the input, the reference (``--reference``), the pruned model
and the pruned model in INT8, side by side: params, GFLOPs, latency on every runtime installed, mAP50
and mAP50-95 on the val split.

Every latency is :func:`runtime_latency_ms`'s (the model exported as it would deploy, CPU, batch 1, at
the run's ``--img-size``); a runtime whose extra is missing is left out, and a note names the extra.
The reference has the input's architecture, so it shares the input's params, GFLOPs and latencies.
``openvino-int8`` is a runtime like the others: the input's and the pruned model's INT8 latencies are
what the INT8 speed-up of pruning is read from; the pruned + INT8 row is the pruned model quantized as
``yolor export --format openvino --int8`` quantizes it (NNCF, calibrated on ``--calib-images`` training
images), scored through OpenVINO by the shared evaluator and written beside ``pruned.pt``; its latency is
the pruned model's on ``openvino-int8``.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yolor_cli.engine.config import DataConfig
from yolor_cli.engine.deploy.export import export
from yolor_cli.engine.deploy.int8 import Int8Maker
from yolor_cli.engine.deploy.outputs import output_paths
from yolor_cli.engine.deploy.request import LATENCY_RUNTIMES, ExportRequest
from yolor_cli.engine.deploy.runtime_latency import check_runtime, runtime_latency_ms
from yolor_cli.engine.errors import MissingDependencyError
from yolor_cli.engine.infer import onnx_model
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.reporting import Reporter
from yolor_cli.engine.tracking.tracker import NO_TRACKING

INPUT_ROW, REFERENCE_ROW, PRUNED_ROW, INT8_ROW = "input", "reference", "pruned", "pruned + INT8"
INT8_RUNTIME = "openvino-int8"  # the runtime the pruned + INT8 row runs on
INT8_NAME = "pruned_int8_openvino_model"  # where yolor export --int8 would put it, beside pruned.pt
NO_MAX_DROP = float("inf")  # the table reports the INT8 mAP; it refuses no file


@dataclass
class TableRow:
    """One model of the final table. ``latency_ms``: runtime -> milliseconds, for the runtimes that model
    was timed on (the INT8 row: openvino-int8 only)."""

    model: str
    params: int
    gflops: float
    latency_ms: dict[str, float]
    map50: float
    map: float

    def payload(self) -> dict[str, Any]:
        """The ``--json`` object: the figures rounded for reading, as steps.csv rounds them."""
        return {
            "model": self.model,
            "params": self.params,
            "gflops": round(self.gflops, 6),
            "latency_ms": {name: round(ms, 3) for name, ms in self.latency_ms.items()},
            "map50": self.map50,
            "map": self.map,
        }


@dataclass
class FinalTable:
    """The rows in order (input, reference, pruned, pruned + INT8; the optional ones only when made), and
    the runtimes timed (the table's latency columns, in :data:`LATENCY_RUNTIMES` order)."""

    runtimes: list[str]
    rows: list[TableRow] = field(default_factory=list)

    def row(self, model: str) -> TableRow | None:
        return next((row for row in self.rows if row.model == model), None)

    def to_dict(self) -> dict[str, Any]:
        return {"runtimes": list(self.runtimes), "rows": [asdict(row) for row in self.rows]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinalTable:
        return cls(list(values["runtimes"]), [TableRow(**row) for row in values["rows"]])


def available_runtimes() -> tuple[list[str], list[str]]:
    """The runtimes whose packages are installed, and a note for each one left out (naming its extra)."""
    found, notes = [], []
    for runtime in LATENCY_RUNTIMES:
        try:
            check_runtime(runtime)
        except MissingDependencyError as error:
            notes.append(f"the final table has no {runtime} latency: {error.message} ({error.hint})")
            continue
        found.append(runtime)
    return found, notes


def latencies(
    model: DarknetModel, img_size: int, runtimes: list[str], known: dict[str, float], reporter: Reporter
) -> dict[str, float]:
    """``model``'s latency on each of ``runtimes``: those in ``known`` (measured earlier in the run) as they
    are, the others measured now."""
    timed = {}
    for runtime in runtimes:
        if runtime not in known:
            reporter.info(f"Timing the model on {runtime}")
        timed[runtime] = known[runtime] if runtime in known else runtime_latency_ms(model, img_size, runtime)
    return timed


def int8_scores(
    pruned: Path, data: DataConfig, data_file: Path, img_size: int, calib_images: int, reporter: Reporter
) -> tuple[float, float, list[str]]:
    """mAP50 and mAP50-95 of ``pruned`` quantized as ``yolor export --format openvino --int8`` does (the
    verified fp32 ONNX file first, NNCF on ``calib_images`` training images), scored on the val split
    through OpenVINO, and the notes the quantizer left. The IR is written beside ``pruned`` as
    :data:`INT8_NAME` (an earlier attempt's is replaced), whatever its mAP: the table shows the figure."""
    target = output_paths(pruned, ["openvino"], pruned.with_name(INT8_NAME), overwrite=True, int8=True)["openvino"]
    with tempfile.TemporaryDirectory(prefix="yolor-final-") as scratch:
        reporter.info("Quantizing the pruned model to INT8 (OpenVINO, NNCF) for the final table")
        fp32 = (
            export(
                ExportRequest(
                    weights=pruned,
                    formats="onnx",
                    img_size=img_size,
                    output=Path(scratch) / "pruned.onnx",
                    data=data_file,
                ),
                tracker=NO_TRACKING,  # a scratch file of prune auto's run, not an export of its own
            )
            .files[0]
            .path
        )
        maker = Int8Maker(
            fp32,
            onnx_model.read_metadata(fp32.read_bytes()),
            data=data,
            img_size=img_size,
            batch=1,
            calib_images=calib_images,
            max_drop=NO_MAX_DROP,
            reporter=reporter,
        )
        report = maker.make("openvino", target)
    return report.map50_int8, report.map_int8, maker.notes
