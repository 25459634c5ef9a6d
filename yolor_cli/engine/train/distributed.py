"""Data-parallel training across processes (DDP): the one place that knows about ranks.

Processes are started by ``torchrun`` (directly, or by ``yolor train --device 0,1``, which runs it
for the user); each reads its rank from the environment torchrun sets. CPU processes talk over
gloo, GPU processes over NCCL. Rank 0 is the only one that writes files or shows progress.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.files import atomic_write
from yolor_cli.engine.runtime import cuda_indices, select_device

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
COLLECTIVE_TIMEOUT = timedelta(hours=3)
# torchrun's names for the job (its --rdzv-id; a fresh one per --standalone launch) and for how many
# times it restarted the group after a worker failed (--max-restarts).
RUN_ID_ENV = "TORCHELASTIC_RUN_ID"
RESTART_COUNT_ENV = "TORCHELASTIC_RESTART_COUNT"
# In the folder a torchrun job's rank 0 made: the job's run id, so a restarted group finds its folder.
RUN_MARKER = "torchrun.json"


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistributedContext:
        if not all(name in os.environ for name in TORCHRUN_ENV):
            return cls()
        return cls(
            rank=int(os.environ["RANK"]),
            local_rank=int(os.environ["LOCAL_RANK"]),
            world_size=int(os.environ["WORLD_SIZE"]),
        )


SINGLE_PROCESS = DistributedContext()


def under_torchrun() -> bool:
    return DistributedContext.from_env().enabled


def restart_count() -> int:
    """How many times this node's torchrun agent restarted its workers after a failure (0: the first
    start, or not under torchrun). Per node: an agent that restarted because another node's worker
    failed may count 0, so a group decides with :func:`group_restarted`."""
    try:
        return int(os.environ.get(RESTART_COUNT_ENV, "0")) if under_torchrun() else 0
    except ValueError:
        return 0


def group_restarted(context: DistributedContext) -> bool:
    """Whether torchrun restarted this group after a worker failed (``--max-restarts``), as any of its
    processes was told: the agent of the node whose worker failed counts the restart, the others may
    have restarted for it without counting. The same answer on every process."""
    if not context.enabled:
        return False
    counts: list[int | None] = [None] * context.world_size
    dist.all_gather_object(counts, restart_count())
    return any(count for count in counts)


def mark_run(save_dir: Path) -> None:
    """Record the torchrun job in the run folder rank 0 made for it (nothing outside torchrun)."""
    run_id = os.environ.get(RUN_ID_ENV)
    if not under_torchrun() or not run_id:
        return
    payload = json.dumps({"run_id": run_id}).encode()
    atomic_write(save_dir / RUN_MARKER, lambda stream: stream.write(payload))


def marked_runs(project: Path) -> list[Path]:
    """The run folders under ``project`` that this torchrun job made, newest first. Every process of a
    restarted group reads the same folders (the project lives on a filesystem they share, as for
    ``--resume``)."""
    run_id = os.environ.get(RUN_ID_ENV)
    if not under_torchrun() or not run_id:
        return []
    found = []
    for marker in Path(project).glob(f"*/{RUN_MARKER}"):
        try:
            if json.loads(marker.read_text()).get("run_id") == run_id:
                found.append(marker)
        except (OSError, ValueError, AttributeError):
            continue  # not ours, or damaged: never resumed by guess
    return [m.parent for m in sorted(found, key=lambda m: m.stat().st_mtime_ns, reverse=True)]


def start(device_spec: str) -> tuple[DistributedContext, torch.device]:
    """This process's rank and device; joins the process group when torchrun started several (a group
    already joined, by ``prune auto`` for its whole run, is kept)."""
    context = DistributedContext.from_env()
    if not context.enabled:
        return context, select_device(device_spec)
    use_cuda = device_spec.strip().lower() != "cpu" and torch.cuda.is_available()
    if use_cuda:
        if context.local_rank >= torch.cuda.device_count():
            raise YolorError(
                f"process {context.local_rank} has no GPU: {torch.cuda.device_count()} visible",
                hint="start as many processes per node as there are GPUs",
            )
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        # Rank 0 validates and writes checkpoints while the others wait in a collective: allow for it.
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return context, device


def joined() -> bool:
    """Whether this process is in a process group already (one that the caller, not train, stops)."""
    return dist.is_available() and dist.is_initialized()


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


@contextmanager
def main_first(context: DistributedContext) -> Iterator[None]:
    """Rank 0 runs the block first (it writes the label caches, the demo data), then the first process
    of every other node (a node with its own disk writes its own copy once), then all the others, who
    read what was written. Each process passes the same two barriers."""
    phase = 0 if context.is_main else 1 if context.local_rank == 0 else 2
    for _ in range(phase):
        barrier(context)
    yield
    for _ in range(2 - phase):
        barrier(context)


def peer_failure(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another process of the group died."""
    text = str(error)
    return isinstance(error, dist.DistError) or any(name in text for name in ("gloo", "NCCL", "Connection reset"))


def check_same(context: DistributedContext, what: str, value: int) -> None:
    """Every process must have planned the same ``value`` (the epoch a run starts at); a process that
    read another state (a node without the shared run folder) would otherwise hang the group."""
    if not context.enabled:
        return
    values = [None] * context.world_size
    dist.all_gather_object(values, value)
    if len(set(values)) > 1:
        raise YolorError(
            f"the processes disagree on {what}: {values} (by rank)",
            hint="every node must see the same --project folder (a shared filesystem), as --resume reads it",
        )


def share_from_main(context: DistributedContext, values: Sequence[float]) -> list[float]:
    """Rank 0's ``values`` on every rank (the stop flag and per-class APs after validation)."""
    if not context.enabled:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.broadcast(tensor, src=0)
    return tensor.cpu().tolist()


def torchrun_command(arguments: Sequence[str], processes: int) -> list[str]:
    """The command that reruns ``yolor <arguments>`` as ``processes`` DDP processes on this node."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "yolor_cli",
        *arguments,
    ]


def launch(arguments: Sequence[str], device_spec: str) -> int:
    """``--device 0,1`` outside torchrun: start one process per listed GPU and wait for them."""
    select_device(device_spec)  # a clear error when CUDA or a listed GPU is missing
    indices = cuda_indices(device_spec)
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible:  # --device numbers GPUs as this process sees them: keep an existing mask's meaning
        indices = [visible[int(i)] for i in indices]
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(indices)}
    process = subprocess.Popen(torchrun_command(arguments, len(indices)), env=environment)
    try:
        return process.wait()
    except KeyboardInterrupt:  # torchrun passes Ctrl-C to the workers; wait for their clean stop
        process.send_signal(signal.SIGINT)
        return process.wait()


def wants_launch(device_spec: str) -> bool:
    """Several GPUs asked for, and torchrun has not started us: we must start the processes."""
    return not under_torchrun() and len(cuda_indices(device_spec)) > 1
