"""``yolor prune auto`` under torchrun: rank 0 drives the run, every process trains its fine-tunes.

Every process torchrun starts joins one process group for the whole run. Rank 0 alone prunes,
validates, writes the run folder and its files, tracks and reports, as a run in one process does.
Before each fine-tune it sends the other processes what to train: the options of a new training, or
the last.pt of one to continue. Then all of them train it together, as ``yolor train`` under torchrun
does (DDP, one results.csv, rank 0 writes); between fine-tunes the others wait for the next message.

- **Plain messages.** A message is a dict of strings, numbers and None sent with
  ``broadcast_object_list`` (the end of the run also carries rank 0's result, plain dataclasses);
  the other processes never unpickle a file: they read checkpoints as every process of a training
  does (weights only).
- **Files first.** Rank 0 writes a fine-tune's input (``step_K_pruned.pt``, ``step_K.pt``) atomically
  before it sends the message, and the others read it only after receiving it; so they read it from
  the same run folder, which must be on a filesystem every node shares (as for ``--resume``). Each
  process plans the fine-tune itself and they compare before training: a process that cannot read
  the input stops the whole group with its reason, rather than leaving the others in a collective.
- **Failures reach everyone.** When rank 0 fails between fine-tunes (a prune, a validation, a
  write), it sends the failure; the others stop with its message. A failure inside a fine-tune is the
  training's: the process that fails exits, the others' collectives fail and torchrun ends the group.
- **Gradual is refused.** ``--schedule gradual`` cuts the model inside the training, in a hook on rank
  0 after its validation: a cut rebuilds the model, its parameters and the optimizer's state, while
  DDP keeps the parameters and gradient buckets it wrapped at the start, and the other processes
  would keep the uncut model. The cuts themselves could be made alike on every process (DDP keeps the
  weights, hence the EMA they are ranked on, the same everywhere, and the ranking is deterministic),
  but the guard decides on rank 0's validation and the trainer cannot rewrap DDP mid-run, so the
  trainer refuses ``--prune-to`` in several processes and this refuses the schedule up front.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch.distributed as dist

from yolor_cli.engine.errors import YolorError, first_line
from yolor_cli.engine.reporting import SilentReporter
from yolor_cli.engine.train import distributed
from yolor_cli.engine.train.run import TrainOptions, TrainPlan, plan_training, train

Result = TypeVar("Result")

TRAIN, DONE, FAILED = "train", "done", "failed"  # the kinds of message rank 0 sends
SHARED_FOLDER_HINT = "every node must see the run folder at the same path (a shared filesystem), as --resume reads it"


def check_schedule(schedule: str) -> None:
    """Refuse what cannot run in several processes, on every process alike, before any work."""
    if schedule == "gradual":
        raise YolorError(
            "prune auto --schedule gradual does not run under torchrun: its cuts rebuild the model inside "
            "the training, which DDP's wrapper (built once, on the uncut model) cannot follow",
            hint="use --schedule steps under torchrun (each fine-tune trains on every process), "
            "or run --schedule gradual in one process",
        )


class FineTuneGroup:
    """Rank 0's side of the group: the fine-tunes it tells the other processes to train with it.
    Without torchrun (:data:`NO_GROUP`) it does nothing."""

    def __init__(self, context: distributed.DistributedContext) -> None:
        self.context = context
        self.listening = context.enabled  # the others wait for a message (not training, not stopped)

    @contextmanager
    def fine_tune(self, plan: TrainPlan) -> Iterator[None]:
        """Around rank 0's ``train(plan)``: the others are sent the plan and train it alongside."""
        if not self.context.enabled:
            yield
            return
        if plan.options.prune_to is not None:  # a gradual run resumed under torchrun
            check_schedule("gradual")
        _send(_plan_message(plan))
        self.listening = False  # from here the others are in the fine-tune, or stopped by its check
        _check_planned(self.context, None)
        yield
        self.listening = True  # the training ended alike on every process: they wait again

    def done(self, result: object) -> None:
        if self.listening:
            _send({"kind": DONE, "result": result})
            self.listening = False

    def failed(self, error: Exception) -> None:
        if self.listening:
            message = error.message if isinstance(error, YolorError) else first_line(error)
            hint = error.hint if isinstance(error, YolorError) else None
            _send({"kind": FAILED, "message": message, "hint": hint})
            self.listening = False
            _received()


NO_GROUP = FineTuneGroup(distributed.SINGLE_PROCESS)


def lead_or_follow(device: str, schedule: str, lead: Callable[[FineTuneGroup], Result]) -> Result:
    """Under torchrun: join the group for the whole run; rank 0 runs ``lead`` (the run as in one
    process, telling the group its fine-tunes), the others follow it and return rank 0's result
    with ``is_main`` False (``Result``: a dataclass with that field)."""
    check_schedule(schedule)
    joined = distributed.joined()
    context, _ = distributed.start(device)
    try:
        if not context.is_main:
            return dataclasses.replace(_follow(context), is_main=False)  # type: ignore[type-var]
        group = FineTuneGroup(context)
        try:
            result = lead(group)
        except Exception as error:
            group.failed(error)
            raise
        group.done(result)
        return result
    finally:
        if not joined:
            distributed.stop()


def _send(message: dict[str, Any]) -> None:
    dist.broadcast_object_list([message], src=0)


def _receive() -> dict[str, Any]:
    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _received() -> None:
    """After a failure's message: every process has it before rank 0 exits (and torchrun stops the rest)."""
    with contextlib.suppress(RuntimeError, dist.DistError):  # a process gone already: the failure stands
        dist.barrier()


def _plan_message(plan: TrainPlan) -> dict[str, Any]:
    """What the others need to plan the same training: a continued one's last.pt, or a new one's options."""
    if plan.resume is not None:
        return {"kind": TRAIN, "resume": str(plan.resume.path), "device": plan.options.device}
    return {"kind": TRAIN, "options": dataclasses.asdict(plan.options)}


def _plan(message: dict[str, Any]) -> TrainPlan:
    """The plan rank 0 made, made again here from the same files (as rank 0 plans it in prune auto)."""
    if "resume" in message:
        return plan_training(TrainOptions(device=message["device"]), resume=True, last=message["resume"])
    return plan_training(TrainOptions.from_dict(message["options"]))


def _check_planned(context: distributed.DistributedContext, error: str | None) -> None:
    """Every process says whether it could plan the fine-tune; all stop alike when one could not."""
    errors: list[str | None] = [None] * context.world_size
    dist.all_gather_object(errors, error)
    failed = [(rank, text) for rank, text in enumerate(errors) if text]
    if failed:
        rank, text = failed[0]
        raise YolorError(f"process {rank} could not start the fine-tune: {text}", hint=SHARED_FOLDER_HINT)


def _follow(context: distributed.DistributedContext) -> Any:
    """The other processes' run: train each fine-tune rank 0 sends, until it says the run is done."""
    while True:
        message = _receive()
        if message["kind"] == DONE:
            return message["result"]
        if message["kind"] == FAILED:
            _received()
            raise YolorError(f"prune auto stopped on rank 0: {message['message']}", hint=message["hint"])
        plan, error = None, None
        try:
            plan = _plan(message)
        except YolorError as failure:
            error = failure.message
        except OSError as failure:
            error = first_line(failure)
        _check_planned(context, error)
        assert plan is not None
        train(plan, SilentReporter())
