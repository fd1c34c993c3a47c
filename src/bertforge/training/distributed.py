"""Distributed data parallel set-up from `torchrun`'s environment (one process per device, any number of nodes).

One node, 8 GPUs:   torchrun --nproc_per_node 8 -m bertforge pretrain ...
Two nodes:          torchrun --nnodes 2 --node_rank {0,1} --nproc_per_node 8 \\
                        --rdzv_backend c10d --rdzv_endpoint HOST0:29500 -m bertforge pretrain ...
Without torchrun the run is a single process. gloo is used on CPU, NCCL on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bertforge.errors import BertforgeError


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over all processes (identity in a single process)."""
        if self.enabled:
            values = values.clone()
            dist.all_reduce(values)
        return values

    def sum_terms(self, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sum named scalars over all processes in one all-reduce."""
        if not self.enabled:
            return terms
        total = self.sum(torch.stack([v.float() for v in terms.values()]))
        return dict(zip(terms, total.unbind()))

    def any(self, flag: bool) -> bool:
        """True on every process when `flag` is true on any (e.g. a stop signal received by one)."""
        return bool(self.sum(torch.tensor([float(flag)], device=self.device)).item() > 0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup(device: str = "auto") -> Distributed:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK, pick the device and start the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise BertforgeError("--device cuda was asked for, but no CUDA device is available")
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Distributed(rank, world, local, dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
