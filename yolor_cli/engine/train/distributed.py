"""Data-parallel training across processes (DDP): the one place that knows about ranks.

Processes are started by ``torchrun`` (directly, or by ``yolor train --device 0,1``, which runs it
for the user); each reads its rank from the environment torchrun sets. CPU processes talk over
gloo, GPU processes over NCCL. Rank 0 is the only one that writes files or shows progress.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.runtime import cuda_indices, select_device

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
COLLECTIVE_TIMEOUT = timedelta(hours=3)


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


def start(device_spec: str) -> tuple[DistributedContext, torch.device]:
    """This process's rank and device; joins the process group when torchrun started several."""
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


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


@contextmanager
def main_first(context: DistributedContext) -> Iterator[None]:
    """Rank 0 runs the block first (it may write caches or the demo data); the others follow."""
    if not context.is_main:
        barrier(context)
    yield
    if context.is_main:
        barrier(context)


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
