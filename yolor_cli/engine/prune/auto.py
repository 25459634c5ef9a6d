"""``yolor prune auto``: prune in steps towards a MACs (or latency, on ``--runtime``) target, fine-tune after each
step with the normal trainer, and stop before a step costs more mAP50-95 than ``--max-drop`` allows.

Step k of S brings the model to ``1 - k * (1 - target) / S`` of the input's MACs: small cuts with
training in between lose less than one deep cut. Each step has three phases, each closed by an
atomic write, so that ``--resume`` after Ctrl-C or kill -9 never redoes a finished one:

1. prune the previous step's model (the input for step 1) -> ``step_K_pruned.pt``, then the step's
   after-prune figures in ``auto.json``;
2. fine-tune it in ``step_K/`` with ``yolor train``'s engine (same hooks, same checkpoint files): an
   interrupted fine-tune continues through the trainer's own resume, a finished one (its last.pt
   stripped) is not redone;
3. validate -> ``step_K.pt``, then the after-fine-tune figures in ``auto.json`` (and steps.csv/png).

The final fine-tune works the same way in ``final/`` and ends in ``pruned.pt``. Then the final table
(engine/prune/final_table.py): with ``--reference`` the unpruned input trained as many epochs as the run
spent, in ``reference/`` (through the same resume rules, so --resume does not train it again), and the
table itself, kept in ``auto.json`` once made.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from yolor_cli.engine.config import DataConfig, load_data_config
from yolor_cli.engine.deploy.runtime_latency import check_runtime, runtime_latency_ms
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.evaluate.compare import LARGEST_CHANGES, ImageChange, image_changes
from yolor_cli.engine.evaluate.evaluator import EvalResult, check_model_classes, evaluate_model
from yolor_cli.engine.model.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.prune.allocate import ALLOCATORS, AllocationContext
from yolor_cli.engine.prune.auto_group import NO_GROUP, FineTuneGroup, lead_or_follow
from yolor_cli.engine.prune.final_table import (
    INPUT_ROW,
    INT8_ROW,
    INT8_RUNTIME,
    PRUNED_ROW,
    REFERENCE_ROW,
    FinalTable,
    TableRow,
    available_runtimes,
    int8_scores,
    latencies,
)
from yolor_cli.engine.prune.gradual import gradual_hooks, saved_state, stop_note
from yolor_cli.engine.prune.pruning import check_supported, rebuild
from yolor_cli.engine.prune.request import AutoPruneRequest
from yolor_cli.engine.prune.run import latency_ms, measure
from yolor_cli.engine.prune.steps import (
    CSV_NAME,
    PLOT_NAME,
    STATE_NAME,
    AutoState,
    StepRecord,
    step_fraction,
    target_fraction,
    write_steps,
)
from yolor_cli.engine.reporting import Reporter, SilentReporter
from yolor_cli.engine.runs import new_run_dir
from yolor_cli.engine.runtime import select_device
from yolor_cli.engine.tracking.options import tracking_settings
from yolor_cli.engine.tracking.tracker import INPUT_RUN_TAG, NO_TRACKING, RUN_NAME_TAG, Tracker, start_tracking
from yolor_cli.engine.train import distributed
from yolor_cli.engine.train.distill import check_teacher
from yolor_cli.engine.train.run import HookFactory, TrainOptions, plan_training, train

OUTPUT_NAME = "pruned.pt"
TEACHER_NAME = "teacher.pt"  # the input as an ordinary checkpoint, when it needed --cfg or --trust-pickle
FINAL_NAME = "final"
GRADUAL_NAME = "gradual"  # --schedule gradual: the one training run's folder
INPUT_NAME = "input.pt"  # the input as an ordinary checkpoint, when it needed --cfg or --trust-pickle
REFERENCE_NAME = "reference"  # --reference: the unpruned input's training run's folder
# A step asked to keep more than this of the current model's MACs prunes nothing: the previous step
# already overshot its share (the MACs search lands within 5 %), and a cut of 1 % is within that noise.
NOTHING_TO_PRUNE = 0.99


@dataclass
class AutoPruneResult:
    run_dir: Path
    input: StepRecord
    steps: list[StepRecord]
    final: StepRecord  # the kept model after the final fine-tune (its step: the kept step)
    output: Path
    notes: list[str]
    schedule: str = "steps"
    epochs: int = 0  # the training epochs the whole run spent (to train a reference as long)
    table: FinalTable | None = None  # the final table (input, reference, pruned, pruned + INT8)
    is_main: bool = True  # False in the other torchrun processes: rank 0's result, which they do not report
    changes: list[ImageChange] = field(default_factory=list)  # val images pruning changed most, worst first

    def rows(self) -> list[dict[str, object]]:
        return [self.input.row(), *(record.row() for record in self.steps)]

    def latency_runtimes(self) -> dict[str, dict[str, float]]:
        """The input's ("before") and the pruned model's ("after") latency on each runtime of the final
        table, rounded as steps.csv rounds them."""
        table = self.table
        found = {
            key: table.row(name) if table else None for key, name in (("before", INPUT_ROW), ("after", PRUNED_ROW))
        }
        return {key: {k: round(v, 3) for k, v in row.latency_ms.items()} if row else {} for key, row in found.items()}


def validate(
    model: DarknetModel, data: DataConfig, request: AutoPruneRequest, device: torch.device, reporter: Reporter
) -> tuple[float, float]:
    """mAP50 and mAP50-95 on the val split with the shared evaluator, the same way for every model of
    the run (the input's figures are the yardstick of --max-drop)."""
    result = evaluated(model, data, request, device, reporter)
    return result.metrics.map50, result.metrics.map


def evaluated(
    model: DarknetModel, data: DataConfig, request: AutoPruneRequest, device: torch.device, reporter: Reporter
) -> EvalResult:
    """The shared evaluator's result on the val split, as :func:`validate` scores every model of the run."""
    result, _ = evaluate_model(
        model,
        data,
        task="val",
        img_size=request.img_size,
        batch_size=request.batch_size * 2,  # as the trainer validates
        device=device,
        workers=min(request.workers, os.cpu_count() or 1),  # as the trainer caps its loader's
        reporter=reporter,
    )
    return result


def _known_latencies(record: StepRecord) -> dict[str, float]:
    """The latencies the run measured for ``record``'s model already: PyTorch's, and --runtime's."""
    return {"torch": record.latency_ms, **record.runtime_ms}


def _cost(model: DarknetModel, img_size: int, runtime: str) -> tuple[int, int, float, dict[str, float]]:
    """Params, MACs, PyTorch's latency and (for another ``--runtime``) the latency on it."""
    cost = measure(model, img_size, latency=False)
    timed = {} if runtime == "torch" else {runtime: runtime_latency_ms(model, img_size, runtime)}
    return cost.params, cost.macs, latency_ms(model, img_size), timed


def _teacher_copied(request: AutoPruneRequest) -> bool:
    """An input that needed --cfg or --trust-pickle to load is kept as an ordinary checkpoint in the run
    folder, so that the trainer reads the teacher as it reads any of ours."""
    return request.cfg is not None or request.trust_pickle


class AutoRun:
    """A run folder and its state: the steps, the final fine-tune and the files they leave."""

    def __init__(
        self, request: AutoPruneRequest, run_dir: Path, state: AutoState, data: DataConfig, reporter: Reporter
    ) -> None:
        self.request, self.dir, self.state, self.data, self.reporter = request, run_dir, state, data, reporter
        self.allocator = ALLOCATORS[request.allocate]
        self.context = AllocationContext(request, data, run_dir, reporter, state.target_fraction)
        self.device = select_device(request.device)
        self.plot_warned = False
        self.tracker: Tracker = NO_TRACKING  # the command's MLflow run; each fine-tune a run nested in it
        self.group: FineTuneGroup = NO_GROUP  # under torchrun: the processes that train each fine-tune with this one

    # ---- files --------------------------------------------------------------------------------
    def save(self) -> None:
        self.state.save(self.dir)
        if not write_steps(self.dir, self.state) and not self.plot_warned:
            self.plot_warned = True
            self.reporter.warning(f"{PLOT_NAME} needs matplotlib: pip install 'yolor-cli[plots]'")

    def _write_model(self, model: DarknetModel, path: Path) -> None:
        """An ordinary checkpoint: cfg text, plain state_dict, class names."""
        save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=list(self.data.names)), path)

    def teacher(self) -> str | None:
        """The model the fine-tunes distil from: the input (None without --distill)."""
        if not self.request.distill:
            return None
        return str((self.dir / TEACHER_NAME).resolve() if _teacher_copied(self.request) else self.request.weights)

    def _validate(self, model: DarknetModel) -> tuple[float, float]:
        return validate(model, self.data, self.request, self.device, self.reporter)

    # ---- the steps ----------------------------------------------------------------------------
    def step(self, number: int) -> None:
        record = self.state.step(number) or self._prune(number)
        if not record.tuned:
            self._tune(record)
        if self.state.stopped is None and self._too_far(record.map):
            self.state.stopped = number
            self.save()

    def _source(self, number: int) -> DarknetModel:
        if number == 1:
            request = self.request
            return load_model(cfg=request.cfg, weights=request.weights, trust_pickle=request.trust_pickle).model
        return load_model(weights=self.dir / f"step_{number - 1}.pt").model

    def _aim(self) -> None:
        """For a latency target, the MACs fraction the allocator's own plan reaches replaces the
        proportional estimate the run started with (once: the plan is kept in the run folder)."""
        fraction = self.allocator.target(self.context)
        if fraction is None or fraction == self.state.target_fraction:
            return
        self.state.note(
            f"the plan by mAP lost per millisecond on {self.request.runtime} reaches --target-latency-ms "
            f"{self.request.target_latency_ms} at {fraction:.3f} of the input's MACs: the steps aim there"
        )
        self.state.target_fraction = fraction
        self.context = dataclasses.replace(self.context, target_fraction=fraction)
        self.save()

    def _prune(self, number: int) -> StepRecord:
        if self.request.target_latency_ms is not None:
            self._aim()
        model = self._source(number).eval()
        steps, base = self.request.steps, self.state.input.macs
        wanted = step_fraction(number, steps, self.state.target_fraction)
        current = self.state.steps[-1].macs if self.state.steps else base
        relative = wanted * base / current
        self.reporter.info(f"Step {number}/{steps}: pruning to {wanted:.3f} of the input's MACs")
        if relative >= NOTHING_TO_PRUNE:
            self.state.note(f"step {number} pruned nothing: the model was already at {current / base:.3f} of the MACs")
        else:
            try:
                model = rebuild(self.allocator.prune(model, relative, self.context))
            except YolorError as error:
                raise YolorError(
                    f"step {number} (to {wanted:.3f} of the input's MACs, {relative:.3f} of the current "
                    f"model's): {error.message}",
                    hint=error.hint,
                ) from None
        self._write_model(model, self.dir / f"step_{number}_pruned.pt")
        params, macs, latency, timed = _cost(model, self.request.img_size, self.request.runtime)
        map50, map_ = self._validate(model)
        record = StepRecord(number, params, macs, latency, map50, map_, runtime_ms=timed)
        self.state.steps.append(record)
        self.save()
        return record

    def _tune(self, record: StepRecord) -> None:
        name, epochs = f"step_{record.step}", self.request.epochs_per_step
        pruned = self.dir / f"{name}_pruned.pt"
        if epochs:
            model = self._fine_tune(name, pruned, epochs)
            figures = self._validate(model)
        else:  # nothing to fine-tune: the pruned model is the step's model
            model, figures = load_model(weights=pruned).model, (record.map50_pruned, record.map_pruned)
        self._write_model(model, self.dir / f"{name}.pt")
        record.map50, record.map = figures
        self.save()
        self.tracker.metrics(_step_metrics(record, self.state.input.macs), step=record.step)

    def _fine_tune(
        self,
        name: str,
        weights: Path,
        epochs: int,
        hooks: HookFactory | None = None,
        prune_to: float | None = None,
        distill: bool = True,
    ) -> DarknetModel:
        """Train ``weights`` for ``epochs`` in ``run_dir/name``, or continue or take that training as an
        earlier attempt left it. Returns the trained model (its final EMA weights). ``hooks`` and
        ``prune_to``: the gradual run's pruning hook and target; ``distill`` False trains without the
        teacher even under --distill (the reference)."""
        last = self.dir / name / "weights" / "last.pt"
        if last.exists():
            checkpoint = load_checkpoint(last)
            if checkpoint.optimizer_state is None:  # the training ended (its files are stripped)
                return model_from_checkpoint(checkpoint, str(last))
            self.reporter.info(f"Continuing the fine-tune in {self.dir / name}")
            plan = plan_training(TrainOptions(device=self.request.device), resume=True, last=last)
        else:
            self.reporter.info(f"Fine-tuning {epochs} epochs in {self.dir / name}")
            plan = plan_training(self._train_options(name, weights, epochs, prune_to, distill))
        with self.group.fine_tune(plan), self.tracker.child(name) as tracker:
            for note in train(plan, self.reporter, hooks=hooks, tracker=tracker).notes:
                self.state.note(note)
        return model_from_checkpoint(load_checkpoint(last), str(last))

    def _train_options(
        self, name: str, weights: Path, epochs: int, prune_to: float | None = None, distill: bool = True
    ) -> TrainOptions:
        request = self.request
        return TrainOptions(
            data=str(request.data),
            weights=str(weights.resolve()),  # absolute in the fine-tune's opt.yaml, for --resume from elsewhere
            epochs=epochs,
            img_size=request.img_size,
            batch_size=request.batch_size,
            device=request.device,
            workers=request.workers,
            project=str(self.dir),
            name=name,
            exist_ok=True,  # a fine-tune killed before its first last.pt starts again in its folder
            seed=request.seed,
            # the run validates each fine-tuned model itself, as it did the input; a gradual run validates
            # every epoch, for its guard
            noval=prune_to is None,
            teacher=self.teacher() if distill else None,
            prune_to=prune_to,
        )

    # ---- --schedule gradual -------------------------------------------------------------------
    def gradual(self) -> None:
        """One training run of :attr:`AutoPruneRequest.total_epochs` whose hook cuts to the target over its
        first half (guarded by --max-drop against the input's mAP50-95), then ``pruned.pt``."""
        if self.state.final is not None:
            return
        request = self.request
        hooks = gradual_hooks(method=request.method, reference_map=self.state.input.map, max_drop=request.max_drop)
        model = self._fine_tune(
            GRADUAL_NAME, self._input_checkpoint(), request.total_epochs, hooks, self.state.target_fraction
        )
        pruning = saved_state(load_checkpoint(self.dir / GRADUAL_NAME / "weights" / "last.pt").train_options)
        if pruning is not None and pruning.stopped is not None:
            self.state.note(stop_note(pruning))
        map50, map_ = self._validate(model)
        if self._too_far(map_):
            self.state.note(
                f"the gradual run ends at mAP50-95 {map_:.4f}, more than --max-drop {request.max_drop} below the "
                f"input's {self.state.input.map:.4f}"
            )
        self._write_model(model, self.dir / OUTPUT_NAME)
        params, macs, latency, timed = _cost(model, request.img_size, request.runtime)
        record = StepRecord(1, params, macs, latency, map50, map_, map50, map_, runtime_ms=timed)
        self.state.steps, self.state.final = [record], record
        self.save()

    def _input_checkpoint(self) -> Path:
        """The input as a checkpoint the trainer reads (it reads our own only): the given weights, or a
        copy in the run folder of an input that needed --cfg or --trust-pickle."""
        source = Path(self.request.weights or "")
        if _teacher_copied(self.request):
            source = self.dir / INPUT_NAME
            if not source.exists():
                self._write_model(self._source(1), source)
        return source

    def epochs(self) -> int:
        """The training epochs the run spent: every fine-tune's (steps), or the one run's (gradual)."""
        request = self.request
        if request.schedule == "gradual":
            return request.total_epochs if self.state.final is not None else 0
        tuned = sum(1 for record in self.state.steps if record.tuned)
        return tuned * request.epochs_per_step + (request.final_epochs if self.state.final is not None else 0)

    # ---- the end ------------------------------------------------------------------------------
    def check_something_kept(self) -> None:
        first = self.state.step(1)
        if self.state.stopped == 1 and first is not None and first.map is not None:
            before = self.state.input.map
            raise YolorError(
                f"step 1 already falls too far: mAP50-95 {before:.4f} -> {first.map:.4f} (by {before - first.map:.4f}, "
                f"more than --max-drop {self.request.max_drop}); nothing was kept and no {OUTPUT_NAME} written",
                hint="allow more with --max-drop, cut in smaller steps (--steps), fine-tune longer "
                "(--epochs-per-step), or aim at a milder target",
            )

    def _too_far(self, map_: float | None) -> bool:
        """Whether mAP50-95 ``map_`` falls more than --max-drop below the input's."""
        return self.state.input.map - (map_ or 0.0) > self.request.max_drop

    def finish(self) -> None:
        """The final fine-tune of the kept step's model, then pruned.pt."""
        if self.state.final is not None:
            return
        kept = self.state.kept()
        source = self.dir / f"step_{kept.step}.pt"
        if self.request.final_epochs:
            model = self._fine_tune(FINAL_NAME, source, self.request.final_epochs)
            map50, map_ = self._validate(model)
            if self._too_far(map_) and not self._too_far(kept.map):  # the guard holds for the end too
                self.state.note(
                    f"the final fine-tune fell to mAP50-95 {map_:.4f}, more than --max-drop {self.request.max_drop} "
                    f"below the input's {self.state.input.map:.4f}: {OUTPUT_NAME} is step {kept.step}'s model "
                    f"({kept.map:.4f}), the last within the limit (the fine-tuned one stays in {FINAL_NAME}/)"
                )
                model, (map50, map_) = load_model(weights=source).model, (kept.map50, kept.map)
        else:
            model, (map50, map_) = load_model(weights=source).model, (kept.map50, kept.map)
        self._write_model(model, self.dir / OUTPUT_NAME)
        self.state.final = StepRecord(
            kept.step,
            kept.params,
            kept.macs,
            kept.latency_ms,
            kept.map50 or 0.0,
            kept.map or 0.0,
            map50,
            map_,
            runtime_ms=dict(kept.runtime_ms),
        )
        self.save()

    # ---- the final table -----------------------------------------------------------------------
    def _reference(self) -> tuple[float, float]:
        """mAP50 and mAP50-95 of the unpruned input trained as many epochs as the run spent, with the same
        trainer, options and seed, without distillation (it would distil from itself)."""
        epochs = self.epochs()
        if epochs == 0:
            self.state.note("the run trained no epochs: the reference is the input as it is")
            return self.state.input.map50_pruned, self.state.input.map_pruned
        return self._validate(self._fine_tune(REFERENCE_NAME, self._input_checkpoint(), epochs, distill=False))

    def largest_changes(self) -> None:
        """The val images whose detections pruning changed most (input against pruned.pt, the F1 of
        engine/evaluate/compare.py), worst first; measured once and kept in auto.json."""
        if self.state.changes is not None:
            return
        self.reporter.info("Comparing the pruned model's detections with the input's, image by image")
        before = evaluated(self._source(1).eval(), self.data, self.request, self.device, self.reporter)
        pruned = load_model(weights=self.dir / OUTPUT_NAME).model.eval()
        after = evaluated(pruned, self.data, self.request, self.device, self.reporter)
        changes = image_changes(before.detections, before.image_names, after.detections, after.image_names)
        self.state.changes = [change.payload() for change in changes[:LARGEST_CHANGES]]
        self.save()

    def final_table(self) -> None:
        """The final table, made once and kept in auto.json (a resumed finished run shows it again)."""
        state, request, final = self.state, self.request, self.state.final
        if state.table is not None:
            return
        assert final is not None and final.map50 is not None and final.map is not None
        runtimes, notes = available_runtimes()
        for note in notes:
            state.note(note)
        size, first = request.img_size, state.input
        self.reporter.info("Measuring the final table")
        before = latencies(self._source(1).eval(), size, runtimes, _known_latencies(first), self.reporter)
        rows = [TableRow(INPUT_ROW, first.params, first.gflops, before, first.map50_pruned, first.map_pruned)]
        if request.reference:  # the input's architecture: its params, GFLOPs and latencies
            rows.append(TableRow(REFERENCE_ROW, first.params, first.gflops, dict(before), *self._reference()))
        pruned = self.dir / OUTPUT_NAME
        after = latencies(
            load_model(weights=pruned).model.eval(), size, runtimes, _known_latencies(final), self.reporter
        )
        rows.append(TableRow(PRUNED_ROW, final.params, final.gflops, after, final.map50, final.map))
        if INT8_RUNTIME in runtimes:
            assert request.data is not None
            try:
                map50, map_, int8_notes = int8_scores(
                    pruned, self.data, request.data, size, request.calib_images, self.reporter
                )
            except YolorError as error:  # pruned.pt stands: a quantizer's failure costs the row, not the run
                state.note(f"the final table has no pruned + INT8 row: {error.message}")
            else:
                latency = {INT8_RUNTIME: after[INT8_RUNTIME]}
                rows.append(TableRow(INT8_ROW, final.params, final.gflops, latency, map50, map_))
                for note in int8_notes:
                    state.note(note)
        else:
            state.note(
                "the final table has no pruned + INT8 row: it needs the openvino extra "
                "(pip install 'yolor-cli[openvino]')"
            )
        state.table = FinalTable(runtimes, rows).to_dict()
        self.save()

    def notes(self) -> list[str]:
        state, request, final = self.state, self.request, self.state.final
        assert final is not None and final.map is not None
        notes = list(state.notes)
        stopped = state.step(state.stopped) if state.stopped is not None else None
        if stopped is not None and stopped.map is not None:
            notes.append(
                f"step {stopped.step} fell to mAP50-95 {stopped.map:.4f}, {state.input.map - stopped.map:.4f} below "
                f"the input's {state.input.map:.4f} (more than --max-drop {request.max_drop}): the run stopped and "
                f"kept step {final.step} ({final.macs / state.input.macs:.3f} of the MACs)"
            )
        wanted, runtime = request.target_latency_ms, request.runtime
        if wanted is not None and final.latency_on(runtime) > wanted:
            notes.append(
                f"the pruned model measures {final.latency_on(runtime):.1f} ms, still above --target-latency-ms "
                f"{wanted} on {runtime} (the input: {state.input.latency_on(runtime):.1f} ms): latency fell less "
                "than planned"
            )
        return notes

    def result(self) -> AutoPruneResult:
        assert self.state.final is not None
        return AutoPruneResult(
            self.dir,
            self.state.input,
            list(self.state.steps),
            self.state.final,
            self.dir / OUTPUT_NAME,
            self.notes(),
            schedule=self.request.schedule,
            epochs=self.epochs(),
            table=FinalTable.from_dict(self.state.table) if self.state.table is not None else None,
            changes=[ImageChange.from_payload(change) for change in self.state.changes or []],
        )


def _absolute_paths(request: AutoPruneRequest) -> AutoPruneRequest:
    """The request with absolute paths (a cfg that is a file, not a bundled name, too): auto.json
    keeps it, and ``--resume`` may run from another folder than the one that started the run."""
    assert request.weights is not None and request.data is not None
    cfg = request.cfg
    if cfg is not None and Path(cfg).exists():
        cfg = str(Path(cfg).resolve())
    return dataclasses.replace(
        request,
        weights=request.weights.resolve(),
        data=request.data.resolve(),
        project=request.project.resolve(),
        cfg=cfg,
    )


def _origin(saved: AutoPruneRequest, run_dir: Path) -> Path | None:
    """The folder a run with relative paths (auto.json before they were stored absolute) was started
    from: the one its saved ``project`` is relative to, read off where its folder is now."""
    parent, project = run_dir.resolve().parent, saved.project
    if (
        project.is_absolute()
        or ".." in project.parts
        or parent.parts[len(parent.parts) - len(project.parts) :] != (project.parts)
    ):
        return None
    return Path(*parent.parts[: len(parent.parts) - len(project.parts)])


def _resolve_saved_paths(saved: AutoPruneRequest, run_dir: Path) -> AutoPruneRequest:
    """Best effort for an older auto.json with relative paths: each found from the run's starting
    folder when it is there, else taken from the current folder (a missing file is named later)."""
    origin = _origin(saved, run_dir)

    def found(path: Path | None) -> Path | None:
        if path is None or path.is_absolute() or origin is None or not (origin / path).exists():
            return path
        return origin / path

    cfg = saved.cfg
    if cfg is not None and not Path(cfg).is_absolute() and len(Path(cfg).parts) + (Path(cfg).suffix == ".cfg") > 1:
        cfg = str(found(Path(cfg)))  # a path to a cfg file, not a bundled model's name
    return dataclasses.replace(saved, weights=found(saved.weights), data=found(saved.data), cfg=cfg)


def _start(request: AutoPruneRequest, reporter: Reporter) -> AutoRun:
    """A new run: the input checked and measured (latency first: a latency target may refuse it before
    any folder exists), then the run folder and its first state."""
    assert request.weights is not None and request.data is not None  # the request checked them
    check_runtime(request.runtime)  # a missing extra is named before any slow work
    loaded = load_model(cfg=request.cfg, weights=request.weights, trust_pickle=request.trust_pickle)
    model = loaded.model.eval()
    model.check_img_size(request.img_size)
    check_supported(model)
    ALLOCATORS[request.allocate].check(model, request)
    data = load_data_config(request.data)
    check_model_classes(model, data, hint="prune with the data the model was trained on")
    if request.distill:  # the trainer would refuse the teacher only at step 1's fine-tune
        check_teacher(model, loaded.names, model, list(data.names), str(request.weights))
    reporter.info(f"Measuring the input model at {request.img_size} px")
    params, macs, latency, timed = _cost(model, request.img_size, request.runtime)
    fraction, notes = target_fraction(request, timed.get(request.runtime, latency))
    if request.exist_ok and (Path(request.project) / request.name / STATE_NAME).exists():
        raise YolorError(
            f"{Path(request.project) / request.name} holds a prune auto run already",
            hint="continue it with --resume, or drop --exist-ok",
        )
    # Validated before the run folder exists: a run killed here leaves nothing half made to resume.
    map50, map_ = validate(model, data, request, select_device(request.device), reporter)
    run_dir = new_run_dir(request.project, request.name, request.exist_ok)
    request = _absolute_paths(request)
    state = AutoState(
        request.to_dict(), fraction, StepRecord(0, params, macs, latency, map50, map_, map50, map_, runtime_ms=timed)
    )
    for note in [*loaded.notes, *notes]:
        state.note(note)
    run = AutoRun(request, run_dir, state, data, reporter)
    if request.distill and _teacher_copied(request):
        save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=loaded.names), run.teacher())
    run.save()
    return run


TRACKING_FIELDS = ("mlflow", "mlflow_experiment", "mlflow_log_weights")  # the command's, not the run's
# taken from the resuming command
RESUME_OWN = ("device", "workers", "project", "name", "exist_ok", "resume", "report", *TRACKING_FIELDS)


def _run_to_resume(project: Path, name: str) -> Path:
    """``project/name``; with ``--name`` left at its default, the newest unfinished run under
    ``project`` instead (as ``yolor train --resume`` takes the newest last.pt), when there is one."""
    named = project / name
    if name != AutoPruneRequest.name:
        return named
    unfinished = []
    for path in project.glob(f"*/{STATE_NAME}"):
        try:
            if AutoState.load(path.parent).final is None:
                unfinished.append(path)
        except YolorError:
            continue  # a damaged state is named when its own folder is resumed
    if not unfinished:
        return named
    return max(unfinished, key=lambda path: path.stat().st_mtime).parent


def _differs(given: object, default: object, saved: object) -> bool:
    """Whether an option given to ``--resume`` asks for something else than the run has (the same
    file named relatively, from another folder, is the same)."""
    if given == default:
        return False
    if isinstance(given, Path) and isinstance(saved, Path):
        return given.resolve() != saved.resolve()
    return given != saved


def _resume(given: AutoPruneRequest, reporter: Reporter) -> AutoRun:
    """The run in ``project/name`` (as on disk, not numbered), with its own request: a --device or
    --workers given now wins (another machine), other options given now that differ from the run's
    are named in a warning, not used."""
    run_dir = _run_to_resume(Path(given.project), given.name)
    state = AutoState.load(run_dir)
    saved = _resolve_saved_paths(AutoPruneRequest.from_dict(state.request), run_dir)
    workers = given.workers if given.workers != AutoPruneRequest.workers else saved.workers
    tracking = {name: getattr(given, name) for name in TRACKING_FIELDS}
    request = dataclasses.replace(saved, device=given.device or saved.device, workers=workers, **tracking)
    check_runtime(request.runtime)
    ignored = [
        "--" + f.name.replace("_", "-")
        for f in dataclasses.fields(AutoPruneRequest)
        if f.name not in RESUME_OWN and _differs(getattr(given, f.name), f.default, getattr(saved, f.name))
    ]
    if ignored:
        reporter.warning(
            f"--resume continues {run_dir} with its own options ({STATE_NAME}); ignored: {', '.join(ignored)}"
        )
    assert request.data is not None
    return AutoRun(request, run_dir, state, load_data_config(request.data), reporter)


def auto_prune(
    request: AutoPruneRequest, reporter: Reporter | None = None, group: FineTuneGroup | None = None
) -> AutoPruneResult:
    """Run (or with ``request.resume`` continue) ``yolor prune auto``; see the module's docstring.
    Under torchrun rank 0 runs it with ``group``, the processes that train each fine-tune with it
    (engine/prune/auto_group.py)."""
    reporter = reporter or SilentReporter()
    if distributed.wants_launch(request.device):
        raise YolorError(
            "prune auto runs one process per device; torchrun starts them",
            hint="give one device (e.g. --device 0), or start one process per GPU: "
            "torchrun --nproc-per-node 2 -m yolor_cli prune auto ...",
        )
    if group is None and distributed.under_torchrun():
        return lead_or_follow(request.device, request.schedule, lambda group: auto_prune(request, reporter, group))
    settings = tracking_settings(
        mlflow=request.mlflow,
        experiment=request.mlflow_experiment,
        log_weights=request.mlflow_log_weights,
        default_experiment=Path(request.project).name or "prune",
    )
    # A resumed run continues its MLflow run (its id is kept in auto.json), a new one starts its own
    # before the run folder's files are written (teacher.pt records it).
    resumed = _resume(request, reporter) if request.resume else None
    resume_run_id = resumed.state.mlflow_run_id if resumed is not None else None
    with start_tracking(settings, reporter, command="prune auto", resume_run_id=resume_run_id) as tracker:
        run = resumed or _start(request, reporter)
        run.tracker = tracker
        if tracker.run_id is not None and run.state.mlflow_run_id != tracker.run_id:
            run.state.mlflow_run_id = tracker.run_id
            run.save()
        run.group = group or NO_GROUP
        _describe_run(run)
        result = _auto_prune(run)
        tracker.metrics(
            {f"final/{key}": value for key, value in _step_metrics(run.state.final, run.state.input.macs).items()}
        )
        tracker.artifacts([run.dir / name for name in (CSV_NAME, PLOT_NAME, STATE_NAME)])
        if tracker.log_weights:
            tracker.artifact(run.dir / OUTPUT_NAME, "weights")
        return result


def _describe_run(run: AutoRun) -> None:
    """The MLflow run's name and tags (the input's run: lineage), its params (the request), and the
    input's figures at step 0; a continued run (--resume) has its params and step 0 already."""
    request, tracker = run.request, run.tracker
    input_run = None
    if request.weights is not None:
        try:
            input_run = load_checkpoint(request.weights).mlflow_run_id
        except YolorError:  # an official file (needs --cfg): no run of ours wrote it
            input_run = None
    tracker.tags(
        {
            RUN_NAME_TAG: run.dir.name,
            "yolor.run_dir": str(run.dir.resolve()),
            "yolor.cfg": request.cfg or f"from {request.weights}",
            "yolor.data": request.data,
            INPUT_RUN_TAG: input_run,
        }
    )
    if tracker.continued:
        return
    tracker.params({k: v for k, v in request.to_dict().items() if k not in TRACKING_FIELDS})
    tracker.metrics(_step_metrics(run.state.input, run.state.input.macs), step=0)


def _step_metrics(record: StepRecord | None, input_macs: int) -> dict[str, float | None]:
    """A step's figures as MLflow metrics (the step number is their step)."""
    if record is None:
        return {}
    return {
        "macs_fraction": record.macs / input_macs,
        "params": float(record.params),
        "latency_ms": record.latency_ms,
        "map50_pruned": record.map50_pruned,
        "map_pruned": record.map_pruned,
        "map50": record.map50,
        "map": record.map,
    }


def _auto_prune(run: AutoRun) -> AutoPruneResult:
    if run.state.final is not None:
        run.state.note(f"{run.dir} had finished: nothing was done (give --name to resume another run)")
    if run.request.schedule == "gradual":
        run.gradual()
    else:
        for number in range(1, run.request.steps + 1):
            if run.state.stopped is not None:
                break
            run.step(number)
        run.check_something_kept()
        run.finish()
    run.final_table()
    run.largest_changes()
    return run.result()
