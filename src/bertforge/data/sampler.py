"""Which instances each distributed rank reads, in which order, resumable mid-epoch in O(1)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class DistributedSampler:
    """Rank `rank` of `world_size` reads every world_size-th item of a seeded per-epoch permutation.

    The ranks' parts are disjoint and, with `drop_last`, equally long (so no rank waits at the end of an
    epoch); without it the permutation is padded by wrapping around. `state_dict()` records the epoch and
    how many items this rank has consumed; `load_state_dict` resumes at that item without replaying.
    """

    num_items: int
    rank: int = 0
    world_size: int = 1
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = True
    epoch: int = 0
    consumed: int = 0  # items of this epoch already handed out on this rank

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, {self.world_size})")

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_items // self.world_size
        return -(-self.num_items // self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` from its beginning (a resumed position is kept only for the epoch it belongs to)."""
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, 0

    def _indices(self) -> np.ndarray:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.num_items) if self.shuffle
                 else np.arange(self.num_items))
        total = len(self) * self.world_size
        if total > self.num_items:  # pad by wrapping around
            order = np.concatenate([order, order[: total - self.num_items]])
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        mine = self._indices()
        for index in mine[self.consumed :]:
            self.consumed += 1
            yield int(index)
        self.epoch, self.consumed = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["world_size"] != self.world_size or state["seed"] != self.seed:
            raise ValueError("cannot resume a sampler with another world size or seed")
        self.epoch, self.consumed = state["epoch"], state["consumed"]
