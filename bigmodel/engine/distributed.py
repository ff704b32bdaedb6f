"""Data-parallel training on torch.distributed.

Each process is told its place by the environment torchrun sets (WORLD_SIZE, RANK, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT). `bigmodel train --nproc N` starts them with torchrun's own launcher
(torch.distributed.run, standalone rendezvous on this machine); `torchrun ... -m bigmodel_cli train`
does the same by hand, multi-node included. gloo on CPU, NCCL on GPU; rank 0 logs and writes.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True inside a process that torchrun (or --nproc) started."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def timeout() -> _dt.timedelta:
    return _dt.timedelta(seconds=float(os.environ.get("BIGMODEL_DIST_TIMEOUT", "300")))


def setup(device: str) -> DistContext:
    """Join the process group the environment describes (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if not dist.is_available():
            raise ConfigError("this torch build has no torch.distributed support")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timeout(),
                                **({"device_id": dev} if dev.type == "cuda" else {}))
    return DistContext(world, rank, local_rank, dev)


def cleanup(ctx: DistContext, barrier: bool = False) -> None:
    """Leave the process group; with `barrier`, first wait until every rank gets here (only after
    a clean finish: a rank that failed must not wait for the others)."""
    if ctx.enabled and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(ctx: DistContext, t: torch.Tensor) -> torch.Tensor:
    if ctx.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def launch(nproc: int, worker_args: Sequence[str]) -> None:
    """Run `python -m bigmodel_cli <worker_args>` in nproc local processes through torchrun's
    launcher (standalone c10d rendezvous on a free local port, no restarts). Raises
    torch.distributed.elastic's ChildFailedError if a worker fails."""
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0",
         "-m", "bigmodel_cli", *worker_args])
    run(args)
