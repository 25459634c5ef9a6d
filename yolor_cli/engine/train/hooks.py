"""What a training run does around its loop, one hook per job: validation, results.csv and
results.png, the seed's checkpoint set, batch pictures, TensorBoard and MLflow (rank 0 only), and closing
mosaic for the last epochs (every rank: each process has its own dataset and loader workers)."""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from yolor_cli.engine.config import DataConfig
from yolor_cli.engine.data.dataset import DetectionDataset
from yolor_cli.engine.data.images import write_image
from yolor_cli.engine.errors import MissingDependencyError
from yolor_cli.engine.evaluate.evaluator import evaluate_model
from yolor_cli.engine.evaluate.metrics import Metrics
from yolor_cli.engine.evaluate.plots import plot_results
from yolor_cli.engine.files import atomic_write, interrupts_deferred
from yolor_cli.engine.infer.drawing import batch_mosaic
from yolor_cli.engine.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from yolor_cli.engine.reporting import Reporter
from yolor_cli.engine.tracking.tracker import Tracker
from yolor_cli.engine.train.trainer import LOSS_NAMES, Trainer, TrainHook, TrainState, class_maps

LAST_EPOCHS_KEPT = 5  # last_NNN.pt for the final epochs
BEST_HISTORY_FROM = 200  # best_NNN.pt for improvements after this epoch
METRIC_NAMES = ("precision", "recall", "map50", "map")
VAL_LOSS_NAMES = tuple(f"val_{name}" for name in LOSS_NAMES)
RESULT_COLUMNS = ["epoch", *LOSS_NAMES, *METRIC_NAMES, *VAL_LOSS_NAMES, "lr0", "lr1", "lr2"]
BATCH_PLOTS = 3  # train_batch0-2.jpg from the first batches of a new run
PER_CLASS_TABLE_MAX = 50  # classes listed in the final validation table
# --close-mosaic default: Ultralytics' close_mosaic=10; the last epochs without mosaic learned better
# than mosaic to the end (benchmarks/README.md#peer-train).
DEFAULT_CLOSE_MOSAIC = 10


def _f(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


class ValidationHook(TrainHook):
    """Evaluate the EMA model with the shared evaluator: every epoch from ``period`` on, always the last."""

    def __init__(
        self, data: DataConfig, *, img_size: int, batch_size: int, noval: bool, period: int, reporter: Reporter
    ) -> None:
        self.data, self.img_size, self.batch_size = data, img_size, batch_size
        self.noval, self.period, self.reporter = noval, period, reporter
        self.noted: set[str] = set()  # the evaluator's notes, said once a run rather than every epoch

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        final = state.epoch == state.epochs - 1
        state.metrics, state.fitness, state.val_losses = None, None, None
        if (self.noval or state.epoch < self.period) and not final:
            return
        result, _ = evaluate_model(
            trainer.ema.ema,
            self.data,
            task="val",
            img_size=self.img_size,
            batch_size=self.batch_size,
            device=trainer.device,
            loss=trainer.loss,
        )
        for note in result.notes:
            if note not in self.noted:
                self.noted.add(note)
                self.reporter.warning(note)
        m = result.metrics
        state.metrics, state.fitness, state.val_losses = m, m.fitness, result.losses
        rows = [
            ["all", str(result.images), str(result.instances), _f(m.precision), _f(m.recall), _f(m.map50), _f(m.map)]
        ]
        if final and self.data.nc > 1:
            rows += [
                [
                    self.data.names[c.cls],
                    str(c.images),
                    str(c.instances),
                    _f(c.precision),
                    _f(c.recall),
                    _f(c.map50),
                    _f(c.map),
                ]
                for c in m.per_class[:PER_CLASS_TABLE_MAX]
            ]
        self.reporter.table(
            f"Validation after epoch {state.epoch + 1}/{state.epochs}",
            ["Class", "Images", "Labels", "P", "R", "mAP@.5", "mAP@.5:.95"],
            rows,
        )


def read_results(path: Path, before_epoch: int) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as stream:
        return [row for row in csv.DictReader(stream) if int(row["epoch"]) < before_epoch]


class ResultsHook(TrainHook):
    """results.csv: one row per epoch; rows of epochs being redone after a resume are replaced.
    results.png from it at the end (when matplotlib is installed)."""

    records_epoch = True  # written with the checkpoints, as one unit (see TrainHook)

    def __init__(self, path: Path, start_epoch: int, reporter: Reporter) -> None:
        self.path, self.reporter = path, reporter
        self.rows: list[dict[str, Any]] = read_results(path, start_epoch)

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        m, losses = state.metrics, state.val_losses
        values = [
            state.epoch,
            *state.mean_losses.tolist(),
            *((m.precision, m.recall, m.map50, m.map) if m else [""] * len(METRIC_NAMES)),
            *(losses.tolist() if losses is not None else [""] * len(VAL_LOSS_NAMES)),
            *trainer.learning_rates(),
        ]
        self.rows.append(dict(zip(RESULT_COLUMNS, values)))
        lines = [",".join(RESULT_COLUMNS)] + [
            ",".join(str(row.get(c, "")) for c in RESULT_COLUMNS) for row in self.rows
        ]
        payload = ("\n".join(lines) + "\n").encode()
        atomic_write(self.path, lambda stream: stream.write(payload))

    def after_train(self, trainer: Trainer, state: TrainState) -> None:
        self.plot()

    def plot(self) -> None:
        try:
            plot_results(
                [{k: str(v) for k, v in row.items()} for row in self.rows],
                RESULT_COLUMNS[1:],
                self.path.with_suffix(".png"),
            )
        except MissingDependencyError:
            self.reporter.warning("results.png needs matplotlib: pip install 'yolor-cli[plots]'")


def _standard_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Training runs channels-last; files keep the usual contiguous layout."""
    return {name: tensor.contiguous() for name, tensor in state.items()}


LAST = "last.pt"
FINAL_FILES_KEY = "final_files"  # in train_options: marks the final epoch's last.pt, lists the set's other files


def final_files(ckpt: Checkpoint) -> list[str] | None:
    """The other files of the final epoch's checkpoint set, when ``ckpt`` is a run's final last.pt."""
    files = (ckpt.train_options or {}).get(FINAL_FILES_KEY)
    return [str(name) for name in files] if isinstance(files, list) else None


def _stripped(ckpt: Checkpoint) -> Checkpoint:
    """EMA weights only: what evaluation and deployment use, a third of the size."""
    return dataclasses.replace(
        ckpt, model_state=ckpt.best_state(), ema_state=None, optimizer_state=None, scaler_state=None
    )


def finish_checkpoints(weights_dir: Path, final: Checkpoint) -> None:
    """The end of a run, from its final last.pt: the final epoch's other files, then every file stripped.

    last.pt is stripped last, so a last.pt that still holds an optimizer means an unfinished end, and
    ``--resume`` runs this again; every step can be redone (a file written twice is the same file).
    """
    stripped = _stripped(final)
    files = final_files(final) or []
    for name in files:
        save_checkpoint(stripped, weights_dir / name)
    for path in sorted(weights_dir.glob("*.pt")):
        if path.name != LAST and path.name not in files:
            save_checkpoint(_stripped(load_checkpoint(path)), path)
    save_checkpoint(stripped, weights_dir / LAST)


@dataclass(frozen=True)
class _FinalEpoch:
    epoch: int
    files: list[str]  # the checkpoint set's files besides last.pt


class CheckpointHook(TrainHook):
    """The seed's checkpoint set, written each epoch as a whole (Ctrl-C waits for it), last.pt last, so
    a last.pt always belongs to a complete set. The final epoch writes only its last.pt, marked with
    the set's other files, as soon as the epoch is done; the end of the run (``after_train``) writes
    them, every file stripped of the optimizer. Whatever stops the run in between (Ctrl-C, kill -9,
    a failing plot), ``--resume`` finishes the end from that last.pt."""

    records_epoch = True  # written with results.csv, as one unit (see TrainHook)

    def __init__(
        self,
        weights_dir: Path,
        names: list[str],
        options: Any,
        bests: dict[str, float],
        last_class_maps: list[float] | None = None,
    ) -> None:
        self.dir, self.names, self.options = weights_dir, names, options
        self.bests = bests  # best fitness and best P, R, AP50, AP, F so far
        # per-class mAP of the last validation: --image-weights draws by it, and a resumed run needs it
        self.last_class_maps = last_class_maps
        self.epochs_without_gain = 0
        self.final: _FinalEpoch | None = None  # set when the last epoch is done; its files come in after_train

    def _checkpoint(
        self, trainer: Trainer, epoch: int, with_optimizer: bool, final: list[str] | None = None
    ) -> Checkpoint:
        train_options: dict[str, Any] = {
            "options": dataclasses.asdict(self.options),
            "bests": dict(self.bests),
            "class_maps": self.last_class_maps,
        }
        if final is not None:
            train_options[FINAL_FILES_KEY] = final
        train_options.update({hook.state_key: hook.state_dict() for hook in trainer.hooks if hook.state_key})
        return Checkpoint(
            cfg=trainer.model.cfg,
            model_state=_standard_layout(trainer.model.state_dict()),
            names=self.names,
            ema_state=_standard_layout(trainer.ema.ema.state_dict()),
            ema_updates=trainer.ema.updates,
            optimizer_state=trainer.optimizer.state_dict() if with_optimizer else None,
            scaler_state=trainer.scaler.state_dict() if with_optimizer else None,
            epoch=epoch,
            fitness=self.bests.get("fitness"),
            train_options=train_options,
        )

    def save_last(self, trainer: Trainer, epoch: int) -> None:
        save_checkpoint(self._checkpoint(trainer, epoch, with_optimizer=True), self.dir / LAST)

    def _save_final_last(self, trainer: Trainer, final: _FinalEpoch) -> Checkpoint:
        ckpt = self._checkpoint(trainer, final.epoch, with_optimizer=True, final=final.files)
        save_checkpoint(ckpt, self.dir / LAST)
        return ckpt

    def _improvements(self, m: Metrics) -> list[str]:
        improved = []
        f_score = 2 * m.precision * m.recall / (m.precision + m.recall + 1e-16)  # the seed dropped the 2
        for key, value in (
            ("fitness", m.fitness),
            ("p", m.precision),
            ("r", m.recall),
            ("ap50", m.map50),
            ("ap", m.map),
            ("f", f_score),
        ):
            if value > self.bests.get(key, -1.0):
                self.bests[key] = value
                improved.append(key)
        return improved

    def _set_names(self, state: TrainState, improved: list[str]) -> list[str]:
        """The epoch's files besides last.pt."""
        if self.options.nosave:
            return []
        names = [f"best_{key}.pt" if key != "fitness" else "best.pt" for key in improved]
        if "fitness" in improved and state.epoch >= BEST_HISTORY_FROM:
            names.append(f"best_{state.epoch:03d}.pt")
        if state.epoch == 0 or (self.options.save_period > 0 and state.epoch % self.options.save_period == 0):
            names.append(f"epoch_{state.epoch:03d}.pt")
        if state.epoch >= state.epochs - LAST_EPOCHS_KEPT:
            names.append(f"last_{state.epoch:03d}.pt")
        return names

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        m = state.metrics
        improved = self._improvements(m) if m is not None else []
        if m is not None:  # only validated epochs count towards --patience
            self.epochs_without_gain = 0 if "fitness" in improved else self.epochs_without_gain + 1
            self.last_class_maps = class_maps(m, trainer.model.nc)
        if self.options.patience and self.epochs_without_gain >= self.options.patience:
            state.stop = True
        names = self._set_names(state, improved)
        with interrupts_deferred():
            if state.epoch == state.epochs - 1 or state.stop:
                self.final = _FinalEpoch(state.epoch, names)
                self._save_final_last(trainer, self.final)
                return
            if self.options.nosave:
                return
            ckpt = self._checkpoint(trainer, state.epoch, with_optimizer=True)
            for name in [*names, LAST]:
                save_checkpoint(ckpt, self.dir / name)

    def after_train(self, trainer: Trainer, state: TrainState) -> None:
        """The end of the run, from the final epoch's last.pt (written in ``after_epoch``)."""
        final = self.final
        if final is None or final.epoch != state.epoch:  # stopped by a later hook: its epoch's set was written
            final = self.final = _FinalEpoch(state.epoch, [])
            self._save_final_last(trainer, final)
        finish_checkpoints(self.dir, self._checkpoint(trainer, final.epoch, with_optimizer=True, final=final.files))

    def on_interrupt(self, trainer: Trainer) -> None:
        """Leave a last.pt that ``--resume`` continues from (after the final epoch it is already there)."""
        if self.final is None and (self.options.nosave or not (self.dir / LAST).exists()):
            self.save_last(trainer, trainer.finished_epoch)  # the last whole epoch, -1 if none


class BatchPlotHook(TrainHook):
    """train_batch0-2.jpg: the first augmented batches of a run with their labels drawn, to check the data."""

    def __init__(self, save_dir: Path, names: list[str]) -> None:
        self.save_dir, self.names = save_dir, names

    def on_batch(
        self, trainer: Trainer, state: TrainState, batch: int, images: torch.Tensor, targets: torch.Tensor
    ) -> None:
        if state.epoch == 0 and batch < BATCH_PLOTS:
            write_image(self.save_dir / f"train_batch{batch}.jpg", batch_mosaic(images, targets, self.names), 90)


def closing_epochs(close_mosaic: int, epochs: int) -> int:
    """How many final epochs train without mosaic: ``close_mosaic``, but never more than half the run,
    so a run trains at least as many epochs with mosaic as without (a 30-epoch run closes 10 with
    the default, a 10-epoch run 5, a 5-epoch run 2, a 1-epoch run none)."""
    return max(0, min(close_mosaic, epochs // 2))


class CloseMosaicHook(TrainHook):
    """``--close-mosaic``: epochs from ``first_closed`` on train without mosaic and mixup; the other
    augmentations stay (Ultralytics' ``close_mosaic``). Set before each epoch from the epoch number,
    so a resumed run lands in the right phase; the dataset's switch reaches persistent workers."""

    def __init__(self, dataset: DetectionDataset, first_closed: int, reporter: Reporter) -> None:
        self.dataset, self.first_closed, self.reporter = dataset, first_closed, reporter

    def before_epoch(self, trainer: Trainer, state: TrainState) -> None:
        mosaic = state.epoch < self.first_closed
        if mosaic == self.dataset.mosaic:
            return
        self.dataset.set_mosaic(mosaic)
        if not mosaic:
            self.reporter.info(
                f"closing mosaic: epochs {self.first_closed + 1}-{state.epochs} train without mosaic and mixup"
            )


def epoch_scalars(trainer: Trainer, state: TrainState) -> dict[str, float]:
    """An epoch's figures as TensorBoard and MLflow show them: the mean training losses, P, R, mAP50
    and mAP50-95 (``metrics/map``) and the validation losses when the epoch was validated, the
    learning rates of the three parameter groups."""
    scalars = {f"train/{name}_loss": value for name, value in zip(LOSS_NAMES, state.mean_losses.tolist())}
    if state.mean_distill is not None:  # --teacher: the weighted distillation term beside the labels' loss
        scalars["train/distill_loss"] = state.mean_distill
    if state.metrics is not None:
        scalars.update({f"metrics/{name}": getattr(state.metrics, name) for name in METRIC_NAMES})
    if state.val_losses is not None:
        scalars.update({f"val/{name}_loss": value for name, value in zip(LOSS_NAMES, state.val_losses.tolist())})
    scalars.update({f"x/lr{index}": lr for index, lr in enumerate(trainer.learning_rates())})
    return scalars


class TensorBoardHook(TrainHook):
    """Scalars per epoch for ``tensorboard --logdir runs/train`` (only when tensorboard is installed)."""

    def __init__(self, save_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # raises ImportError without tensorboard

        self.writer = SummaryWriter(str(save_dir))

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        for tag, value in epoch_scalars(trainer, state).items():
            self.writer.add_scalar(tag, value, state.epoch)
        self.writer.flush()

    def after_train(self, trainer: Trainer, state: TrainState) -> None:
        self.writer.close()


def tensorboard_hook(save_dir: Path) -> TensorBoardHook | None:
    try:
        return TensorBoardHook(save_dir)
    except ImportError:
        return None


RUN_FILES = ("results.csv", "results.png", "opt.yaml", "hyp.yaml")  # what a tracked run copies to MLflow


class TrackingHook(TrainHook):
    """The run in MLflow: :func:`epoch_scalars` after each epoch, with the epoch as the step; at the end
    the run's files (:data:`RUN_FILES`) and, with --mlflow-log-weights, best.pt (last.pt when the run
    kept no best.pt). Runs after the checkpoint hook's end, so the files are the final ones."""

    def __init__(self, tracker: Tracker, save_dir: Path) -> None:
        self.tracker, self.save_dir = tracker, save_dir

    def after_epoch(self, trainer: Trainer, state: TrainState) -> None:
        self.tracker.metrics(epoch_scalars(trainer, state), step=state.epoch)

    def after_train(self, trainer: Trainer, state: TrainState) -> None:
        self.tracker.artifacts([self.save_dir / name for name in RUN_FILES])
        if self.tracker.log_weights:
            weights = self.save_dir / "weights"
            self.tracker.artifact(weights / "best.pt" if (weights / "best.pt").exists() else weights / LAST, "weights")
