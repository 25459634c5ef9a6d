"""The records of ``yolor prune auto``: one per model (the input, each step, the final fine-tune), the
state file that lets a run continue where it stopped, the steps.csv / steps.png written from it, and
the MACs fraction each step aims at.

``auto.json`` is the run's single source of truth and is only ever replaced whole (atomically): a
step's figures appear in it only after the file they describe is on disk, so whatever a kill -9
interrupts is either recorded complete or redone.

steps.csv's ``latency_ms`` is PyTorch's (fp32, fused, CPU, batch 1), measured for every run so runs
compare; a run with ``--runtime`` other than torch adds ``latency_ms_<runtime>`` (e.g.
``latency_ms_openvino-int8``) beside it, the figure ``--target-latency-ms`` is compared with.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yolor_cli.engine.errors import MissingDependencyError, YolorError
from yolor_cli.engine.evaluate.plots import plot_prune_steps
from yolor_cli.engine.files import atomic_write
from yolor_cli.engine.prune.request import AutoPruneRequest

STATE_NAME = "auto.json"
STATE_VERSION = 1
CSV_NAME = "steps.csv"
PLOT_NAME = "steps.png"
# Latency is taken as proportional to the MACs, which holds only while the convs dominate: below a
# tenth of the MACs fixed costs (memory traffic, layer overheads, threads) do, and cuts that deep
# wreck accuracy anyway.
LATENCY_MIN_FRACTION = 0.1
CSV_COLUMNS = ("step", "params", "macs", "gflops", "latency_ms", "map50_pruned", "map_pruned", "map50", "map")
RUNTIME_COLUMN = "latency_ms_{}"  # a --runtime's latency, after latency_ms


def csv_columns(runtimes: list[str]) -> tuple[str, ...]:
    """steps.csv's columns for a run that timed ``runtimes`` besides PyTorch."""
    at = CSV_COLUMNS.index("latency_ms") + 1
    return (*CSV_COLUMNS[:at], *(RUNTIME_COLUMN.format(name) for name in runtimes), *CSV_COLUMNS[at:])


@dataclass
class StepRecord:
    """One model of the run. ``map50_pruned``/``map_pruned`` are measured right after pruning,
    ``map50``/``map`` after fine-tuning (None while that is still to do). For the input (step 0)
    both pairs are the input's figures; for the final record, the pair "pruned" is the kept step's
    fine-tuned model and the other the same model after the final fine-tune."""

    step: int
    params: int
    macs: int  # multiply-adds of one image at the run's --img-size
    latency_ms: float  # PyTorch fp32, CPU, fused, batch 1
    map50_pruned: float
    map_pruned: float
    map50: float | None = None
    map: float | None = None
    runtime_ms: dict[str, float] = field(default_factory=dict)  # --runtime (not torch) -> its latency

    def latency_on(self, runtime: str) -> float:
        """The latency on ``runtime`` (torch: ``latency_ms``)."""
        return self.latency_ms if runtime == "torch" else self.runtime_ms[runtime]

    @property
    def gflops(self) -> float:
        return 2 * self.macs / 1e9

    @property
    def tuned(self) -> bool:
        return self.map is not None

    def row(self) -> dict[str, Any]:
        """The steps.csv row (and the ``--json`` one): the figures, GFLOPs included, rounded for reading."""
        values = {**asdict(self), "gflops": round(self.gflops, 6), "latency_ms": round(self.latency_ms, 3)}
        timed = {RUNTIME_COLUMN.format(name): round(ms, 3) for name, ms in self.runtime_ms.items()}
        return {**{column: values[column] for column in CSV_COLUMNS}, **timed}


@dataclass
class AutoState:
    """What ``--resume`` needs: the request as first given, the input's figures, the steps done so
    far (the last one may still be fine-tuning), where the guard stopped and the final record."""

    request: dict[str, Any]
    target_fraction: float  # of the input's MACs, for the last step (from the latency target: fixed once)
    input: StepRecord
    steps: list[StepRecord] = field(default_factory=list)
    stopped: int | None = None  # the step whose fine-tuned model fell further than --max-drop
    final: StepRecord | None = None
    notes: list[str] = field(default_factory=list)  # said while the run went; said again on resume
    table: dict[str, Any] | None = None  # the final table (final_table.FinalTable.to_dict), once made
    mlflow_run_id: str | None = None  # the run's MLflow run (tracking on), which a --resume continues
    # The val images whose detections changed most from the input to pruned.pt, worst first (at most
    # LARGEST_CHANGES, ImageChange payloads); None until measured
    changes: list[dict[str, Any]] | None = None

    def step(self, number: int) -> StepRecord | None:
        return next((record for record in self.steps if record.step == number), None)

    def kept(self) -> StepRecord:
        """The last fine-tuned step within --max-drop (the input when none is)."""
        within = [r for r in self.steps if r.tuned and (self.stopped is None or r.step < self.stopped)]
        return within[-1] if within else self.input

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    def rows(self) -> list[dict[str, Any]]:
        return [self.input.row(), *(record.row() for record in self.steps)]

    def columns(self) -> tuple[str, ...]:
        return csv_columns(list(self.input.runtime_ms))

    def save(self, run_dir: Path) -> None:
        payload = {
            "version": STATE_VERSION,
            "request": self.request,
            "target_fraction": self.target_fraction,
            "input": asdict(self.input),
            "steps": [asdict(record) for record in self.steps],
            "stopped": self.stopped,
            "final": asdict(self.final) if self.final is not None else None,
            "notes": self.notes,
            "table": self.table,
            "mlflow_run_id": self.mlflow_run_id,
            "changes": self.changes,
        }
        data = (json.dumps(payload, indent=1) + "\n").encode()
        atomic_write(run_dir / STATE_NAME, lambda stream: stream.write(data))

    @classmethod
    def load(cls, run_dir: Path) -> AutoState:
        path = run_dir / STATE_NAME
        if not path.is_file():
            raise YolorError(
                f"no prune auto run to resume in {run_dir} (it has no {STATE_NAME})",
                hint="pass the --project and --name of the run folder as it is on disk (e.g. --name exp2); "
                "a run stopped before its input was measured has nothing to resume: start it again",
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw["version"] != STATE_VERSION:
                raise YolorError(
                    f"{path} was written by another yolor-cli (state version {raw['version']!r}); "
                    f"this one reads version {STATE_VERSION}"
                )
            return cls(
                request=dict(raw["request"]),
                target_fraction=float(raw["target_fraction"]),
                input=StepRecord(**raw["input"]),
                steps=[StepRecord(**record) for record in raw["steps"]],
                stopped=raw["stopped"],
                final=StepRecord(**raw["final"]) if raw["final"] is not None else None,
                notes=list(raw["notes"]),
                table=raw.get("table"),  # absent from runs that finished before the final table existed
                mlflow_run_id=raw.get("mlflow_run_id"),  # absent from runs made before tracking existed
                changes=raw.get("changes"),  # absent from runs that finished before it was measured
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise YolorError(
                f"{path} is damaged ({type(error).__name__}: {error})", hint="start the run again under another --name"
            ) from None


def write_steps(run_dir: Path, state: AutoState) -> bool:
    """steps.csv and steps.png from the state, rewritten whole after every change (both are small).
    Returns False when steps.png was skipped for want of matplotlib (the caller says so once)."""
    rows = state.rows()
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=state.columns(), lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    payload = text.getvalue().encode()
    atomic_write(run_dir / CSV_NAME, lambda stream: stream.write(payload))
    final = state.final
    try:
        plot_prune_steps(rows, run_dir / PLOT_NAME, final=(final.gflops, final.map) if final and final.tuned else None)
    except MissingDependencyError:
        return False
    return True


def step_fraction(step: int, steps: int, target: float) -> float:
    """The input's MACs fraction that step ``step`` of ``steps`` brings the model to."""
    return 1 - step * (1 - target) / steps


def target_fraction(request: AutoPruneRequest, latency_before: float) -> tuple[float, list[str]]:
    """The last step's MACs fraction: the target itself, or the latency target (``latency_before`` is
    the input's on ``--runtime``) as a MACs one, proportional (a sensitivity plan by milliseconds
    replaces it once the run has its plan)."""
    if request.target_macs is not None:
        return request.target_macs, []
    wanted = request.target_latency_ms
    assert wanted is not None  # the request holds exactly one target
    if wanted >= latency_before:
        raise YolorError(
            f"--target-latency-ms {wanted} is not below the input model's {latency_before:.1f} ms "
            f"({request.runtime}, CPU, batch 1, at {request.img_size} px): there is nothing to prune for",
            hint="give a lower target (the latency is measured on this machine)",
        )
    fraction = wanted / latency_before
    notes = [
        f"--target-latency-ms {wanted}: the input measures {latency_before:.1f} ms on {request.runtime}, so the "
        "steps aim at "
        f"{max(fraction, LATENCY_MIN_FRACTION):.3f} of its MACs (latency taken as proportional to them)"
    ]
    if fraction < LATENCY_MIN_FRACTION:
        notes.append(
            f"that target asks for {fraction:.3f} of the MACs; pruning stops at {LATENCY_MIN_FRACTION} of them, "
            "below which fixed costs dominate the latency"
        )
    return max(fraction, LATENCY_MIN_FRACTION), notes
