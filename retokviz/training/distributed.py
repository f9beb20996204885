"""Several processes training one model (torchrun): who this process is, and sums across all of them."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as dist
from torch import Tensor



# ------------------------------------------------------------------------------------------- ranks, devices

@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Ranks:
        return cls(*(int(os.environ.get(name, default)) for name, default in
                     (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0))))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def sum_across_ranks(values: Tensor, ranks: Ranks) -> Tensor:
    if ranks.world_size > 1:
        dist.all_reduce(values)
    return values
